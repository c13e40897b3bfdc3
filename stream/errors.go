package stream

import (
	"errors"
	"fmt"
)

// ErrCursorExpired reports a cursor that points at history the log no longer
// holds: trimmed by retention, or lost with an older epoch, or ahead of the
// head after the log lost its tail. Readers must answer it with a reset
// (sync.reset on SSE, reset:true when polling), never by skipping ahead
// silently. Errors matching it are *ExpiredError values, which carry the
// head to continue from.
var ErrCursorExpired = errors.New("cursor expired")

// ErrClosed reports use of a Log after Close.
var ErrClosed = errors.New("log closed")

// ErrIdempotencyConflict reports an AppendOnce key reused for different
// content.
var ErrIdempotencyConflict = errors.New("idempotency key reused with different content")

// ErrUnavailable wraps failures of the log's backing store (Redis down):
// temporary, worth a retry.
var ErrUnavailable = errors.New("log unavailable")

// ExpiredError is the error returned for an expired cursor.
type ExpiredError struct {
	Cursor ID
	// Head is the newest id of the log when the reader found the cursor
	// expired: a reader that resets continues with the events after it.
	Head ID
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("cursor %s expired, head is %s", e.Cursor, e.Head)
}

// Is makes errors.Is(err, ErrCursorExpired) true.
func (e *ExpiredError) Is(target error) bool { return target == ErrCursorExpired }
