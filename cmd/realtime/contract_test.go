package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/realtime-dev/realtime"
)

// Every response the end-to-end tests receive through clientFor, and every
// stream frame sseStream parses, is checked against openapi.yaml here.
//
// Responses: the route is found by kin-openapi's legacy router (the
// document's servers dropped, so any host matches), and the response is
// validated by openapi3filter.ValidateResponse: its status must be
// documented for the operation, the headers it documents must match their
// schemas (required ones present), and the body must match the schema of
// its content type. A path no operation lists must be a NotFound, a listed
// path with an unlisted method a MethodNotAllowed, and a CORS preflight a
// Preflight or PreflightRefused (components.responses). Conversely, a
// response may not carry one of the API's own headers (apiHeaders) that its
// description does not list; the Access-Control-* headers are described
// once, in components.headers, and checked against those.
//
// text/event-stream bodies never end, so ValidateResponse skips them
// (ExcludeResponseBody; status and headers are still checked) and the
// frames are checked one by one as the test reads them, against the
// StreamFrame schema the media type names in x-frame-schema.

// apiHeaders are the response headers this service sets itself.
var apiHeaders = []string{"X-Request-ID", "X-Correlation-ID", "Retry-After", "Idempotent-Replayed", "WWW-Authenticate", "X-Accel-Buffering"}

// contract is openapi.yaml ready to check responses and frames.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	frame  *openapi3.Schema
}

func init() {
	// Bodies of these types are text: decode them as strings (their
	// schemas are `type: string`). application/yaml and text/plain have
	// decoders already.
	for _, ct := range []string{"text/html", "text/javascript", "text/css", "application/openmetrics-text"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

func newContract(spec []byte) (*contract, error) {
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	doc.Servers = nil // match paths on any host: tests listen on free ports
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route openapi.yaml: %w", err)
	}
	c := &contract{doc: doc, router: router}
	op := doc.Paths.Find("/v1/workspaces/{workspaceID}/events/stream").Get
	mt := op.Responses.Status(200).Value.Content.Get("text/event-stream")
	name, _ := mt.Extensions["x-frame-schema"].(string)
	ref := doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("openapi.yaml: the stream's x-frame-schema %q names no schema", name)
	}
	c.frame = ref.Value
	return c, nil
}

var (
	specOnce     sync.Once
	specContract *contract
	specErr      error
)

// theContract is openapi.yaml as embedded in the binary.
func theContract() *contract {
	specOnce.Do(func() { specContract, specErr = newContract(realtime.OpenAPI) })
	if specErr != nil {
		panic(specErr)
	}
	return specContract
}

// violations collects every breach seen, so that one a test swallowed still
// fails the run (TestMain reports them).
var violations struct {
	mu   sync.Mutex
	list []string
}

func recordViolation(err error) {
	violations.mu.Lock()
	defer violations.mu.Unlock()
	violations.list = append(violations.list, err.Error())
}

func reportViolations() bool {
	violations.mu.Lock()
	defer violations.mu.Unlock()
	for _, v := range violations.list {
		fmt.Fprintf(os.Stderr, "openapi.yaml violated: %s\n", v)
	}
	return len(violations.list) > 0
}

// contractTransport checks each response against the contract; one that
// breaks it is an error of the request (the caller's test fails there),
// recorded when the contract is openapi.yaml itself.
type contractTransport struct {
	base http.RoundTripper
	c    *contract
}

func (ct contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := ct.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if err := ct.c.checkResponse(req, resp); err != nil {
		resp.Body.Close()
		err = fmt.Errorf("openapi.yaml violated by %s %s → %d: %w", req.Method, req.URL.Path, resp.StatusCode, err)
		if ct.c == theContract() {
			recordViolation(err)
		}
		return nil, err
	}
	return resp, nil
}

// checkResponse validates resp (the answer to req). Unless it is an event
// stream, it reads the body and puts it back.
func (c *contract) checkResponse(req *http.Request, resp *http.Response) error {
	if req.Method == http.MethodHead {
		return nil // ValidateResponse skips HEAD too: there is no body
	}
	route, params, ref, err := c.responseFor(req, resp.StatusCode)
	if err != nil {
		return err
	}
	// The response as documented, plus the CORS headers, which
	// components.headers describes once for every response.
	doc := *ref.Value
	doc.Headers = openapi3.Headers{}
	for k, v := range ref.Value.Headers {
		doc.Headers[k] = v
	}
	for name, h := range c.doc.Components.Headers {
		if strings.HasPrefix(name, "Access-Control-") && doc.Headers[name] == nil {
			doc.Headers[name] = h
		}
	}
	for _, h := range apiHeaders {
		if resp.Header.Get(h) != "" && doc.Headers[h] == nil {
			return fmt.Errorf("header %s is not documented for this response", h)
		}
	}
	for h := range resp.Header {
		if strings.HasPrefix(h, "Access-Control-") && doc.Headers[h] == nil {
			return fmt.Errorf("header %s is not documented in components.headers", h)
		}
	}
	op := *route.Operation
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(resp.StatusCode, &openapi3.ResponseRef{Value: &doc}))
	r := *route
	r.Operation = &op
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: &r},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: stream},
	}
	if !stream {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		in.SetBodyBytes(body)
	}
	return openapi3filter.ValidateResponse(req.Context(), in)
}

