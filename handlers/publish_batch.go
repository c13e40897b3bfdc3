package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/realtime-dev/realtime"
	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream"
)

// batchAppender is what a batch publish needs of the log.
type batchAppender interface {
	AppendBatch(ctx context.Context, items []stream.BatchItem) ([]*stream.Event, []bool, error)
}

// handlePublishBatch appends up to stream.MaxBatch events to one workspace
// in one request: in order, contiguously, all or none. Each event is
// checked as a single publish is, and any bad one refuses the whole batch
// with errors pointing into it (/events/3/data/id). An Idempotency-Key
// covers the batch: each event is recorded under the key and its index,
// with a fingerprint of its content and of the batch's length, so that a
// retry replays every event, and a retry with another body conflicts.
// The log records keys per event so that the Event Bus bridge, whose
// entries each carry their own upstream id, uses the same path.
func handlePublishBatch(logger *slog.Logger, cfg Config, log batchAppender, limits stream.RateLimiter, schemas *realtime.Schemas) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws := chi.URLParam(r, "workspaceID")
		// 200, not 255: each event's record is the key, '#' and its index.
		idemKey, hasKey, ok := idempotencyKey(logger, w, r, 200)
		if !ok {
			return
		}
		raw, ok := readJSON(logger, w, r, cfg.MaxBatchBody)
		if !ok {
			return
		}
		items, err := splitBatch(raw)
		var shape *apiError
		switch {
		case errors.As(err, &shape):
			writeError(logger, w, r, shape)
			return
		case err != nil:
			writeError(logger, w, r, errorf(http.StatusBadRequest, "invalid_json", "the body must be one JSON object"))
			return
		}
		headerCorr := headerCorrelation(r)
		now := time.Now().UTC()
		batch := make([]stream.BatchItem, len(items))
		var bad *realtime.EventError
		for i, item := range items {
			ptr := "/events/" + strconv.Itoa(i)
			if int64(len(item)) > cfg.MaxBody {
				// What a single publish may carry: the log, its readers
				// and their clients size for it.
				bad = addProblems(bad, &realtime.EventError{Code: "invalid_event", Detail: "an event is larger than a single publish may be",
					Problems: map[string]string{"/": fmt.Sprintf("over %d bytes, the limit of one event", cfg.MaxBody)}}, ptr)
				continue
			}
			generic, data, err := decodeEventBody(item)
			if err != nil {
				bad = addProblems(bad, &realtime.EventError{Code: "invalid_event", Detail: "an event is not a JSON object",
					Problems: map[string]string{"/": "not a JSON object"}}, ptr)
				continue
			}
			if p := schemas.ValidatePublish(generic); p != nil {
				bad = addProblems(bad, p, ptr)
				continue
			}
			batch[i].Event = eventFrom(generic, data, ws, headerCorr, now)
			if hasKey {
				// As a single publish fingerprints its decoded body, plus
				// the batch's length: a retry must be the same batch.
				batch[i].Once = &stream.Once{Key: "publish:" + idemKey + "#" + strconv.Itoa(i),
					Fingerprint: fingerprint(generic, "\n"+strconv.Itoa(len(items))), TTL: cfg.IdempotencyTTL}
			}
		}
		if bad != nil {
			writeError(logger, w, r, bad)
			return
		}
		// A batch takes a token per event: it delivers as many.
		if cfg.PublishRate.Per > 0 && !allow(logger, w, r, limits, publishBucket(ws), cfg.PublishRate, len(batch), "") {
			return
		}
		events, replayed, err := log.AppendBatch(r.Context(), batch)
		var be *stream.BatchError
		switch {
		case errors.As(err, &be) && errors.Is(err, stream.ErrIdempotencyConflict):
			writeError(logger, w, r, &apiError{status: http.StatusUnprocessableEntity, code: "idempotency_key_reused",
				detail: "this Idempotency-Key was used with a different batch", errors: map[string]string{"Idempotency-Key": "used with a different batch"}})
			return
		case err != nil:
			writeError(logger, w, r, err)
			return
		}
		appmw.AddLogAttrs(r.Context(), slog.Int("events", len(events)),
			slog.String("first_event_id", events[0].ID.String()), slog.String("last_event_id", events[len(events)-1].ID.String()))
		if len(replayed) > 0 && replayed[0] {
			// A retry of a whole batch replays every event of it.
			w.Header().Set("Idempotent-Replayed", "true")
			logger.InfoContext(r.Context(), "batch replayed", "idempotency_key_hash", shortHash(idemKey))
		} else {
			logger.InfoContext(r.Context(), "batch published")
		}
		out := make([]byte, 0, 64+len(events)*(len(events[0].JSON())+2))
		out = append(out, `{"events":[`...)
		for i, e := range events {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, e.JSON()...)
		}
		out = append(out, "]}\n"...)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(out)
	})
}

// splitBatch reads {"events":[…]} in one pass and returns each event's
// bytes, unparsed beyond their syntax (decodeEventBody reads each). A body
// that is not JSON is a plain error; one of another shape, or with 0 or
// more than stream.MaxBatch events, an *apiError.
func splitBatch(raw []byte) ([]jsontext.Value, error) {
	shape := &apiError{status: http.StatusUnprocessableEntity, code: "invalid_event",
		detail: `the body must be {"events": [...]}`, errors: map[string]string{"/events": "an array of events, and nothing else"}}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	if tok.Kind() != '{' {
		// Valid JSON of another kind ([], a string) is a shape error;
		// anything else is not JSON.
		if !jsontext.Value(raw).IsValid() {
			return nil, errors.New("the body is not JSON")
		}
		return nil, shape
	}
	var items []jsontext.Value
	seen := false
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		if name.String() != "events" || seen || dec.PeekKind() != '[' {
			if _, err := dec.ReadValue(); err != nil {
				return nil, err
			}
			return nil, shape
		}
		seen = true
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		for dec.PeekKind() != ']' {
			v, err := dec.ReadValue()
			if err != nil {
				return nil, err
			}
			if len(items) == stream.MaxBatch {
				return nil, &apiError{status: http.StatusUnprocessableEntity, code: "invalid_event",
					detail: fmt.Sprintf("a batch holds 1 to %d events", stream.MaxBatch),
					errors: map[string]string{"/events": fmt.Sprintf("1 to %d events", stream.MaxBatch)}}
			}
			// The event's own bytes in raw, by offset: the value the
			// decoder returns lives only until its next read, and
			// decodeEventBody copies out what it keeps.
			end := int(dec.InputOffset())
			items = append(items, jsontext.Value(raw[end-len(v):end]))
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	if !seen {
		return nil, shape
	}
	if len(items) == 0 {
		return nil, &apiError{status: http.StatusUnprocessableEntity, code: "invalid_event",
			detail: fmt.Sprintf("a batch holds 1 to %d events, not 0", stream.MaxBatch),
			errors: map[string]string{"/events": fmt.Sprintf("1 to %d events", stream.MaxBatch)}}
	}
	return items, nil
}

// addProblems merges p's problems, under ptr, into acc.
func addProblems(acc, p *realtime.EventError, ptr string) *realtime.EventError {
	if acc == nil {
		acc = &realtime.EventError{Code: p.Code, Detail: "an event of the batch is not valid; nothing was appended", Problems: map[string]string{}}
	}
	if p.Code != acc.Code {
		acc.Code = "invalid_event"
	}
	for k, v := range p.Problems {
		if k == "/" {
			k = ""
		}
		acc.Problems[ptr+k] = v
	}
	return acc
}
