package handlers

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// deadlineRecorder is a ResponseWriter that records the write deadlines
// set on it (http.ResponseController finds SetWriteDeadline on it).
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	set []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

// Every write is bounded by the timeout, and none leaves a deadline armed
// once it is done: an idle stream has no timer to expire.
func TestResponseWriterLeavesNoDeadlineArmed(t *testing.T) {
	rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	var w http.ResponseWriter = rec
	out := newResponseWriter(w, 5*time.Second)
	frames := []string{": ready\n\n", "id: 1\ndata: {}\n\n", "id: 2\ndata: {}\n\n"}
	for i, f := range frames {
		before := time.Now()
		if err := out.Write([]byte(f)); err != nil {
			t.Fatal(err)
		}
		got := rec.set[2*i:]
		if len(got) != 2 || got[0].Before(before.Add(5*time.Second)) || got[0].After(time.Now().Add(5*time.Second)) || !got[1].IsZero() {
			t.Fatalf("write %d set deadlines %v; want now+5s, then cleared", i, got)
		}
	}
	if want := frames[0] + frames[1] + frames[2]; rec.Body.String() != want || !rec.Flushed {
		t.Errorf("body %q (flushed %v), want %q flushed", rec.Body.String(), rec.Flushed, want)
	}
	if out.Written() != int64(len(rec.Body.String())) {
		t.Errorf("Written() = %d, want %d", out.Written(), rec.Body.Len())
	}
}
