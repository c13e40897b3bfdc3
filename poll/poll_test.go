package poll_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime/poll"
	"github.com/realtime-dev/realtime/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseQuery(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		maxWait time.Duration
		want    poll.Query
		param   string // the parameter blamed, "" for success
	}{
		{"defaults", "", 30 * time.Second, poll.Query{Limit: 100}, ""},
		{"from oldest", "cursor=0", 30 * time.Second, poll.Query{HasCursor: true, Limit: 100}, ""},
		{"cursor", "cursor=z-5", 30 * time.Second, poll.Query{Cursor: stream.ID{Epoch: 35, Seq: 5}, HasCursor: true, Limit: 100}, ""},
		{"limit and wait", "limit=1000&wait=30", 30 * time.Second, poll.Query{Limit: 1000, Wait: 30 * time.Second}, ""},
		{"wait clamped to the server cap", "wait=30", 10 * time.Second, poll.Query{Limit: 100, Wait: 10 * time.Second}, ""},
		{"types", "types=approval.*,chat.message", 30 * time.Second, poll.Query{Limit: 100, Types: []string{"approval.*", "chat.message"}}, ""},
		{"empty cursor", "cursor=", 30 * time.Second, poll.Query{}, "cursor"},
		{"bad cursor", "cursor=5", 30 * time.Second, poll.Query{}, "cursor"},
		{"limit 0", "limit=0", 30 * time.Second, poll.Query{}, "limit"},
		{"limit 1001", "limit=1001", 30 * time.Second, poll.Query{}, "limit"},
		{"limit word", "limit=ten", 30 * time.Second, poll.Query{}, "limit"},
		{"wait negative", "wait=-1", 30 * time.Second, poll.Query{}, "wait"},
		{"wait 31", "wait=31", 30 * time.Second, poll.Query{}, "wait"},
		{"wait fractional", "wait=1.5", 30 * time.Second, poll.Query{}, "wait"},
		{"bad types", "types=a.*.b", 30 * time.Second, poll.Query{}, "types"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := poll.ParseQuery(v, tc.maxWait)
			var pe *poll.ParamError
			switch {
			case tc.param == "" && err != nil:
				t.Fatalf("ParseQuery(%q) error %v", tc.query, err)
			case tc.param != "" && (!errors.As(err, &pe) || pe.Param != tc.param):
				t.Fatalf("ParseQuery(%q) = %v; want a ParamError for %s", tc.query, err, tc.param)
			case tc.param == "":
				if d := cmp.Diff(tc.want, got); d != "" {
					t.Fatalf("ParseQuery(%q) (-want +got):\n%s", tc.query, d)
				}
			}
		})
	}
}

// A poll whose page holds only events hidden from the reader keeps
// scanning instead of answering empty with hasMore, and its cursor moves
// past what it skipped.
func TestPollSkipsHiddenEvents(t *testing.T) {
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	for i := range 25 {
		e := &stream.Event{Type: "chat.message", WorkspaceID: "ws1", TargetUserID: "someone-else", Data: []byte(`{}`)}
		if i == 24 {
			e.TargetUserID = ""
		}
		if _, err := log.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	res, release, err := poll.Poll(t.Context(), log, "ws1", "u1", poll.Query{HasCursor: true, Limit: 5})
	release()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 1 || res.Events[0].ID.Seq != 25 || res.NextCursor.Seq != 25 || res.HasMore {
		t.Fatalf("Poll = %d events, next %s, hasMore %v; want the one visible event (seq 25), next at it, no more", len(res.Events), res.NextCursor, res.HasMore)
	}
}

// A long poll whose filter hides every event that passes while it waits
// (other types, or targeted at someone else) answers with a cursor past
// them, so that its next poll is not reset once retention passes its old
// cursor.
func TestLongPollAdvancesPastHiddenEvents(t *testing.T) {
	for _, tc := range []struct {
		name  string
		types []string
		event func(i int) *stream.Event
	}{
		{"other types", []string{"approval.*"}, func(i int) *stream.Event {
			return &stream.Event{Type: "chat.message", WorkspaceID: "ws1", Timestamp: time.Now(), Data: []byte(`{}`)}
		}},
		{"targeted at another user", nil, func(i int) *stream.Event {
			return &stream.Event{Type: "notification.new", WorkspaceID: "ws1", TargetUserID: "u2", Timestamp: time.Now(), Data: []byte(`{}`)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := stream.NewMemory(stream.MemoryConfig{Retention: 5})
				defer log.Close()
				head, _ := log.Head(t.Context(), "ws1")
				q := poll.Query{Cursor: head, HasCursor: true, Limit: 100, Wait: 20 * time.Second, Types: tc.types}
				var res poll.Result
				var err error
				done := make(chan struct{})
				go func() {
					defer close(done)
					var release func()
					res, release, err = poll.Poll(t.Context(), log, "ws1", "u1", q)
					release()
				}()
				synctest.Wait()
				var last stream.ID
				for i := range 20 {
					e, err := log.Append(t.Context(), tc.event(i))
					if err != nil {
						t.Fatal(err)
					}
					last = e.ID
				}
				<-done
				if err != nil || len(res.Events) != 0 || res.Reset || res.NextCursor != last {
					t.Fatalf("long poll: %d events, reset %v, next %s, err %v; want none, next %s", len(res.Events), res.Reset, res.NextCursor, err, last)
				}
				q.Cursor, q.Wait = res.NextCursor, 0
				res, release, err := poll.Poll(t.Context(), log, "ws1", "u1", q)
				release()
				if err != nil || res.Reset {
					t.Fatalf("next poll: reset %v, err %v; want no reset", res.Reset, err)
				}
			})
		})
	}
}

