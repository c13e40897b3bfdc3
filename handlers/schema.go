package handlers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/realtime-dev/realtime"
)

// eventSchemas validates publish bodies against openapi.yaml, so that the
// document is the one definition of what each event type carries.
type eventSchemas struct {
	request *openapi3.Schema
	data    map[string]*openapi3.Schema // event type → schema of its data
}

// mustLoadSchemas reads the embedded openapi.yaml. The document is part of
// the binary and checked by tests, so a failure is a programmer error.
func mustLoadSchemas() *eventSchemas {
	s, err := loadSchemas(realtime.OpenAPI)
	if err != nil {
		panic(err)
	}
	return s
}

func loadSchemas(spec []byte) (*eventSchemas, error) {
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
	s := &eventSchemas{request: req.Value, data: make(map[string]*openapi3.Schema, len(m))}
	for typ, name := range m {
		n, _ := name.(string)
		ref := doc.Components.Schemas[n]
		if ref == nil || ref.Value == nil {
			return nil, fmt.Errorf("openapi.yaml x-data-schemas: %s names unknown schema %q", typ, n)
		}
		s.data[typ] = ref.Value
	}
	return s, nil
}

// types returns the publishable event types, sorted.
func (s *eventSchemas) types() []string {
	out := make([]string, 0, len(s.data))
	for t := range s.data {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// validate checks a decoded publish body. It returns an *apiError (422)
// naming every problem by JSON pointer, or nil.
func (s *eventSchemas) validate(body map[string]any) *apiError {
	typ, _ := body["type"].(string)
	dataSchema, known := s.data[typ]
	if _, present := body["type"]; present && !known {
		return &apiError{status: 422, code: "unknown_event_type",
			detail: fmt.Sprintf("unknown event type; publishable types are %s", strings.Join(s.types(), ", ")),
			errors: map[string]string{"/type": "unknown event type"}}
	}
	problems := map[string]string{}
	collect(problems, "", s.request.VisitJSON(body, openapi3.MultiErrors()))
	if data, ok := body["data"].(map[string]any); ok && known {
		collect(problems, "/data", dataSchema.VisitJSON(data, openapi3.MultiErrors()))
	}
	if len(problems) == 0 {
		return nil
	}
	return &apiError{status: 422, code: "invalid_event", detail: "the event does not match its schema", errors: problems}
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
