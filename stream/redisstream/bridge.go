package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream"
)

// BridgeConfig configures Bridge. Zero values are defaults.
type BridgeConfig struct {
	// Stream is the Event Bus: a Redis stream of BaseEvents. Required.
	Stream string
	// Group is the consumer group every node joins ("realtime").
	Group string
	// Consumer names this node in the group; it must be unique per
	// process. Required.
	Consumer string
	// DeadLetter is the stream that receives what cannot be bridged, with
	// the reason (Stream + ":dead").
	DeadLetter string
	// Validate checks an event's type and data (the API's schemas). An
	// error sends the entry to the dead-letter stream. Required.
	Validate func(typ string, data json.RawMessage) error
	// Lease is how long a node may bridge without renewing its lease; when
	// it dies, another takes over after at most this long (10s).
	Lease time.Duration
	// Batch is how many entries are read at once (100).
	Batch int
	// DedupeTTL is how long an upstream id is remembered to drop repeats
	// (stream.DefaultOnceTTL).
	DedupeTTL time.Duration
	// Logger receives what the bridge does.
	Logger *slog.Logger
}

// BaseEvent is the Event Bus's envelope.
type BaseEvent struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Source        string          `json:"source"`
	Timestamp     string          `json:"timestamp"`
	CorrelationID string          `json:"correlationId"`
	TenantID      string          `json:"tenantId"`
	UserID        string          `json:"userId"`
	Version       json.RawMessage `json:"version"`
	Data          json.RawMessage `json:"data"`
}

// Bridge moves the Event Bus's BaseEvents into workspace logs.
//
// Every node runs one and joins the consumer group, but only the node
// holding the bridge lease reads: the group hands entries to its consumers
// in turn, and two nodes appending concurrently could reorder a
// workspace's events. The lease holder processes entries strictly in
// stream order: first the entries pending for it (its own retries, and
// those it claimed with XAUTOCLAIM from a node that died holding them),
// then new ones. An entry is acknowledged only once its event is in the
// workspace log (or in the dead-letter stream), and each append is keyed by
// the upstream event id, so an entry processed twice (a crash between
// append and ack, a claimed entry) appears once.
type Bridge struct {
	log *Log
	cfg BridgeConfig
	key string // the lease key

	// For metrics: entries this node bridged and dead-lettered, and the
	// age of the last one bridged, when it was (ms).
	bridged, deadLettered atomic.Uint64
	lagMillis             atomic.Int64
}

// Counts returns the entries this node bridged and dead-lettered, and how
// old the last one it bridged was when it bridged it (from its entry id).
func (b *Bridge) Counts() (bridged, deadLettered uint64, lag time.Duration) {
	return b.bridged.Load(), b.deadLettered.Load(), time.Duration(b.lagMillis.Load()) * time.Millisecond
}

// Backlog asks Redis for the consumer group's entries delivered and not
// acknowledged (pending), and not yet delivered (undelivered; -1 when
// Redis cannot tell).
func (b *Bridge) Backlog(ctx context.Context) (pending, undelivered int64, err error) {
	groups, err := b.log.rdb.XInfoGroups(ctx, b.cfg.Stream).Result()
	if err != nil {
		return 0, 0, err
	}
	for _, g := range groups {
		if g.Name == b.cfg.Group {
			return g.Pending, g.Lag, nil
		}
	}
	return 0, 0, errors.New("bridge: no consumer group yet")
}