// responseFor finds the documented response for status on req's route, or
// the one every path gives (not found, method not allowed, preflights).
func (c *contract) responseFor(req *http.Request, status int) (*routers.Route, map[string]string, *openapi3.ResponseRef, error) {
	component := func(name string) (*routers.Route, map[string]string, *openapi3.ResponseRef, error) {
		ref := c.doc.Components.Responses[name]
		if ref == nil {
			return nil, nil, nil, fmt.Errorf("components.responses.%s is missing", name)
		}
		return &routers.Route{Spec: c.doc, Path: req.URL.Path, Method: req.Method, Operation: &openapi3.Operation{}}, nil, ref, nil
	}
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" && req.Header.Get("Origin") != "" {
		// With CORS on, answered before routing; with it off, an OPTIONS
		// like any other (405).
		switch status {
		case http.StatusNoContent:
			return component("Preflight")
		case http.StatusForbidden:
			return component("PreflightRefused")
		}
	}
	route, params, err := c.router.FindRoute(req)
	var re *routers.RouteError
	if errors.As(err, &re) && re.Reason == routers.ErrPathNotFound.Error() && c.pathListed(req) {
		// The legacy router tells a wrong method from an unknown path
		// only for paths without parameters.
		re.Reason = routers.ErrMethodNotAllowed.Error()
	}
	switch {
	case errors.As(err, &re) && re.Reason == routers.ErrPathNotFound.Error():
		if status != http.StatusNotFound {
			return nil, nil, nil, fmt.Errorf("no operation has this path, yet it answered %d", status)
		}
		return component("NotFound")
	case errors.As(err, &re) && re.Reason == routers.ErrMethodNotAllowed.Error():
		if status != http.StatusMethodNotAllowed {
			return nil, nil, nil, fmt.Errorf("the path has no %s operation, yet it answered %d", req.Method, status)
		}
		return component("MethodNotAllowed")
	case err != nil:
		return nil, nil, nil, fmt.Errorf("find route: %w", err)
	}
	ref := route.Operation.Responses.Status(status)
	if ref == nil {
		ref = route.Operation.Responses.Default()
	}
	if ref == nil || ref.Value == nil {
		return nil, nil, nil, fmt.Errorf("status %d is not documented for %s %s", status, route.Method, route.Path)
	}
	return route, params, ref, nil
}

// pathListed says whether some operation has req's path.
func (c *contract) pathListed(req *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		r := req.Clone(req.Context())
		r.Method = m
		if _, _, err := c.router.FindRoute(r); err == nil {
			return true
		}
	}
	return false
}

// checkFrame validates one parsed stream frame against StreamFrame.
func (c *contract) checkFrame(f frame) error {
	_, err := c.matchFrame(f)
	return err
}

// matchFrame returns which StreamFrame schema f is: it must match exactly
// one of its oneOf schemas, and that schema's x-same pairs.
func (c *contract) matchFrame(f frame) (string, error) {
	v := map[string]any{}
	if f.HasID {
		v["id"] = f.ID
	}
	if f.Event != "" {
		v["event"] = f.Event
	}
	if f.Data != "" {
		var d any
		if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
			return "", fmt.Errorf("frame %+v: data is not JSON: %w", f, err)
		}
		v["data"] = d
	}
	if f.Retry != "" {
		if n, err := strconv.Atoi(f.Retry); err == nil {
			v["retry"] = n
		} else {
			v["retry"] = f.Retry
		}
	}
	var matched []*openapi3.SchemaRef
	for _, s := range c.frame.OneOf {
		if s.Value.VisitJSON(v, openapi3.VisitAsResponse()) == nil {
			matched = append(matched, s)
		}
	}
	if len(matched) != 1 {
		names := make([]string, 0, len(matched))
		for _, m := range matched {
			names = append(names, m.Ref)
		}
		sort.Strings(names)
		err := c.frame.VisitJSON(v, openapi3.VisitAsResponse())
		return "", fmt.Errorf("frame %+v matches %d StreamFrame schemas %v (want 1): %v", f, len(matched), names, err)
	}
	name := strings.TrimPrefix(matched[0].Ref, "#/components/schemas/")
	same, _ := matched[0].Value.Extensions["x-same"].([]any)
	for _, p := range same {
		pair, _ := p.([]any)
		if len(pair) != 2 {
			return "", fmt.Errorf("%s: x-same entry %v is not a pair", name, p)
		}
		a, b := pointer(v, pair[0]), pointer(v, pair[1])
		if a == nil || fmt.Sprint(a) != fmt.Sprint(b) {
			return "", fmt.Errorf("frame %+v: %v is %v but %v is %v (%s x-same)", f, pair[0], a, pair[1], b, name)
		}
	}
	return name, nil
}

// pointer resolves a JSON pointer of plain names in v.
func pointer(v any, p any) any {
	s, _ := p.(string)
	for _, name := range strings.Split(strings.TrimPrefix(s, "/"), "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[name]
	}
	return v
}
