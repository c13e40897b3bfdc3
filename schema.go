package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Schemas validates events against openapi.yaml, so that the document is
// the one definition of what each event type carries. Publish checks whole
// request bodies with it; the Event Bus bridge checks upstream payloads.
// It is safe for concurrent use.
type Schemas struct {
	request *openapi3.Schema
	data    map[string]*openapi3.Schema // event type → schema of its data
	// The same, compiled for the fast path (fastSchema); nil where a
	// schema is beyond it.
	fastRequest *fastSchema
	fastData    map[string]*fastSchema
}

// MustLoadSchemas reads the embedded openapi.yaml. The document is part of
// the binary and checked by tests, so a failure is a programmer error.
func MustLoadSchemas() *Schemas {
	s, err := LoadSchemas(OpenAPI)
	if err != nil {
		panic(err)
	}
	return s
}

// LoadSchemas reads the event schemas of an OpenAPI document.
func LoadSchemas(spec []byte) (*Schemas, error) {
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate openapi.yaml: %w", err)
	}
	req := doc.Components.Schemas["PublishRequest"]
	if req == nil || req.Value == nil {
		return nil, errors.New("openapi.yaml has no PublishRequest schema")
	}
	m, ok := req.Value.Extensions["x-data-schemas"].(map[string]any)
	if !ok || len(m) == 0 {
		return nil, errors.New("openapi.yaml PublishRequest has no x-data-schemas")
	}
	s := &Schemas{request: req.Value, data: make(map[string]*openapi3.Schema, len(m))}
	for typ, name := range m {
		n, _ := name.(string)
		ref := doc.Components.Schemas[n]
		if ref == nil || ref.Value == nil {
			return nil, fmt.Errorf("openapi.yaml x-data-schemas: %s names unknown schema %q", typ, n)
		}
		s.data[typ] = ref.Value
	}
	s.fastRequest = compileFast(s.request)
	s.fastData = make(map[string]*fastSchema, len(s.data))
	for typ, d := range s.data {
		s.fastData[typ] = compileFast(d)
	}
	return s, nil
}

// Types returns the publishable event types, sorted.
func (s *Schemas) Types() []string {
	out := make([]string, 0, len(s.data))
	for t := range s.data {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// EventError says why an event is invalid. Its Code is the API's stable
// error code: unknown_event_type or invalid_event.
type EventError struct {
	Code     string
	Detail   string
	Problems map[string]string // JSON pointer → reason
}

func (e *EventError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for p, r := range e.Problems {
		parts = append(parts, p+": "+r)
	}
	sort.Strings(parts)
	return e.Code + ": " + strings.Join(parts, "; ")
}

// ValidatePublish checks a decoded publish body: its fields, its type, and
// its data against the type's schema.
func (s *Schemas) ValidatePublish(body map[string]any) *EventError {
	typ, _ := body["type"].(string)
	dataSchema, known := s.data[typ]
	if _, present := body["type"]; present && !known {
		return s.unknown()
	}
	if known && s.fastRequest != nil && s.fastData[typ] != nil &&
		s.fastRequest.valid(body) && s.fastData[typ].valid(body["data"]) {
		return nil
	}
	problems := map[string]string{}
	collect(problems, "", s.request.VisitJSON(body, openapi3.MultiErrors()))
	if data, ok := body["data"].(map[string]any); ok && known {
		collect(problems, "/data", dataSchema.VisitJSON(data, openapi3.MultiErrors()))
	}
	if len(problems) == 0 {
		return nil
	}
	return &EventError{Code: "invalid_event", Detail: "the event does not match its schema", Problems: problems}
}

// ValidateData checks one event's type and data.
func (s *Schemas) ValidateData(typ string, data json.RawMessage) *EventError {
	schema, known := s.data[typ]
	if !known {
		return s.unknown()
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return &EventError{Code: "invalid_event", Detail: "data is not JSON", Problems: map[string]string{"/data": "not JSON"}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return &EventError{Code: "invalid_event", Detail: "data is not an object", Problems: map[string]string{"/data": "not an object"}}
	}
	problems := map[string]string{}
	collect(problems, "/data", schema.VisitJSON(obj, openapi3.MultiErrors()))
	if len(problems) == 0 {
		return nil
	}
	return &EventError{Code: "invalid_event", Detail: "the event does not match its schema", Problems: problems}
}

func (s *Schemas) unknown() *EventError {
	return &EventError{Code: "unknown_event_type",
		Detail:   fmt.Sprintf("unknown event type; publishable types are %s", strings.Join(s.Types(), ", ")),
		Problems: map[string]string{"/type": "unknown event type"}}
}

// collect flattens kin-openapi validation errors into pointer → reason.
func collect(into map[string]string, prefix string, err error) {
	if err == nil {
		return
	}
	var multi openapi3.MultiError
	if errors.As(err, &multi) {
		for _, e := range multi {
			collect(into, prefix, e)
		}
		return
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		ptr := prefix
		if p := se.JSONPointer(); len(p) > 0 {
			ptr += "/" + strings.Join(p, "/")
		}
		if ptr == "" {
			ptr = "/"
		}
		into[ptr] = se.Reason
		return
	}
	into[prefix+"/"] = err.Error()
}