// NewBridge returns a bridge that appends to l.
func NewBridge(l *Log, cfg BridgeConfig) (*Bridge, error) {
	if cfg.Stream == "" || cfg.Consumer == "" || cfg.Validate == nil {
		return nil, errors.New("bridge: Stream, Consumer and Validate are required")
	}
	if cfg.Group == "" {
		cfg.Group = "realtime"
	}
	if cfg.DeadLetter == "" {
		cfg.DeadLetter = cfg.Stream + ":dead"
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With("bus", cfg.Stream, "consumer", cfg.Consumer)
	return &Bridge{log: l, cfg: cfg, key: l.BridgeLeaseKey(cfg.Stream)}, nil
}

// BridgeLeaseKey returns the key of the bridge lease for bus, for
// operators and tests.
func (l *Log) BridgeLeaseKey(bus string) string { return l.prefix + ":bridge:{" + bus + "}:lease" }

// renewScript extends the lease if this consumer still holds it.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript drops the lease if this consumer holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Run bridges until ctx is done. It returns nil then; store failures are
// logged and retried with backoff, never fatal.
func (b *Bridge) Run(ctx context.Context) error {
	rdb, cfg := b.log.rdb, b.cfg
	// The back-off stays under a quarter of the lease, so that a store
	// hiccup does not let the lease lapse and another node take over.
	backoff := min(100*time.Millisecond, cfg.Lease/4)
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	leader, grouped := false, false
	// "$" the first time: the group starts with the events published from
	// now on. After the group vanished under a running bridge (Redis
	// flushed, or restarted without persistence), "0": the stream then holds
	// what was added since the loss, which must not be skipped (repeats of
	// what was bridged before are dropped by upstream id).
	start := "$"
	defer func() {
		if leader {
			// Hand over at once rather than after the lease runs out.
			releaseScript.Run(context.Background(), rdb, []string{b.key}, cfg.Consumer)
		}
	}()
	for ctx.Err() == nil {
		if !grouped {
			err := rdb.XGroupCreateMkStream(ctx, cfg.Stream, cfg.Group, start).Err()
			if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
				if ctx.Err() == nil {
					cfg.Logger.Warn("bridge: cannot create consumer group, retrying", "err", err)
				}
				if !wait(backoff) {
					return nil
				}
				backoff = min(backoff*2, 5*time.Second, cfg.Lease/4)
				continue
			}
			grouped = true
			if start == "0" {
				cfg.Logger.Warn("bridge: consumer group recreated from the start of the stream", "group", cfg.Group)
			}
		}
		if !leader {
			ok, err := rdb.SetNX(ctx, b.key, cfg.Consumer, cfg.Lease).Result()
			if err != nil || !ok {
				if !wait(cfg.Lease / 4) {
					return nil
				}
				continue
			}
			leader = true
			cfg.Logger.Info("bridge lease taken: this node bridges the bus")
			// Whatever another node left pending has been idle for at
			// least a lease: it is dead or cut off. Take it over first.
			if err := b.claim(ctx); err != nil {
				cfg.Logger.Warn("bridge: claim failed", "err", err)
			}
		}
		n, err := renewScript.Run(ctx, rdb, []string{b.key}, cfg.Consumer, cfg.Lease.Milliseconds()).Int()
		if err != nil || n == 0 {
			if ctx.Err() != nil {
				return nil
			}
			leader = false
			cfg.Logger.Warn("bridge lease lost", "err", err)
			continue
		}
		if err := b.step(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isNoGroup(err) {
				// Redis lost the group (and likely the stream with it):
				// recreate it and read what came since.
				cfg.Logger.Warn("bridge: consumer group lost, Redis lost data; recreating it", "err", err)
				grouped, start = false, "0"
				continue
			}
			cfg.Logger.Warn("bridge: step failed, retrying", "err", err)
			if !wait(backoff) {
				return nil
			}
			backoff = min(backoff*2, 5*time.Second, cfg.Lease/4)
			continue
		}
		backoff = min(100*time.Millisecond, cfg.Lease/4)
	}
	return nil
}

