package handlers

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/realtime-dev/realtime/poll"
	"github.com/realtime-dev/realtime/stream"
)

// The spliced poll answer is the JSON that marshalling the documented
// shape gives, for every combination of parts.
func TestAppendPollResultMatchesMarshal(t *testing.T) {
	ev := func(seq uint64, data string) *stream.Event {
		e := &stream.Event{Type: "chat.message", WorkspaceID: "ws1", CorrelationID: "c\"1", Timestamp: time.Unix(1795657302, 0).UTC(),
			Data: json.RawMessage(data)}
		if seq > 0 {
			e.ID = stream.ID{Epoch: 1795657302783000, Seq: seq}
		}
		return e
	}
	type want struct {
		Events     []*stream.Event `json:"events"`
		NextCursor stream.ID       `json:"nextCursor"`
		HasMore    bool            `json:"hasMore"`
		Reset      bool            `json:"reset"`
		Ephemeral  []*stream.Event `json:"ephemeral"`
	}
	for _, res := range []poll.Result{
		{Events: []*stream.Event{}, NextCursor: stream.ID{Epoch: 7, Seq: 3}},
		{Events: []*stream.Event{ev(1, `{"chatId":"c","id":"m1","text":"hé \u2028 <b>"}`)}, NextCursor: stream.ID{Epoch: 1795657302783000, Seq: 1}},
		{Events: []*stream.Event{ev(1, `{"a":1}`), ev(2, `{"a":[1,2]}`)}, NextCursor: stream.ID{Epoch: 1795657302783000, Seq: 2}, HasMore: true},
		{Events: []*stream.Event{}, NextCursor: stream.ID{Epoch: 9, Seq: 0}, Reset: true},
		{Events: []*stream.Event{}, Ephemeral: []*stream.Event{ev(0, `{"typing":true}`), ev(0, `{}`)}, NextCursor: stream.ID{Epoch: 9, Seq: 4}},
	} {
		eph := res.Ephemeral
		if eph == nil {
			eph = []*stream.Event{}
		}
		w, err := json.Marshal(want{res.Events, res.NextCursor, res.HasMore, res.Reset, eph})
		if err != nil {
			t.Fatal(err)
		}
		got := appendPollResult(nil, res)
		if d := cmp.Diff(string(w)+"\n", string(got)); d != "" {
			t.Errorf("poll answer (-marshal +spliced):\n%s", d)
		}
	}
}
