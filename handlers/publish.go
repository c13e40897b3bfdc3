package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	jsonv2 "github.com/go-json-experiment/json"

	"github.com/realtime-dev/realtime"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// correlationHeader carries a publish's correlation id, in and out, in
// its canonical form (see appmw.RequestIDHeader).
const correlationHeader = "X-Correlation-Id"

// appender is what publishing needs of the log.
type appender interface {
	Append(ctx context.Context, e *stream.Event) (*stream.Event, error)
	AppendOnce(ctx context.Context, e *stream.Event, once stream.Once) (*stream.Event, bool, error)
}

// handlePublish appends one event. Every check happens before Append, so
// bad input never reaches the log.
func handlePublish(logger *slog.Logger, cfg Config, log appender, limits stream.RateLimiter, schemas *realtime.Schemas) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws := chi.URLParam(r, "workspaceID")
		idemKey, hasKey, ok := idempotencyKey(logger, w, r, 255)
		if !ok {
			return
		}
		raw, ok := readJSON(logger, w, r, cfg.MaxBody)
		if !ok {
			return
		}
		generic, data, err := decodeEventBody(raw)
		if err != nil {
			writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_json", "the body must be one JSON object"))
			return
		}
		if p := schemas.ValidatePublish(generic); p != nil {
			writeError(logger, w, r, p)
			return
		}
		ev := eventFrom(generic, data, ws, headerCorrelation(r), time.Now().UTC())
		w.Header().Set(correlationHeader, ev.CorrelationID)
		appmw.AddLogAttrs(r.Context(), slog.String("correlation_id", ev.CorrelationID), slog.String("event_type", ev.Type))
		// The workspace's bucket is taken only by a valid publish: it is
		// shared by every publisher of the workspace, and one that sends
		// malformed events must not use up the others' rate.
		if cfg.PublishRate.Per > 0 && !allow(logger, w, r, limits, publishBucket(ws), cfg.PublishRate, 1, "") {
			return
		}
		var (
			e        *stream.Event
			replayed bool
		)
		if hasKey {
			e, replayed, err = log.AppendOnce(r.Context(), ev, stream.Once{
				Key: "publish:" + idemKey, Fingerprint: fingerprint(generic, ""), TTL: cfg.IdempotencyTTL,
			})
		} else {
			e, err = log.Append(r.Context(), ev)
		}
		if errors.Is(err, stream.ErrIdempotencyConflict) {
			writeError(logger, w, r, &apiError{status: http.StatusUnprocessableEntity, code: "idempotency_key_reused",
				detail: "this Idempotency-Key was used with a different body", errors: map[string]string{"Idempotency-Key": "used with a different body"}})
			return
		}
		if err != nil {
			writeError(logger, w, r, err)
			return
		}
		appmw.AddLogAttrs(r.Context(), slog.String("event_id", e.ID.String()))
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
			w.Header().Set(correlationHeader, e.CorrelationID)
			logger.InfoContext(r.Context(), "publish replayed", "idempotency_key_hash", shortHash(idemKey))
		} else {
			logger.InfoContext(r.Context(), "event published")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(append(e.JSON(), '\n'))
	})
}

// eventFrom builds the event a validated publish body describes (the schema
// has checked that its members are strings, when present). Its correlation
// id is the body's, else fallback, else a new one.
func eventFrom(generic map[string]any, data json.RawMessage, ws, fallback string, now time.Time) *stream.Event {
	ev := &stream.Event{WorkspaceID: ws, Timestamp: now, Data: data}
	ev.Type, _ = generic["type"].(string)
	ev.TargetUserID, _ = generic["targetUserId"].(string)
	ev.CorrelationID, _ = generic["correlationId"].(string)
	ev.Source, _ = generic["source"].(string)
	if ev.CorrelationID == "" {
		ev.CorrelationID = fallback
	}
	if ev.CorrelationID == "" {
		ev.CorrelationID = appmw.NewID()
	}
	return ev
}