// claim moves to this consumer every entry pending for another one for at
// least a lease.
func (b *Bridge) claim(ctx context.Context) error {
	start := "0-0"
	for {
		msgs, next, err := b.log.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: b.cfg.Stream, Group: b.cfg.Group, Consumer: b.cfg.Consumer,
			MinIdle: b.cfg.Lease, Start: start, Count: int64(b.cfg.Batch),
		}).Result()
		if err != nil {
			return fmt.Errorf("xautoclaim %s: %w", b.cfg.Stream, err)
		}
		if len(msgs) > 0 {
			b.cfg.Logger.Info("bridge: claimed pending entries of a departed node", "count", len(msgs))
		}
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
}

// step processes one batch: this consumer's pending entries if it has any
// (in order, before anything new), else new entries.
func (b *Bridge) step(ctx context.Context) error {
	rdb, cfg := b.log.rdb, b.cfg
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{cfg.Stream, "0"}, Count: int64(cfg.Batch), Block: -1,
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read pending: %w", err)
	}
	msgs := messages(res)
	if len(msgs) == 0 {
		// Short block: the lease must be renewed well within its TTL.
		res, err = rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: cfg.Group, Consumer: cfg.Consumer, Streams: []string{cfg.Stream, ">"}, Count: int64(cfg.Batch), Block: min(cfg.Lease/4, 2*time.Second),
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read new: %w", err)
		}
		msgs = messages(res)
	}
	if len(msgs) == 0 {
		return nil
	}
	done, failure := b.bridgeAll(ctx, msgs)
	if len(done) > 0 {
		if err := rdb.XAck(ctx, cfg.Stream, cfg.Group, done...).Err(); err != nil {
			return fmt.Errorf("xack: %w", err)
		}
	}
	return failure
}

// isNoGroup reports Redis's answer to a read of a group that does not
// exist (any more).
func isNoGroup(err error) bool {
	return err != nil && strings.Contains(err.Error(), "NOGROUP")
}

func messages(res []redis.XStream) []redis.XMessage {
	if len(res) == 0 {
		return nil
	}
	return res[0].Messages
}

// bridgeAll moves msgs into their workspaces' logs, or into the
// dead-letter stream, and returns the ids of those done. What the log can
// take goes in one AppendBatch per run of up to stream.MaxBatch entries
// of one workspace (the entries of a workspace keep their order; those of
// different workspaces have none to keep), each entry with its own once
// key, so a batch is safe to repeat after a failure. It stops at the
// first failure of the store, so that order holds: that workspace's
// entries stay pending and come first next time.
func (b *Bridge) bridgeAll(ctx context.Context, msgs []redis.XMessage) ([]string, error) {
	done := make([]string, 0, len(msgs))
	type entry struct {
		m  redis.XMessage
		ev translated
	}
	var (
		order  []string // workspaces in order of first appearance
		groups = map[string][]entry{}
	)
	for _, m := range msgs {
		ev, reason := b.translate(m)
		if reason != "" {
			if err := b.deadLetter(ctx, m, reason); err != nil {
				return done, err
			}
			done = append(done, m.ID)
			continue
		}
		ws := ev.WorkspaceID
		if _, ok := groups[ws]; !ok {
			order = append(order, ws)
		}
		groups[ws] = append(groups[ws], entry{m: m, ev: ev})
	}
	for _, ws := range order {
		g := groups[ws]
		for len(g) > 0 {
			run := g[:min(len(g), stream.MaxBatch)]
			g = g[len(run):]
			items := make([]stream.BatchItem, len(run))
			for i, e := range run {
				items[i] = stream.BatchItem{Event: e.ev.Event, Once: &stream.Once{Key: "bus:" + e.ev.upstreamID, TTL: b.cfg.DedupeTTL}}
			}
			events, replayed, err := b.log.AppendBatch(ctx, items)
			if err != nil {
				if errors.Is(err, stream.ErrUnavailable) || ctx.Err() != nil {
					return done, err
				}
				// Something in the run the log refuses: one by one, so
				// that only that entry is dead-lettered.
				for _, e := range run {
					if err := b.bridge(ctx, e.m); err != nil {
						return done, err
					}
					done = append(done, e.m.ID)
				}
				continue
			}
			for i, e := range run {
				b.noteBridged(e.m, events[i], replayed[i])
				done = append(done, e.m.ID)
			}
		}
	}
	return done, nil
}

