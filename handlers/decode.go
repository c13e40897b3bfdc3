package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// decodeEventBody decodes a publish body, which must be one JSON object,
// in one pass of a pooled jsontext.Decoder (github.com/go-json-experiment,
// strict: one value, valid UTF-8, no duplicate names at any depth): its
// members as encoding/json decodes them into any (objects as
// map[string]any, arrays as []any, numbers as float64), for the schema,
// and the data member's own bytes, to store as sent (Event.Body compacts
// them). Building the values from the decoder's tokens, rather than
// unmarshalling each member again, was a tenth of a publish's CPU.
func decodeEventBody(raw []byte) (map[string]any, json.RawMessage, error) {
	b := bodyDecoders.Get().(*bodyDecoder)
	defer b.release()
	b.src = *bytes.NewBuffer(raw)
	d := &b.dec
	d.Reset(&b.src)
	names := b.names

	tok, err := d.ReadToken()
	if err != nil {
		return nil, nil, err
	}
	switch tok.Kind() {
	case '{':
	case 'n':
		return nil, nil, errors.New("the body is null")
	default:
		return nil, nil, errors.New("the body is not an object")
	}
	top := make(map[string]any, 4)
	var data json.RawMessage
	for {
		name, done, err := readName(d, names)
		if err != nil {
			return nil, nil, err
		}
		if done {
			break
		}
		start := d.InputOffset()
		v, err := readAny(d, names)
		if err != nil {
			return nil, nil, err
		}
		if name == "data" {
			// The value's bytes: after the name come optional white
			// space, the colon, and more; the value itself never starts
			// with any of them. A copy: the event keeps it for as long
			// as the log does, and raw has room to spare.
			data = json.RawMessage(bytes.Clone(bytes.TrimLeft(raw[start:d.InputOffset()], " \t\r\n:")))
		}
		top[name] = v
	}
	if _, err := d.ReadToken(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("trailing data after the JSON value")
		}
		return nil, nil, err
	}
	return top, data, nil
}

// bodyDecoder is a decoder and the reader it decodes, reused across
// requests, with the member names it has seen.
type bodyDecoder struct {
	src   bytes.Buffer
	dec   jsontext.Decoder
	names nameCache
}

var bodyDecoders = sync.Pool{New: func() any { return &bodyDecoder{names: nameCache{}} }}

// nameCache interns member names: the same few recur in every body of a
// type, and each would otherwise be a new string. Bounded in count and
// length, so a client's names cannot grow it.
type nameCache map[string]string

const (
	maxCachedNames   = 256
	maxCachedNameLen = 32
)

func (c nameCache) intern(unquoted []byte) string {
	if s, ok := c[string(unquoted)]; ok {
		return s
	}
	s := string(unquoted)
	if len(c) < maxCachedNames && len(s) <= maxCachedNameLen {
		c[s] = s
	}
	return s
}

func (b *bodyDecoder) release() {
	b.src = bytes.Buffer{} // no reference to the request's body
	b.dec.Reset(&b.src)
	bodyDecoders.Put(b)
}

// readName reads an object member's name, or the object's end (done).
func readName(d *jsontext.Decoder, names nameCache) (name string, done bool, err error) {
	if d.PeekKind() == '}' {
		_, err := d.ReadToken()
		return "", true, err
	}
	v, err := d.ReadValue() // a name: the decoder has checked it is a string
	if err != nil {
		return "", false, err
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return names.intern(v[1 : len(v)-1]), false, nil
	}
	u, err := jsontext.AppendUnquote(nil, v)
	return string(u), false, err
}

// readAny reads the next value as encoding/json would decode it into any.
func readAny(d *jsontext.Decoder, names nameCache) (any, error) {
	tok, err := d.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		obj := make(map[string]any)
		for {
			name, done, err := readName(d, names)
			if err != nil {
				return nil, err
			}
			if done {
				return obj, nil
			}
			v, err := readAny(d, names)
			if err != nil {
				return nil, err
			}
			obj[name] = v
		}
	case '[':
		arr := []any{}
		for d.PeekKind() != ']' {
			v, err := readAny(d, names)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := d.ReadToken(); err != nil {
			return nil, err
		}
		return arr, nil
	case '"':
		return tok.String(), nil
	case '0':
		return tok.Float()
	case 't':
		return true, nil
	case 'f':
		return false, nil
	default: // 'n'
		return nil, nil
	}
}
