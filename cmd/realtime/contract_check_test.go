package main

import (
	appmw "github.com/realtime-dev/realtime/middleware"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/realtime-dev/realtime"
)

// mutated is the contract of openapi.yaml with old replaced by new once.
func mutated(t *testing.T, old, new string) *contract {
	t.Helper()
	spec := string(realtime.OpenAPI)
	if !strings.Contains(spec, old) {
		t.Fatalf("openapi.yaml no longer contains %q: update this mutation", old)
	}
	c, err := newContract([]byte(strings.Replace(spec, old, new, 1)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The response check fails a response that breaks the document: a body
// off its schema, a header off its schema, a header the response does not
// document, a status it does not document, a CORS header not described.
func TestContractCatchesResponseViolations(t *testing.T) {
	n := startNode(t, map[string]string{"REALTIME_CORS_ORIGINS": "https://app.example"})
	tok := pubToken(t)
	type request struct {
		method, path, tok, body string
		hdr                     []string
	}
	noToken := request{method: "GET", path: "/v1/workspaces/ws1/events"}
	badJSON := request{method: "POST", path: "/v1/workspaces/ws1/events", tok: tok, body: "{"}
	cors := request{method: "GET", path: "/healthz", hdr: []string{"Origin", "https://app.example"}}
	for _, tc := range []struct {
		name     string
		req      request
		old, new string
		want     string
	}{
		{"body off its schema", noToken, "            - unauthorized\n", "", "doesn't match schema"},
		{"required header off its schema", cors, "        minLength: 1\n        maxLength: 128\n", "        minLength: 1\n        maxLength: 4\n", `header "X-Request-ID" doesn't match`},
		{"header not documented", noToken, "        WWW-Authenticate:\n          $ref: '#/components/headers/WWWAuthenticate'\n", "", "WWW-Authenticate is not documented"},
		{"status not documented", badJSON, "        '400':\n          $ref: '#/components/responses/BadRequest'\n", "", "status 400 is not documented"},
		{"CORS header not described", cors, "    Access-Control-Expose-Headers:\n", "    Access-Control-Exposed:\n", "Access-Control-Expose-Headers is not documented"},
		{"CORS header off its schema", cors, "        enum: ['X-Request-ID, X-Correlation-ID, Retry-After", "        enum: ['X-Request-ID, Retry-After", `"Access-Control-Expose-Headers" doesn't match`},
		{"unknown path off NotFound", request{method: "GET", path: "/nope"}, "            - not_found\n", "", "doesn't match schema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send := func(c *contract) error {
				var rd *strings.Reader
				if tc.req.body != "" {
					rd = strings.NewReader(tc.req.body)
				}
				req, _ := http.NewRequestWithContext(t.Context(), tc.req.method, n.URL+tc.req.path, nil)
				if rd != nil {
					req, _ = http.NewRequestWithContext(t.Context(), tc.req.method, n.URL+tc.req.path, rd)
					req.Header.Set("Content-Type", "application/json")
				}
				if tc.req.tok != "" {
					req.Header.Set("Authorization", "Bearer "+tc.req.tok)
				}
				for i := 0; i+1 < len(tc.req.hdr); i += 2 {
					req.Header.Set(tc.req.hdr[i], tc.req.hdr[i+1])
				}
				resp, err := (&http.Client{Transport: contractTransport{base: http.DefaultTransport, c: c}}).Do(req)
				if err == nil {
					resp.Body.Close()
				}
				return err
			}
			if err := send(theContract()); err != nil {
				t.Fatalf("openapi.yaml as it is: %v", err)
			}
			err := send(mutated(t, tc.old, tc.new))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("mutated openapi.yaml: got %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// streamFrames reads from a real stream one frame of every kind the
// server sends (retry, ready, event, ephemeral, reset, heartbeat, id-only),
// by the schema each matched.
func streamFrames(t *testing.T) map[string]frame {
	t.Helper()
	n := startNode(t, map[string]string{"REALTIME_HEARTBEAT": "200ms", "REALTIME_RETENTION": "3", "REALTIME_PRESENCE_INTERVAL": "50ms"})
	tok := token(t, "u1", []string{"ws1"})
	got := map[string]frame{}
	collect := func(s *sseStream, until func() bool) {
		s.wantEphemeral = true
		deadline := time.Now().Add(20 * time.Second)
		for !until() && time.Now().Before(deadline) {
			f, ok := s.next(t)
			if !ok {
				t.Fatal("stream ended")
			}
			kind, err := theContract().matchFrame(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, seen := got[kind]; !seen {
				got[kind] = f
			}
		}
	}
	s := n.openStream(t, "ws1", tok, "types=*")
	old := n.publish(t, "ws1", chat(0)).ID
	n.publish(t, "ws1", `{"type":"notification.new","targetUserId":"u2","data":{"id":"n1"}}`)
	has := func(kinds ...string) func() bool {
		return func() bool {
			for _, k := range kinds {
				if _, ok := got[k]; !ok {
					return false
				}
			}
			return true
		}
	}
	collect(s, has("RetryFrame", "ReadyFrame", "EventFrame", "IDFrame", "HeartbeatFrame", "EphemeralFrame"))
	n.publishN(t, "ws1", 5)
	collect(n.openStream(t, "ws1", tok, "", "Last-Event-ID", old), has("ResetFrame"))
	// A token 24 s past its exp, inside the 30 s leeway: its stream ends
	// about 6 s later with the expiry frame.
	expiring, err := appmw.IssueToken([]byte(testSecret), appmw.TokenSpec{Subject: "u1", Workspaces: []string{"ws1"}, TTL: -24 * time.Second}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	collect(n.openStream(t, "ws1", expiring, ""), has("AuthExpiredFrame"))
	return got
}

// The frames the server sends are each one of the StreamFrame schemas, and
// every schema is sent; a mutation of a frame's description fails them.
func TestStreamFramesMatchContract(t *testing.T) {
	got := streamFrames(t)
	want := []string{"RetryFrame", "AuthExpiredFrame", "ReadyFrame", "EventFrame", "EphemeralFrame", "ResetFrame", "HeartbeatFrame", "IDFrame"}
	for _, k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("no %s seen; got %v", k, got)
		}
	}
	var oneOf []string
	for _, s := range theContract().frame.OneOf {
		oneOf = append(oneOf, strings.TrimPrefix(s.Ref, "#/components/schemas/"))
	}
	slices.Sort(oneOf)
	slices.Sort(want)
	if !slices.Equal(oneOf, want) {
		t.Errorf("StreamFrame.oneOf is %v; this test expects %v", oneOf, want)
	}
	for _, tc := range []struct {
		kind, old, new string
	}{
		{"HeartbeatFrame", "        - $ref: '#/components/schemas/HeartbeatFrame'\n", ""},
		{"AuthExpiredFrame", "          enum: [auth.expired]", "          enum: [auth.gone]"},
		{"ReadyFrame", "          enum: [ready]", "          enum: [started]"},
		{"EventFrame", "        - [/id, /data/id]", "        - [/id, /data/correlationId]"},
		{"ResetFrame", "          enum: [cursor_expired]", "          enum: [trimmed]"},
		{"IDFrame", "      required: [id]\n      description: 'Only", "      required: [id, event]\n      description: 'Only"},
		{"EphemeralFrame", "          enum: [presence.changed, typing.started, typing.stopped]\n        workspaceId:", "          enum: [typing.started, typing.stopped]\n        workspaceId:"},
		{"RetryFrame", "        retry:\n          type: integer\n          minimum: 0", "        retry:\n          type: integer\n          minimum: 1000000"},
	} {
		if err := mutated(t, tc.old, tc.new).checkFrame(got[tc.kind]); err == nil {
			t.Errorf("%s %+v passes a mutated openapi.yaml (%q → %q)", tc.kind, got[tc.kind], tc.old, tc.new)
		}
	}
}