// noteBridged counts an entry bridged and logs it.
func (b *Bridge) noteBridged(m redis.XMessage, e *stream.Event, replayed bool) {
	b.bridged.Add(1)
	if ms, _, ok := strings.Cut(m.ID, "-"); ok {
		if t, err := strconv.ParseInt(ms, 10, 64); err == nil {
			b.lagMillis.Store(max(0, time.Now().UnixMilli()-t))
		}
	}
	b.cfg.Logger.Debug("bridged", "entry", m.ID, "event_id", e.ID.String(), "workspace", e.WorkspaceID,
		"type", e.Type, "correlation_id", e.CorrelationID, "repeat", replayed)
}

// bridge moves one entry into its workspace log, or into the dead-letter
// stream. It errs only when the store fails.
func (b *Bridge) bridge(ctx context.Context, m redis.XMessage) error {
	ev, reason := b.translate(m)
	if reason != "" {
		return b.deadLetter(ctx, m, reason)
	}
	e, replayed, err := b.log.AppendOnce(ctx, ev.Event, stream.Once{Key: "bus:" + ev.upstreamID, TTL: b.cfg.DedupeTTL})
	if err != nil {
		if errors.Is(err, stream.ErrUnavailable) || ctx.Err() != nil {
			return err // the store: retried, in order
		}
		// Inherent to the entry: retrying cannot help, and the bus must
		// move on.
		return b.deadLetter(ctx, m, "cannot append: "+err.Error())
	}
	b.noteBridged(m, e, replayed)
	return nil
}

func (b *Bridge) dedupeTTL() time.Duration {
	if b.cfg.DedupeTTL > 0 {
		return b.cfg.DedupeTTL
	}
	return stream.DefaultOnceTTL
}

type translated struct {
	*stream.Event
	upstreamID string
}

// mappedPrefixes are the BaseEvent types the bridge carries.
var mappedPrefixes = []string{"approval.", "agent.", "notification.", "chat."}

// maxBusData bounds an entry's data as the HTTP API bounds a publish body
// (64 KiB): what the log, its readers and their clients size for.
const maxBusData = 64 << 10

// translate maps an entry to an event, or says why it cannot.
func (b *Bridge) translate(m redis.XMessage) (translated, string) {
	be, err := parseBaseEvent(m.Values)
	if err != nil {
		return translated{}, "malformed entry: " + err.Error()
	}
	mapped := false
	for _, p := range mappedPrefixes {
		if strings.HasPrefix(be.Type, p) {
			mapped = true
		}
	}
	switch {
	case !mapped:
		return translated{}, fmt.Sprintf("unmapped event type %q", be.Type)
	case !stream.ValidType(be.Type):
		return translated{}, fmt.Sprintf("malformed event type %q", be.Type)
	case !stream.ValidWorkspace(be.TenantID):
		return translated{}, fmt.Sprintf("tenantId %q is not a valid workspace id", be.TenantID)
	}
	if len(be.Data) > maxBusData {
		return translated{}, fmt.Sprintf("data of %d bytes, over %d", len(be.Data), maxBusData)
	}
	if err := b.cfg.Validate(be.Type, be.Data); err != nil {
		return translated{}, "schema: " + err.Error()
	}
	upstream := be.ID
	if upstream == "" {
		upstream = "entry:" + m.ID
	}
	e := &stream.Event{
		Type: be.Type, WorkspaceID: be.TenantID, CorrelationID: be.CorrelationID, Source: be.Source,
		Data: be.Data, Timestamp: time.Now().UTC(),
	}
	if ts, err := time.Parse(time.RFC3339Nano, be.Timestamp); err == nil {
		if y := ts.UTC().Year(); y < 1 || y > 9999 {
			// 9999-12-31T23:59:59-01:00 is year 10000 in UTC, which no
			// JSON timestamp can hold.
			return translated{}, fmt.Sprintf("timestamp %q is outside years 1-9999 in UTC", be.Timestamp)
		}
		e.Timestamp = ts.UTC()
	}
	if e.CorrelationID == "" {
		e.CorrelationID = upstream
	}
	if strings.HasPrefix(be.Type, "notification.") {
		e.TargetUserID = be.UserID
	}
	if len(e.CorrelationID) > 128 || len(e.Source) > 128 || len(e.TargetUserID) > 128 {
		return translated{}, "correlationId, source or userId longer than 128 bytes"
	}
	if _, err := e.Body(); err != nil {
		return translated{}, "cannot encode: " + err.Error()
	}
	return translated{Event: e, upstreamID: upstream}, ""
}

