package stream

import "sync/atomic"

// The delivery core's running totals, for metrics: how many deliveries
// the fan-out wrote straight to a connection, and how many it queued for
// the subscriber's own goroutine. They are added to once per event and
// topic, after its fan-out, never once per subscriber.
var deliveredDirect, deliveredQueued atomic.Uint64

// Deliveries returns the deliveries made since the process started:
// written directly by the fan-out, and queued.
func Deliveries() (direct, queued uint64) {
	return deliveredDirect.Load(), deliveredQueued.Load()
}

// countDeliveries adds one fan-out's deliveries.
func countDeliveries(direct, queued uint64) {
	if direct > 0 {
		deliveredDirect.Add(direct)
	}
	if queued > 0 {
		deliveredQueued.Add(queued)
	}
}
