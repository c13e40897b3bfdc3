package realtime

import (
	"encoding/json"
	"unicode/utf16"

	"github.com/getkin/kin-openapi/openapi3"
)

// fastSchema is a schema compiled for the common case: telling, without
// allocating, that a value is valid. It covers the keywords openapi.yaml's
// event schemas use (type object or string, required, properties,
// additionalProperties true or false, minLength, maxLength, string enums,
// and words that do not validate: description, title, example); a schema
// with anything else is not compiled, and kin-openapi checks it every time.
// A value the fast path calls invalid is checked again by kin-openapi,
// which says why, so the fast path can only be stricter than kin-openapi,
// never more lenient: FuzzFastSchemaAgrees holds the two to the same
// verdict. kin-openapi alone was a fifth of a batch publish's CPU.
type fastSchema struct {
	object   bool // else string
	required []string
	props    map[string]*fastSchema
	closed   bool // additionalProperties: false
	minLen   int
	maxLen   int // -1: none
	enum     map[string]bool
}

// allowedKeywords are what compileFast understands, in the JSON form of
// an openapi3.Schema.
var allowedKeywords = map[string]bool{
	"type": true, "required": true, "properties": true, "additionalProperties": true,
	"minLength": true, "maxLength": true, "enum": true, "description": true, "title": true, "example": true,
}

// compileFast compiles s, or returns nil when s uses anything else.
func compileFast(s *openapi3.Schema) *fastSchema {
	if s == nil {
		return nil
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil
	}
	var words map[string]any
	if json.Unmarshal(raw, &words) != nil {
		return nil
	}
	for k := range words {
		if !allowedKeywords[k] && !(len(k) > 2 && k[:2] == "x-") {
			return nil
		}
	}
	f := &fastSchema{maxLen: -1}
	switch {
	case s.Type.Is(openapi3.TypeObject):
		f.object = true
	case s.Type.Is(openapi3.TypeString):
	default:
		return nil
	}
	if s.AdditionalProperties.Schema != nil {
		return nil
	}
	if s.AdditionalProperties.Has != nil && !*s.AdditionalProperties.Has {
		f.closed = true
	}
	f.required = s.Required
	if len(s.Properties) > 0 {
		f.props = make(map[string]*fastSchema, len(s.Properties))
		for name, ref := range s.Properties {
			if ref == nil {
				return nil
			}
			p := compileFast(ref.Value)
			if p == nil {
				return nil
			}
			f.props[name] = p
		}
	}
	f.minLen = int(s.MinLength)
	if s.MaxLength != nil {
		f.maxLen = int(*s.MaxLength)
	}
	if len(s.Enum) > 0 {
		f.enum = make(map[string]bool, len(s.Enum))
		for _, v := range s.Enum {
			str, ok := v.(string)
			if !ok {
				return nil
			}
			f.enum[str] = true
		}
	}
	if f.object && (f.minLen != 0 || f.maxLen >= 0 || f.enum != nil) {
		return nil // length and enum words on an object: not our case
	}
	return f
}

// valid reports whether v, as encoding/json decodes into any, is valid.
func (f *fastSchema) valid(v any) bool {
	if f.object {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for _, r := range f.required {
			if _, ok := m[r]; !ok {
				return false
			}
		}
		for k, x := range m {
			p, known := f.props[k]
			if !known {
				if f.closed {
					return false
				}
				continue
			}
			if !p.valid(x) {
				return false
			}
		}
		return true
	}
	s, ok := v.(string)
	if !ok {
		return false
	}
	if f.enum != nil && !f.enum[s] {
		return false
	}
	if f.minLen > 0 || f.maxLen >= 0 {
		// As kin-openapi counts (its UTF-16 rule only adds for runes a
		// Go string never decodes to, so: runes).
		n := 0
		for _, r := range s {
			if utf16.IsSurrogate(r) {
				n += 2
			} else {
				n++
			}
		}
		if n < f.minLen || (f.maxLen >= 0 && n > f.maxLen) {
			return false
		}
	}
	return true
}
