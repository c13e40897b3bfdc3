package stream_test

import (
	"errors"
	"testing"

	"github.com/realtime-dev/realtime/stream"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in   string
		want stream.ID
		ok   bool
	}{
		{"0", stream.ID{}, true},
		{"1-0", stream.ID{Epoch: 1}, true},
		{"z-42", stream.ID{Epoch: 35, Seq: 42}, true},
		{"hw1ls0b6o-18446744073709551615", stream.ID{Epoch: 50470015293600, Seq: 18446744073709551615}, true},
		{"", stream.ID{}, false},
		{"00", stream.ID{}, false},
		{"0-1", stream.ID{}, false},
		{"01-1", stream.ID{}, false},
		{"1-01", stream.ID{}, false},
		{"A-1", stream.ID{}, false},
		{"1--1", stream.ID{}, false},
		{"1-+1", stream.ID{}, false},
		{" 1-1", stream.ID{}, false},
		{"1-1\n", stream.ID{}, false},
		{"1-18446744073709551616", stream.ID{}, false},
		{"1", stream.ID{}, false},
		{"1-2-3", stream.ID{}, false},
		{"1700000000000000-5", stream.ID{}, false}, // epoch is base36 but must fit uint64
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := stream.ParseID(tc.in)
			if tc.ok != (err == nil) || (tc.ok && got != tc.want) {
				t.Fatalf("ParseID(%q) = %+v, %v; want %+v, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
			if err != nil && !errors.Is(err, stream.ErrMalformedID) {
				t.Fatalf("ParseID(%q) error %v does not match ErrMalformedID", tc.in, err)
			}
			if tc.ok && got.String() != tc.in {
				t.Fatalf("ParseID(%q).String() = %q", tc.in, got.String())
			}
		})
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"0", "1-0", "hw1ls0b6o-42", "-", "1-", "a-b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := stream.ParseID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q).String() = %q: every id has one spelling", s, id.String())
		}
	})
}

func TestFilterMatch(t *testing.T) {
	ev := func(typ, target string) *stream.Event {
		return &stream.Event{ID: stream.ID{Epoch: 1, Seq: 1}, Type: typ, TargetUserID: target}
	}
	eph := func(typ string) *stream.Event { return &stream.Event{Type: typ} } // no id: broadcast
	tests := []struct {
		name  string
		types string
		user  string
		ev    *stream.Event
		want  bool
	}{
		{"no filter", "", "u1", ev("chat.message", ""), true},
		{"exact", "chat.message", "u1", ev("chat.message", ""), true},
		{"exact other", "chat.message", "u1", ev("chat.messages", ""), false},
		{"prefix", "approval.*", "u1", ev("approval.created", ""), true},
		{"prefix deep", "agent.*", "u1", ev("agent.status.changed", ""), true},
		{"prefix not partial segment", "approval.*", "u1", ev("approvals.created", ""), false},
		{"star", "*", "u1", ev("x.y", ""), true},
		{"list", "approval.*,chat.message", "u1", ev("chat.message", ""), true},
		{"targeted at me", "", "u1", ev("notification.new", "u1"), true},
		{"targeted at other", "", "u1", ev("notification.new", "u2"), false},
		{"targeted, anonymous reader", "", "", ev("notification.new", "u2"), false},
		// Presence and typing are opt-in.
		{"ephemeral, no filter", "", "u1", eph("presence.changed"), false},
		{"ephemeral, other types", "approval.*,chat.message", "u1", eph("typing.started"), false},
		{"ephemeral, asked", "approval.*,presence.*", "u1", eph("presence.changed"), true},
		{"ephemeral, exact", "typing.started", "u1", eph("typing.started"), true},
		{"ephemeral, star", "*", "u1", eph("typing.stopped"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			types, err := stream.ParseTypes(tc.types)
			if err != nil {
				t.Fatal(err)
			}
			if got := (stream.Filter{Types: types, UserID: tc.user}).Match(tc.ev); got != tc.want {
				t.Fatalf("Filter{%q, %q}.Match(%s→%q) = %v; want %v", tc.types, tc.user, tc.ev.Type, tc.ev.TargetUserID, got, tc.want)
			}
		})
	}
}

func TestParseTypesRejects(t *testing.T) {
	for _, in := range []string{"*.created", "approval.*.x", "Approval.created", "a..b", ",", "a,", "chat.message\n", "a.**"} {
		if _, err := stream.ParseTypes(in); err == nil {
			t.Errorf("ParseTypes(%q) succeeded; want an error", in)
		}
	}
}
