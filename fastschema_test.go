package realtime

import (
	"encoding/json"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// The fast path compiles every event schema of openapi.yaml (else it buys
// nothing), and agrees with kin-openapi on every value: a body it calls
// valid, kin-openapi calls valid, and the other way round.
func FuzzFastSchemaAgrees(f *testing.F) {
	s := MustLoadSchemas()
	if s.fastRequest == nil {
		f.Fatal("PublishRequest is not compiled for the fast path")
	}
	for typ, d := range s.fastData {
		if d == nil {
			f.Fatalf("the data schema of %s is not compiled for the fast path", typ)
		}
	}
	for _, b := range []string{
		`{"type":"chat.message","data":{"chatId":"c","id":"m","text":"hi"}}`,
		`{"type":"chat.message","data":{"chatId":"","id":"m","text":"hi"}}`,
		`{"type":"chat.message","data":{"chatId":"c","id":"m"}}`,
		`{"type":"chat.message","data":{"chatId":"c","id":"m","text":null}}`,
		`{"type":"agent.status.changed","data":{"agentId":"a","status":"idle","extra":[1,{"x":null}]}}`,
		`{"type":"agent.status.changed","data":{"agentId":"a","status":"busy"}}`,
		`{"type":"approval.created","data":{"id":"😀"},"targetUserId":"u","correlationId":"c","source":"s"}`,
		`{"type":"approval.created","data":{"id":"a"},"targetUserId":""}`,
		`{"type":"approval.created","data":{"id":"a"},"source":7}`,
		`{"type":"approval.created","data":[],"x":1}`,
		`{"type":"notification.new","data":{"id":"n","title":5}}`,
		`{"type":"approval.deleted"}`,
		`{"data":{"id":"x"}}`,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var body map[string]any
		if json.Unmarshal(b, &body) != nil || body == nil {
			return
		}
		typ, _ := body["type"].(string)
		dataSchema, known := s.data[typ]
		if !known {
			return
		}
		fast := s.fastRequest.valid(body) && s.fastData[typ].valid(body["data"])
		slow := s.request.VisitJSON(body, openapi3.MultiErrors()) == nil
		if data, ok := body["data"].(map[string]any); ok && slow {
			slow = dataSchema.VisitJSON(data, openapi3.MultiErrors()) == nil
		}
		if fast != slow {
			t.Fatalf("%s: fast path says valid=%v, kin-openapi %v", b, fast, slow)
		}
	})
}