// parseBaseEvent reads a BaseEvent from an entry: either one field holding
// the BaseEvent as JSON (any name, "event" by convention), or one field per
// BaseEvent member with data as a JSON string.
func parseBaseEvent(v map[string]any) (BaseEvent, error) {
	var be BaseEvent
	if len(v) == 1 {
		for _, x := range v {
			s, _ := x.(string)
			if err := json.Unmarshal([]byte(s), &be); err != nil {
				return be, fmt.Errorf("the single field is not a BaseEvent: %w", err)
			}
		}
	} else {
		str := func(k string) string { s, _ := v[k].(string); return s }
		be = BaseEvent{
			ID: str("id"), Type: str("type"), Source: str("source"), Timestamp: str("timestamp"),
			CorrelationID: str("correlationId"), TenantID: str("tenantId"), UserID: str("userId"),
			Data: json.RawMessage(str("data")),
		}
	}
	if be.Type == "" {
		return be, errors.New("no type")
	}
	if len(be.Data) == 0 || !json.Valid(be.Data) {
		return be, errors.New("data is missing or not JSON")
	}
	return be, nil
}

// deadLetterScript adds an entry to the dead-letter stream once per bus
// entry: a bridge that crashed after dead-lettering but before its ack
// must not dead-letter it again. The marker follows the copy: an XADD that
// fails leaves no marker, so the retry dead-letters the entry rather than
// acknowledging it unseen. KEYS dead-letter stream, seen marker (in the
// stream's slot); ARGV ttl ms, then a bounded number of field/value pairs.
var deadLetterScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', 100000, '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
return 1
`)

// maxDeadFields is how many of an entry's fields a dead letter copies one
// by one; an entry with more is copied as one JSON object (fields), since
// a script's arguments are bounded (5,000 fields failed to unpack).
const maxDeadFields = 64

// deadLetter records an entry the bridge cannot carry, with the reason.
func (b *Bridge) deadLetter(ctx context.Context, m redis.XMessage, reason string) error {
	values := []any{b.dedupeTTL().Milliseconds(), "reason", reason, "entry", m.ID, "bus", b.cfg.Stream}
	if len(m.Values) <= maxDeadFields {
		for k, v := range m.Values {
			values = append(values, "field:"+k, v)
		}
	} else {
		all, err := json.Marshal(m.Values)
		if err != nil {
			return fmt.Errorf("dead-letter %s: encode fields: %w", m.ID, err)
		}
		values = append(values, "fields", string(all))
	}
	// "{stream}..." hashes like the stream's own name: one slot.
	seen := "{" + b.cfg.DeadLetter + "}:seen:" + m.ID
	if err := deadLetterScript.Run(ctx, b.log.rdb, []string{b.cfg.DeadLetter, seen}, values...).Err(); err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.ID, err)
	}
	b.deadLettered.Add(1)
	b.cfg.Logger.Warn("bus entry dead-lettered", "entry", m.ID, "reason", reason, "dead_letter", b.cfg.DeadLetter)
	return nil
}
