package handlers

import (
	"sync"
	"time"
)

// heartbeats keeps the streams that take direct writes alive from one
// goroutine per node: every quarter of the heartbeat interval it writes a
// heartbeat to each stream silent for a whole interval (straight to its
// socket, like the hub's fan-out, after an id-only frame when events its
// filter hides have passed). Such a stream has no timer of its own, and
// its goroutine never wakes for one: with thousands of quiet streams, that
// was a wake-up per stream per interval.
type heartbeats struct {
	every time.Duration

	mu      sync.Mutex
	streams map[*sseStream]struct{}
	stop    chan struct{} // closed when the last stream leaves; nil while none
	done    chan struct{} // closed when the sweeper of stop has returned
}

func newHeartbeats(every time.Duration) *heartbeats {
	return &heartbeats{every: every, streams: make(map[*sseStream]struct{})}
}

// add registers st, starting the sweeper with the first stream.
func (h *heartbeats) add(st *sseStream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// The sweeper starts counting the stream's silence now; it reads the
	// fields only under mu's hand-off (this lock, then its snapshot).
	st.seenAt, st.seenWritten = time.Now(), st.sock.Written()
	h.streams[st] = struct{}{}
	if h.stop == nil {
		h.stop, h.done = make(chan struct{}), make(chan struct{})
		// Exits when the last stream leaves: remove closes stop, and waits
		// for done, so the sweeper ends before the last stream does
		// (which serve waits for).
		go h.run(h.stop, h.done)
	}
}

// remove unregisters st; the last stream stops the sweeper and waits for
// it to return.
func (h *heartbeats) remove(st *sseStream) {
	h.mu.Lock()
	delete(h.streams, st)
	var done chan struct{}
	if len(h.streams) == 0 && h.stop != nil {
		close(h.stop)
		h.stop, done = nil, h.done
	}
	h.mu.Unlock()
	if done != nil {
		<-done // outside mu: a sweep in progress takes it
	}
}

func (h *heartbeats) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(h.every / 4)
	defer tick.Stop()
	var list []*sseStream // the snapshot, reused
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			list = h.sweep(now, list[:0])
		}
	}
}

// sweep sends the heartbeats that are due, listing the streams in list,
// which it returns emptied. A stream whose goroutine is busy is skipped
// (Ping declines): it is writing anyway.
func (h *heartbeats) sweep(now time.Time, list []*sseStream) []*sseStream {
	h.mu.Lock()
	for st := range h.streams {
		list = append(list, st)
	}
	h.mu.Unlock()
	for _, st := range list {
		// A silent stream gets a heartbeat (after an id-only frame when
		// events its filter hides have passed). One that is not silent
		// still gets that id-only frame once an interval: a stream busy
		// with presence frames is never silent, and its resume point must
		// move past hidden events all the same.
		//
		// The fan-out's direct writes stamp no clock (a clock read per
		// write was a fiftieth of a large workspace's fan-out): the
		// sweeper notes when the socket's byte count last moved, up to a
		// sweep after the write, so a stream counts as silent from three
		// quarters of an interval after its last write on that note, and
		// gets its beat between 0.75 and 1.25 intervals after it.
		if w := st.sock.Written(); w != st.seenWritten {
			st.seenWritten, st.seenAt = w, now
		}
		silent := now.Sub(st.seenAt) >= h.every-h.every/4
		if !silent && now.UnixNano()-st.lastPing < int64(h.every) {
			continue
		}
		st.lastPing = now.UnixNano()
		if silent {
			st.tail.Ping(heartbeatFrame)
		} else {
			st.tail.Ping(nil)
		}
	}
	clear(list) // hold no stream that ends
	return list[:0]
}
