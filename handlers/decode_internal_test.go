package handlers

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// decodeEventBodyByUnmarshal is what decodeEventBody replaced: the body
// unmarshalled by json v2 into its members' bytes, then each member into
// any. The fuzz target holds the token-built decoder to it.
func decodeEventBodyByUnmarshal(raw []byte) (map[string]any, json.RawMessage, error) {
	var top map[string]jsontext.Value
	if err := jsonv2.Unmarshal(raw, &top); err != nil {
		return nil, nil, err
	}
	if top == nil {
		return nil, nil, errors.New("the body is null")
	}
	generic := make(map[string]any, len(top))
	for k, v := range top {
		var x any
		if err := jsonv2.Unmarshal(v, &x); err != nil {
			return nil, nil, err
		}
		generic[k] = x
	}
	return generic, json.RawMessage(top["data"]), nil
}

// FuzzDecodeEventBody: decodeEventBody accepts exactly the bodies json
// v2's Unmarshal accepts as an object, gives the same members and the same
// data bytes, leaves its input as it was, and hands out data that the
// pooled decoder's next use does not change.
func FuzzDecodeEventBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"chat.message","data":{"chatId":"c","id":"m","text":"hi"}}`,
		` { "type" : "a.b" , "data" :  [1, 2.5e3, -0, true, false, null, "x\u00e9\n"] } `,
		`{"data":{"a":{"b":[{}]}},"data":1}`, `{"a":{"b":1,"b":2}}`, `{}`, `null`, `[]`, `"x"`, `1`, `{"a":1} x`, `{"a":1}{}`,
		`{"d\u0061ta":{"x":1}}`, `{"a":1,"\u0061":2}`, `{"t\"y":"x"}`, strings.Repeat(`{"a":`, 2000) + `1` + strings.Repeat(`}`, 2000),
		`{"n":1e400}`, `{"n":-1e-400}`, `{"s":"\ud800"}`, "{\"s\":\"\xff\"}", `{"d":{"x":"y"}`, `{"data"  :	{"x":1}	}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		in := []byte(body)
		got, gotData, err := decodeEventBody(in)
		if string(in) != body {
			t.Fatalf("%q: the input changed to %q", body, in)
		}
		kept := string(gotData)
		if _, _, err := decodeEventBody([]byte(`{"data":{"other":"body, to reuse the decoder"}}`)); err != nil {
			t.Fatal(err)
		}
		if string(gotData) != kept {
			t.Fatalf("%q: data changed from %q to %q when the decoder was reused", body, kept, gotData)
		}
		want, wantData, wantErr := decodeEventBodyByUnmarshal([]byte(body))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: error %v, Unmarshal's %v", body, err, wantErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: members %#v, Unmarshal's %#v", body, got, want)
		}
		if string(gotData) != string(wantData) {
			t.Fatalf("%q: data %q, Unmarshal's %q", body, gotData, wantData)
		}
	})
}

func BenchmarkDecodeEventBody(b *testing.B) {
	body := []byte(`{"type":"approval.created","correlationId":"c-1","data":{"id":"sl-1","sl_seq":1,"sl_ts":1795657302783000,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`)
	for _, tc := range []struct {
		name string
		fn   func([]byte) (map[string]any, json.RawMessage, error)
	}{{"tokens", decodeEventBody}, {"unmarshal", decodeEventBodyByUnmarshal}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := tc.fn(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
