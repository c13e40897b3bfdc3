package handlers

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// bodyDeadline bounds reading a request body to d from the moment the
// request reaches the handlers. Without it a client that trickles its body
// holds the connection for as long as it likes: net/http reads what is left
// of an unread body before it sends the answer, so even a request refused
// at once (a 401) would wait. The deadline is lifted once the body has
// been read to its end: past that point net/http reads the connection in
// the background, and an expired deadline would cancel the request.
// Requests without a body (streams, polls) are not touched.
func bodyDeadline(d time.Duration) func(http.Handler) http.Handler {
	if d <= 0 {
		return func(next http.Handler) http.Handler { return next }
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
				rc := http.NewResponseController(w)
				if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
					r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody lifts the read deadline when its body ends.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.lifted {
		b.lifted = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
