package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/realtime-dev/realtime"
	"github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/poll"
	"github.com/realtime-dev/realtime/stream"
)

// encode writes v as JSON with status.
func encode(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types reach here; they always encode.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// problem is the one error body of the API (openapi.yaml Problem).
type problem struct {
	Type      string            `json:"type"`
	Title     string            `json:"title"`
	Status    int               `json:"status"`
	Detail    string            `json:"detail,omitempty"`
	Instance  string            `json:"instance,omitempty"`
	Code      string            `json:"code"`
	RequestID string            `json:"requestId,omitempty"`
	Errors    map[string]string `json:"errors,omitempty"`
}

// apiError is an error whose message is meant for the client.
type apiError struct {
	status int
	code   string
	detail string
	errors map[string]string
}

func (e *apiError) Error() string { return e.code + ": " + e.detail }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, detail: fmt.Sprintf(format, args...)}
}

// retryAfter is the Retry-After of a 503, in seconds.
const retryAfter = 2

// errorWriter returns writeError bound to logger, in the shape middleware
// takes.
func errorWriter(logger *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) { writeError(logger, w, r, err) }
}

// writeError is the only function that turns an error into an HTTP status
// and a client message. Errors it does not know become a 500 whose detail
// is logged, never sent.
func writeError(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	var (
		api   *apiError
		auth  *middleware.AuthError
		param *poll.ParamError
		big   *http.MaxBytesError
		bad   *realtime.EventError
		rate  *errRateLimited
	)
	switch {
	case errors.As(err, &rate):
		w.Header().Set("Retry-After", retryAfterSeconds(rate.wait))
		what := rate.what
		if what == "" {
			what = "this workspace publishes faster than allowed"
		}
		api = errorf(http.StatusTooManyRequests, "rate_limited", "%s; retry after %s", what, rate.wait.Round(time.Millisecond))
	case errors.Is(err, stream.ErrTooManyWorkspaces):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		api = errorf(http.StatusServiceUnavailable, "node_busy", "this node follows as many workspaces as it may; retry shortly (possibly on another node)")
	case errors.As(err, &api):
	case errors.As(err, &bad):
		api = &apiError{status: http.StatusUnprocessableEntity, code: bad.Code, detail: bad.Detail, errors: bad.Problems}
	case errors.As(err, &auth):
		challenge := `Bearer realm="realtime"`
		if auth.Presented {
			challenge += `, error="invalid_token"`
		}
		switch {
		case errors.Is(err, middleware.ErrQueryTokenDisabled):
			api = errorf(http.StatusUnauthorized, "query_token_disabled", "this server does not take tokens in the URL: send an Authorization header, or open the stream with a ticket (POST .../stream-tickets)")
		case errors.Is(err, errInvalidTicket):
			api = errorf(http.StatusUnauthorized, "invalid_ticket", "the stream ticket is unknown, used or expired: get a new one")
		case errors.Is(err, errTokenExpiring):
			challenge += `, error_description="the token expires too soon"`
			api = errorf(http.StatusUnauthorized, "token_expiring", "the token expires too soon to open a stream: get a fresh one")
		default:
			api = errorf(http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
		}
		w.Header().Set("WWW-Authenticate", challenge)
		logger.DebugContext(r.Context(), "unauthenticated", "err", err)
	case errors.As(err, &param):
		code := "invalid_parameter"
		if param.Param == "cursor" {
			code = "invalid_cursor"
		}
		api = &apiError{status: http.StatusBadRequest, code: code, detail: param.Error(), errors: map[string]string{param.Param: param.Err.Error()}}
	case errors.Is(err, stream.ErrMalformedID):
		api = errorf(http.StatusBadRequest, "invalid_cursor", "%v", err)
	case errors.As(err, &big):
		api = errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body is over %d bytes", big.Limit)
	case errors.Is(err, stream.ErrUnavailable), errors.Is(err, stream.ErrClosed):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		api = errorf(http.StatusServiceUnavailable, "log_unavailable", "the event log is unavailable; retry shortly")
		logger.ErrorContext(r.Context(), "event log unavailable", "err", err)
	default:
		api = errorf(http.StatusInternalServerError, "internal", "internal error; quote the request id when reporting it")
		logger.ErrorContext(r.Context(), "internal error", "err", err)
	}
	b, _ := json.Marshal(problem{
		Type:      "https://realtime.dev/problems/" + api.code,
		Title:     http.StatusText(api.status),
		Status:    api.status,
		Detail:    api.detail,
		Instance:  r.URL.Path,
		Code:      api.code,
		RequestID: middleware.RequestIDFromContext(r.Context()),
		Errors:    api.errors,
	})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(api.status)
	w.Write(append(b, '\n'))
}