// A poll's query string from a client: parsing never panics, and what it
// accepts is within the API's bounds.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "cursor=0", "cursor=z-5&limit=1000&wait=30&types=approval.*", "limit=-1", "wait=1e9", "cursor=%zz", "types=a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := poll.ParseQuery(v, 25*time.Second)
		if err != nil {
			return
		}
		if q.Limit < 1 || q.Limit > poll.MaxLimit || q.Wait < 0 || q.Wait > 25*time.Second {
			t.Fatalf("ParseQuery(%q) = %+v: out of bounds", raw, q)
		}
	})
}

// An answer stops at poll.MaxAnswerBytes of events (always holding at
// least one) with hasMore, and polling on from its cursor gets every
// visible event exactly once, in order, skipping the hidden ones between
// them.
func TestPollAnswerBoundedInBytes(t *testing.T) {
	log := stream.NewMemory(stream.MemoryConfig{})
	defer log.Close()
	big := []byte(`{"pad":"` + strings.Repeat("x", 200<<10) + `"}`) // larger than a fifth of the cap
	var want []stream.ID
	for i := range 30 {
		e := &stream.Event{Type: "chat.message", WorkspaceID: "ws1", Timestamp: time.Now(), Data: big}
		if i%3 == 1 {
			e.TargetUserID = "someone-else"
		}
		got, err := log.Append(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		if e.TargetUserID == "" {
			want = append(want, got.ID)
		}
	}
	var seen []stream.ID
	q := poll.Query{HasCursor: true, Limit: 1000}
	for polls := 0; ; polls++ {
		if polls > len(want) {
			t.Fatalf("no end after %d polls", polls)
		}
		res, release, err := poll.Poll(t.Context(), log, "ws1", "u1", q)
		release()
		if err != nil || res.Reset {
			t.Fatalf("poll: reset %v, err %v", res.Reset, err)
		}
		size := 0
		for _, e := range res.Events {
			size += len(e.JSON())
			seen = append(seen, e.ID)
		}
		if len(res.Events) > 1 && size > poll.MaxAnswerBytes {
			t.Fatalf("answer of %d events holds %d bytes, over %d", len(res.Events), size, poll.MaxAnswerBytes)
		}
		if len(res.Events) == 0 && res.HasMore {
			t.Fatalf("empty answer with hasMore at %s", res.NextCursor)
		}
		q.Cursor = res.NextCursor
		if !res.HasMore {
			break
		}
	}
	if d := cmp.Diff(want, seen); d != "" {
		t.Fatalf("events over the polls (-want +got):\n%s", d)
	}
	if len(want) <= poll.MaxAnswerBytes/len(big) {
		t.Fatalf("the test's events fit one answer: %d of %d bytes", len(want), len(big))
	}
}