// headerCorrelation is the request's X-Correlation-ID when it is sane
// (at most 128 printable ASCII characters), else "".
func headerCorrelation(r *http.Request) string {
	corr := r.Header.Get(correlationHeader)
	if !printable(corr, 128) {
		return ""
	}
	return corr
}

// fingerprint identifies a publish body for its Idempotency-Key: the
// decoded body re-encoded with sorted keys (so formatting differences are
// not conflicts), then extra, hashed.
func fingerprint(generic map[string]any, extra string) string {
	canonical, _ := json.Marshal(generic)
	sum := sha256.Sum256(append(canonical, extra...))
	return hex.EncodeToString(sum[:])
}

// allow takes n tokens from the bucket key at rate, or answers the error
// itself: 429 with Retry-After (what says whose rate, "" for the
// workspace's publishes), or the store's failure.
func allow(logger *slog.Logger, w http.ResponseWriter, r *http.Request, limits stream.RateLimiter, key string, rate stream.Rate, n int, what string) bool {
	ok, wait, err := limits.Allow(r.Context(), key, rate, n)
	if err != nil {
		writeError(logger, w, r, err)
		return false
	}
	if !ok {
		writeError(logger, w, r, &errRateLimited{wait: wait, what: what})
		return false
	}
	return true
}

// idempotencyKey reads the request's Idempotency-Key, if it has one, and
// answers a 400 itself (ok false) when it is not 1 to max printable ASCII
// characters.
func idempotencyKey(logger *slog.Logger, w http.ResponseWriter, r *http.Request, max int) (key string, has, ok bool) {
	key, has = r.Header.Get("Idempotency-Key"), len(r.Header.Values("Idempotency-Key")) > 0
	if has && (key == "" || !printable(key, max)) {
		rule := fmt.Sprintf("1-%d printable ASCII characters", max)
		writeError(logger, w, r, &apiError{status: http.StatusBadRequest, code: "invalid_parameter",
			detail: "Idempotency-Key must be " + rule, errors: map[string]string{"Idempotency-Key": rule}})
		return "", false, false
	}
	return key, has, true
}

// readJSON reads a JSON request body of at most limit bytes, answering
// the error itself (415, 413) when it cannot.
func readJSON(logger *slog.Logger, w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if !isJSONMediaType(r.Header.Get("Content-Type")) {
		writeError(logger, w, r, errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as application/json"))
		return nil, false
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var big *http.MaxBytesError
	switch {
	case errors.As(err, &big):
		writeError(logger, w, r, err)
		return nil, false
	case err != nil:
		// The client's fault (a body shorter than its Content-Length, a
		// connection gone mid-body): not a 500.
		logger.DebugContext(r.Context(), "request body not read whole", "err", err)
		writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_json", "the body ended before it was whole"))
		return nil, false
	}
	if !utf8.Valid(raw) {
		// JSON is UTF-8 (RFC 8259); stored raw, these bytes would make a
		// strict parser reject every page and frame that carries them.
		writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_json", "the body is not valid UTF-8"))
		return nil, false
	}
	return raw, true
}

// isJSONMediaType reports whether a Content-Type names application/json,
// with any parameters. The usual header is answered without parsing it.
func isJSONMediaType(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// decodeStrict decodes exactly one JSON value from raw into v, as strictly
// as a publish body is read: member names exactly as v's fields name
// them, each once, no other members, valid UTF-8 (encoding/json v2's
// rules, where v1 matched names in any case, let a repeated member win
// and ignored unknown ones).
func decodeStrict(raw []byte, v any) error {
	return jsonv2.Unmarshal(raw, v, jsonv2.RejectUnknownMembers(true))
}

// printable reports whether s is at most n bytes of printable ASCII.
func printable(s string, n int) bool {
	if len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// shortHash names a client-supplied key in logs without logging the key.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}
