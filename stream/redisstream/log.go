package redisstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream"
)

var (
	_ stream.Log           = (*Log)(nil)
	_ stream.PresenceStore = (*Log)(nil)
	_ stream.RateLimiter   = (*Log)(nil)
)

// Config configures a Log. Zero values are defaults.
type Config struct {
	// URL is a redis:// or rediss:// URL (see redis.ParseURL). With
	// Cluster, it names one or more seed nodes:
	// redis://host1:6379?addr=host2:6379&addr=host3:6379 (redis.ParseClusterURL).
	URL string
	// Cluster makes URL a Redis Cluster. Every key of a workspace carries
	// its {workspace} hash tag, so each script runs on one node.
	Cluster bool
	// Prefix starts every key and the notification channel ("rt").
	Prefix string
	// Retention is the approximate number of events kept per workspace
	// (stream.DefaultRetention); Redis keeps at least that many.
	Retention int
	// Logger receives the notification reader's warnings.
	Logger *slog.Logger
	// MaxWorkspaces caps how many workspaces this node follows live at
	// once (0: no cap); see stream.ErrTooManyWorkspaces.
	MaxWorkspaces int
	// Hooks are added to the Redis client (metrics).
	Hooks []redis.Hook
}

// Log is a stream.Log on Redis Streams.
type Log struct {
	rdb       redis.UniversalClient
	prefix    string
	channel   string
	ephemeral string // channel of broadcast (unstored) events
	retention string
	hub       *stream.Hub
	logger    *slog.Logger
	commit    *groupCommit // Append's round trips

	feedUp    atomic.Bool   // the notification subscription is live
	subbed    chan struct{} // closed once it first is
	subbedOne sync.Once
	cancel    context.CancelFunc
	ps        *redis.PubSub
	wg        sync.WaitGroup
	closed    atomic.Bool
}

// New connects to Redis, checks that it answers, and starts the
// notification reader. Close stops it.
func New(ctx context.Context, cfg Config) (*Log, error) {
	var (
		rdb  redis.UniversalClient
		addr string
	)
	// A retried append whose reply was lost would append twice: retries
	// are the caller's decision.
	if cfg.Cluster {
		opt, err := redis.ParseClusterURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("parse redis cluster url: %w", err)
		}
		opt.MaxRetries = -1
		opt.ContextTimeoutEnabled = true
		poolDefaults(&opt.PoolSize, &opt.PoolTimeout, cfg.URL)
		bufferDefaults(&opt.ReadBufferSize, &opt.WriteBufferSize)
		protocolDefault(&opt.Protocol, cfg.URL)
		rdb, addr = redis.NewClusterClient(opt), strings.Join(opt.Addrs, ",")
	} else {
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("parse redis url: %w", err)
		}
		opt.MaxRetries = -1
		// A caller's deadline bounds its command (readiness answers
		// within its 2 s during a Redis stall, not after go-redis's own
		// timeouts); a context without one keeps go-redis's timeouts.
		opt.ContextTimeoutEnabled = true
		poolDefaults(&opt.PoolSize, &opt.PoolTimeout, cfg.URL)
		bufferDefaults(&opt.ReadBufferSize, &opt.WriteBufferSize)
		protocolDefault(&opt.Protocol, cfg.URL)
		// Our few pipelines (presence listings) need no pool of their own
		// with 128 KiB buffers each.
		opt.PipelinePoolSize = -1
		rdb, addr = redis.NewClient(opt), opt.Addr
	}
	for _, h := range cfg.Hooks {
		if h != nil {
			rdb.AddHook(h)
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "rt"
	}
	if cfg.Retention <= 0 {
		cfg.Retention = stream.DefaultRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		rdb: rdb, prefix: cfg.Prefix, channel: cfg.Prefix + ":events", ephemeral: cfg.Prefix + ":ephemeral",
		retention: strconv.Itoa(cfg.Retention), hub: stream.NewHub(stream.HubConfig{MaxWorkspaces: cfg.MaxWorkspaces, Detached: true, Retention: cfg.Retention, OrderedFeed: !cfg.Cluster}), logger: cfg.Logger,
		subbed: make(chan struct{}),
	}
	l.commit = newGroupCommit(rdb, appendScript, maxGroupCommit)
	if err := l.rdb.Ping(ctx).Err(); err != nil {
		l.rdb.Close()
		return nil, fmt.Errorf("ping redis at %s: %w", addr, err)
	}
	feedCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.ps = l.rdb.Subscribe(feedCtx)
	if err := l.ps.Subscribe(ctx, l.channel, l.ephemeral); err != nil {
		cancel()
		l.ps.Close()
		l.rdb.Close()
		return nil, fmt.Errorf("subscribe %s: %w", l.channel, err)
	}
	l.wg.Add(1)
	// The feed reader exits when Close cancels feedCtx and closes l.ps.
	go func() {
		defer l.wg.Done()
		l.feed(feedCtx)
	}()
	// Hand the log out only once notifications flow: on a cluster the
	// SUBSCRIBE and the first appends go to different nodes, and anything
	// published before the subscription took would never reach this node.
	select {
	case <-l.subbed:
		return l, nil
	case <-ctx.Done():
		l.Close()
		return nil, fmt.Errorf("subscribe %s: %w", l.channel, ctx.Err())
	}
}

// poolDefaults sizes the request pool for reconnect storms, unless the URL
// says otherwise (pool_size=, pool_timeout=): go-redis's default of 10 per
// CPU and a 4s wait turn thousands of simultaneous resumes into timeouts,
// while Redis itself serves them in a fraction of that.
func poolDefaults(size *int, timeout *time.Duration, url string) {
	if !strings.Contains(url, "pool_size=") {
		*size = max(*size, 128)
	}
	if !strings.Contains(url, "pool_timeout=") {
		*timeout = max(*timeout, 30*time.Second)
	}
}

// protocolDefault speaks RESP2 unless the URL asks otherwise: we use no
// RESP3 feature, and on RESP3 go-redis peeks the socket for push frames
// before commands (a read(2) each), which showed in the profile of a
// publishing node.
func protocolDefault(protocol *int, url string) {
	if !strings.Contains(url, "protocol=") {
		*protocol = 2
	}
}

// bufferDefaults shrinks go-redis's 32 KiB per-connection buffers: our
// commands and most replies are a few hundred bytes, a catch-up page is
// read through the buffer in pieces, and at a pool of 128 connections the
// defaults alone cost 8 MiB, which a node with a thousand streams feels.
func bufferDefaults(read, write *int) {
	if *read == 0 {
		*read = 8 << 10
	}
	if *write == 0 {
		*write = 4 << 10
	}
}

// Prefix returns the key prefix.
func (l *Log) Prefix() string { return l.prefix }

func (l *Log) streamKey(ws string) string { return l.prefix + ":{" + ws + "}:s" }
func (l *Log) metaKey(ws string) string   { return l.prefix + ":{" + ws + "}:m" }

// ensureEpoch is the prologue of every script: it returns the workspace's
// epoch, starting a new one when the history's witness is gone.
const ensureEpoch = `
local m = redis.call('HMGET', KEYS[2], 'e', 's')
local e = m[1]
if e and tonumber(m[2] or '0') > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  e = false
end
if not e then
  local t = redis.call('TIME')
  e = t[1] .. string.sub('000000' .. t[2], -6)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', e, 's', 0)
end
`

// appendScript: KEYS stream, meta; ARGV body, maxlen, channel. The first
// append makes the meta hash permanent (a read may have created it with an
// expiry; see readScript).
var appendScript = redis.NewScript(ensureEpoch + `
local seq = redis.call('HINCRBY', KEYS[2], 's', 1)
if seq == 1 then redis.call('PERSIST', KEYS[2]) end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'b', ARGV[1])
redis.call('PUBLISH', ARGV[3], e .. ' ' .. seq .. ' ' .. ARGV[1])
return {e, seq}
`)

// appendOnceScript: KEYS stream, meta, once; ARGV body, maxlen, channel,
// fingerprint, ttl ms. The once key records "fingerprint\nepoch\nseq\nbody"
// of the first append, in the workspace's slot.
var appendOnceScript = redis.NewScript(ensureEpoch + `
local rec = redis.call('GET', KEYS[3])
if rec then return {'replay', rec} end
local seq = redis.call('HINCRBY', KEYS[2], 's', 1)
if seq == 1 then redis.call('PERSIST', KEYS[2]) end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'b', ARGV[1])
redis.call('PUBLISH', ARGV[3], e .. ' ' .. seq .. ' ' .. ARGV[1])
redis.call('SET', KEYS[3], ARGV[4] .. '\n' .. e .. '\n' .. seq .. '\n' .. ARGV[1], 'PX', ARGV[5])
return {e, seq}
`)

// appendBatchScript: KEYS stream, meta, then the batch's distinct once
// keys; ARGV maxlen, channel, n, then for each item body, index of its
// once key in KEYS (0: none), fingerprint, ttl ms. Replies {'conflict', i}
// (nothing appended) or {epoch, r1, …, rn}: each r the item's seq, or
// the once record it replays. What it appended goes out as one
// notification (see decodeNotification).
var appendBatchScript = redis.NewScript(ensureEpoch + `
local n = tonumber(ARGV[3])
for i = 1, n do
  local k, fp = tonumber(ARGV[1 + i * 4]), ARGV[2 + i * 4]
  if k > 0 and fp ~= '' then
    local rec = redis.call('GET', KEYS[k])
    if rec then
      local was = string.match(rec, '^([^\n]*)\n')
      if was ~= '' and was ~= fp then return {'conflict', i} end
    end
  end
end
local s0 = tonumber(redis.call('HGET', KEYS[2], 's'))
local seq = s0
local out = {e}
local made = {}
local bodies = {}
for i = 1, n do
  local body, k, fp, ttl = ARGV[i * 4], tonumber(ARGV[1 + i * 4]), ARGV[2 + i * 4], ARGV[3 + i * 4]
  local rec = false
  if k > 0 then rec = made[k] or redis.call('GET', KEYS[k]) end
  if rec then
    out[i + 1] = rec
  else
    seq = seq + 1
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'b', body)
    bodies[#bodies + 1] = body
    out[i + 1] = seq
    if k > 0 then
      made[k] = fp .. '\n' .. e .. '\n' .. seq .. '\n' .. body
      redis.call('SET', KEYS[k], made[k], 'PX', ttl)
    end
  end
end
if #bodies == 1 then
  redis.call('PUBLISH', ARGV[2], e .. ' ' .. seq .. ' ' .. bodies[1])
elseif #bodies > 1 then
  redis.call('PUBLISH', ARGV[2], e .. ' ' .. (s0 + 1) .. '*' .. #bodies .. ' ' .. table.concat(bodies, '\n'))
end
if seq > s0 then
  redis.call('HSET', KEYS[2], 's', seq)
  if s0 == 0 then redis.call('PERSIST', KEYS[2]) end
end
return out
`)

// readScript: KEYS stream, meta; ARGV cursor epoch ("" for the zero
// cursor), cursor seq, limit (0: head only), idle ms, byte budget. Returns
// {epoch, head seq, first retained seq or head+1, entries}: at most limit
// entries, and none after the one whose bodies reach the budget, so a page
// of large events is not limit times their size in the reply. Whether the
// cursor continues is decided in Go by stream.Continuous; the script only skips
// the range read when it is certainly pointless. A workspace nothing was
// ever appended to keeps its meta hash (its epoch, so that a poller's
// cursor stays valid) only for idle ms after its last read: reads of
// unused workspaces leave nothing behind for good.
var readScript = redis.NewScript(ensureEpoch + `
local s = tonumber(redis.call('HGET', KEYS[2], 's'))
if s == 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
local limit = tonumber(ARGV[3])
if limit == 0 then return {e, s, 0, {}} end
local first = s + 1
local f = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #f > 0 then first = tonumber(string.match(f[1][1], '^%d+')) end
local entries = {}
if ARGV[1] == '' then
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', limit)
elseif ARGV[1] == e and tonumber(ARGV[2]) <= s then
  entries = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[2]) + 1) .. '-0', '+', 'COUNT', limit)
end
local budget, used = tonumber(ARGV[5]), 0
for i = 1, #entries do
  used = used + #entries[i][2][2]
  if used >= budget then
    for j = #entries, i + 1, -1 do entries[j] = nil end
    break
  end
end
return {e, s, first, entries}
`)

func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, stream.ErrUnavailable, err)
}

// Append implements stream.Log.
func (l *Log) Append(ctx context.Context, e *stream.Event) (*stream.Event, error) {
	if l.closed.Load() {
		return nil, stream.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	body, err := e.Body()
	if err != nil {
		return nil, err
	}
	ws := e.WorkspaceID
	res, err := l.commit.run(ctx, []string{l.streamKey(ws), l.metaKey(ws)}, body, l.retention, l.channel)
	if err != nil {
		return nil, unavailable("append to "+ws, err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("append to %s: unexpected reply %v", ws, res)
	}
	epoch, err1 := parseEpoch(res[0])
	seq, ok := res[1].(int64)
	if err1 != nil || !ok || seq <= 0 {
		return nil, fmt.Errorf("append to %s: unexpected reply %v", ws, res)
	}
	e.ID = stream.ID{Epoch: epoch, Seq: uint64(seq)}
	return e, nil
}

// Broadcast implements stream.Log: one PUBLISH, which every node's feed
// hands to its hub.
func (l *Log) Broadcast(ctx context.Context, e *stream.Event) error {
	if l.closed.Load() {
		return stream.ErrClosed
	}
	e.ID = stream.ID{}
	body, err := e.Body()
	if err != nil {
		return err
	}
	if err := l.rdb.Publish(ctx, l.ephemeral, body).Err(); err != nil {
		return unavailable("broadcast to "+e.WorkspaceID, err)
	}
	return nil
}

// AppendBatch implements stream.Log: one script call.
func (l *Log) AppendBatch(ctx context.Context, items []stream.BatchItem) ([]*stream.Event, []bool, error) {
	if l.closed.Load() {
		return nil, nil, stream.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := stream.CheckBatch(items); err != nil {
		return nil, nil, err
	}
	ws := items[0].Event.WorkspaceID
	keys := []string{l.streamKey(ws), l.metaKey(ws)}
	keyIndex := map[string]int{}
	args := make([]any, 0, 3+4*len(items))
	args = append(args, l.retention, l.channel, len(items))
	for _, it := range items {
		body, _ := it.Event.Body() // CheckBatch encoded it
		k, fp, ttl := 0, "", int64(0)
		if it.Once != nil {
			name := l.onceKey(ws, it.Once.Key)
			if k = keyIndex[name]; k == 0 {
				keys = append(keys, name)
				k = len(keys)
				keyIndex[name] = k
			}
			fp, ttl = it.Once.Fingerprint, it.Once.TTL.Milliseconds()
			if it.Once.TTL <= 0 {
				ttl = stream.DefaultOnceTTL.Milliseconds()
			}
		}
		args = append(args, body, k, fp, ttl)
	}
	res, err := appendBatchScript.Run(ctx, l.rdb, keys, args...).Slice()
	if err != nil {
		return nil, nil, unavailable("append batch to "+ws, err)
	}
	if len(res) == 2 && res[0] == "conflict" {
		i, _ := res[1].(int64)
		return nil, nil, &stream.BatchError{Index: int(i) - 1, Err: stream.ErrIdempotencyConflict}
	}
	if len(res) != len(items)+1 {
		return nil, nil, fmt.Errorf("append batch to %s: unexpected reply of %d values", ws, len(res))
	}
	epoch, err := parseEpoch(res[0])
	if err != nil {
		return nil, nil, fmt.Errorf("append batch to %s: %w", ws, err)
	}
	events := make([]*stream.Event, len(items))
	replayed := make([]bool, len(items))
	for i, r := range res[1:] {
		switch v := r.(type) {
		case int64:
			items[i].Event.ID = stream.ID{Epoch: epoch, Seq: uint64(v)}
			events[i] = items[i].Event
		case string:
			_, prev, err := decodeOnceRecord(v)
			if err != nil {
				return nil, nil, fmt.Errorf("append batch to %s: %w", ws, err)
			}
			events[i], replayed[i] = prev, true
		default:
			return nil, nil, fmt.Errorf("append batch to %s: unexpected reply %v", ws, r)
		}
	}
	return events, replayed, nil
}

// onceKey is the Redis key of a workspace's once record.
func (l *Log) onceKey(ws, key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.prefix + ":{" + ws + "}:o:" + hex.EncodeToString(sum[:16])
}

// decodeOnceRecord reads "fingerprint\nepoch\nseq\nbody". The
// fingerprint comes back whenever the record has its four parts, even if
// the rest does not parse.
func decodeOnceRecord(rec string) (fingerprint string, e *stream.Event, err error) {
	parts := strings.SplitN(rec, "\n", 4)
	if len(parts) != 4 {
		return "", nil, errors.New("bad once record")
	}
	epoch, err1 := strconv.ParseUint(parts[1], 10, 64)
	seq, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return parts[0], nil, errors.New("bad once record")
	}
	e, err = stream.DecodeEvent(stream.ID{Epoch: epoch, Seq: seq}, []byte(parts[3]))
	return parts[0], e, err
}

// AppendOnce implements stream.Log.
func (l *Log) AppendOnce(ctx context.Context, e *stream.Event, once stream.Once) (*stream.Event, bool, error) {
	if l.closed.Load() {
		return nil, false, stream.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	body, err := e.Body()
	if err != nil {
		return nil, false, err
	}
	if once.TTL <= 0 {
		once.TTL = stream.DefaultOnceTTL
	}
	ws := e.WorkspaceID
	onceKey := l.onceKey(ws, once.Key)
	res, err := appendOnceScript.Run(ctx, l.rdb, []string{l.streamKey(ws), l.metaKey(ws), onceKey},
		body, l.retention, l.channel, once.Fingerprint, once.TTL.Milliseconds()).Slice()
	if err != nil {
		return nil, false, unavailable("append once to "+ws, err)
	}
	if len(res) == 2 && res[0] == "replay" {
		rec, _ := res[1].(string)
		fp, prev, err := decodeOnceRecord(rec)
		if fp != "" && once.Fingerprint != "" && fp != once.Fingerprint {
			return nil, false, stream.ErrIdempotencyConflict
		}
		if err != nil {
			return nil, false, fmt.Errorf("append once to %s: %w", ws, err)
		}
		return prev, true, nil
	}
	if len(res) != 2 {
		return nil, false, fmt.Errorf("append once to %s: unexpected reply %v", ws, res)
	}
	epoch, err1 := parseEpoch(res[0])
	seq, ok := res[1].(int64)
	if err1 != nil || !ok || seq <= 0 {
		return nil, false, fmt.Errorf("append once to %s: unexpected reply %v", ws, res)
	}
	e.ID = stream.ID{Epoch: epoch, Seq: uint64(seq)}
	return e, false, nil
}

// allowScript is a token bucket in a hash {t: tokens, at: ms}, on the
// Redis clock so that every node shares one bucket. KEYS bucket; ARGV rate
// per second, burst. Returns {1, 0} or {0, ms until a token}.
var allowScript = redis.NewScript(`
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local need = math.min(math.max(tonumber(ARGV[3]), 1), burst)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local st = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(st[1]), tonumber(st[2])
if not tokens then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local ok, wait = 0, 0
if tokens >= need then
  tokens = tokens - need
  ok = 1
else
  wait = math.ceil((need - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {ok, wait}
`)

// Allow takes n tokens from the bucket named key, shared by every node
// (see stream.RateLimiter).
func (l *Log) Allow(ctx context.Context, key string, r stream.Rate, n int) (bool, time.Duration, error) {
	res, err := allowScript.Run(ctx, l.rdb, []string{l.prefix + ":{" + key + "}:rl"}, r.Per, r.Burst, n).Int64Slice()
	if err != nil {
		return false, 0, unavailable("rate limit "+key, err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("rate limit %s: unexpected reply %v", key, res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}

func parseEpoch(v any) (uint64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("epoch %v is not a string", v)
	}
	e, err := strconv.ParseUint(s, 10, 64)
	if err != nil || e == 0 {
		return 0, fmt.Errorf("bad epoch %q", s)
	}
	return e, nil
}

// read runs readScript and decodes what it returns.
func (l *Log) read(ctx context.Context, ws string, after stream.ID, limit int) (epoch, head, first uint64, events []*stream.Event, err error) {
	cursorEpoch := ""
	if !after.IsZero() {
		cursorEpoch = strconv.FormatUint(after.Epoch, 10)
	}
	res, err := readScript.Run(ctx, l.rdb, []string{l.streamKey(ws), l.metaKey(ws)},
		cursorEpoch, strconv.FormatUint(after.Seq, 10), limit, unusedTTL.Milliseconds(), maxReadBytes).Slice()
	if err != nil {
		return 0, 0, 0, nil, unavailable("read "+ws, err)
	}
	bad := func() error { return fmt.Errorf("read %s: unexpected reply %.200v", ws, res) }
	if len(res) != 4 {
		return 0, 0, 0, nil, bad()
	}
	epoch, err = parseEpoch(res[0])
	h, ok1 := res[1].(int64)
	f, ok2 := res[2].(int64)
	entries, ok3 := res[3].([]any)
	if err != nil || !ok1 || !ok2 || !ok3 || h < 0 || f < 0 {
		return 0, 0, 0, nil, bad()
	}
	events = make([]*stream.Event, 0, len(entries))
	for _, x := range entries {
		ent, ok := x.([]any)
		if !ok || len(ent) != 2 {
			return 0, 0, 0, nil, bad()
		}
		rid, _ := ent[0].(string)
		fields, _ := ent[1].([]any)
		seqStr, _, _ := strings.Cut(rid, "-")
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		if err != nil || len(fields) != 2 {
			return 0, 0, 0, nil, bad()
		}
		body, _ := fields[1].(string)
		e, err := stream.DecodeEvent(stream.ID{Epoch: epoch, Seq: seq}, []byte(body))
		if err != nil {
			return 0, 0, 0, nil, fmt.Errorf("read %s: %w", ws, err)
		}
		events = append(events, e)
	}
	return epoch, uint64(h), uint64(f), events, nil
}

// Read implements stream.Log.
func (l *Log) Read(ctx context.Context, workspace string, after stream.ID, limit int) (stream.Page, error) {
	if l.closed.Load() {
		return stream.Page{}, stream.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return stream.Page{}, err
	}
	if limit <= 0 {
		limit = stream.DefaultReadLimit
	}
	epoch, head, first, events, err := l.read(ctx, workspace, after, limit)
	if err != nil {
		return stream.Page{}, err
	}
	headID := stream.ID{Epoch: epoch, Seq: head}
	if !stream.Continuous(after, epoch, head, first) {
		return stream.Page{}, &stream.ExpiredError{Cursor: after, Head: headID}
	}
	return stream.Page{Events: events, Head: headID}, nil
}

// Head implements stream.Log.
func (l *Log) Head(ctx context.Context, workspace string) (stream.ID, error) {
	if l.closed.Load() {
		return stream.ID{}, stream.ErrClosed
	}
	epoch, head, _, _, err := l.read(ctx, workspace, stream.ID{}, 0)
	if err != nil {
		return stream.ID{}, err
	}
	return stream.ID{Epoch: epoch, Seq: head}, nil
}

// Subscribe implements stream.Log.
func (l *Log) Subscribe(workspace string, f stream.Filter, size int) *stream.Subscription {
	return l.hub.Subscribe(workspace, f, size)
}

// Ping implements stream.Log: Redis answers and the notification feed is
// subscribed.
func (l *Log) Ping(ctx context.Context) error {
	if l.closed.Load() {
		return stream.ErrClosed
	}
	if err := l.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping redis", err)
	}
	if !l.feedUp.Load() {
		return fmt.Errorf("redis notification feed: %w: not subscribed", stream.ErrUnavailable)
	}
	return nil
}

// Close implements stream.Log.
func (l *Log) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	l.cancel()
	l.ps.Close() // unblocks the feed reader's Receive
	l.wg.Wait()
	l.hub.Close()
	return l.rdb.Close()
}

// maxGroupCommit bounds the appends one round trip carries (groupCommit).
const maxGroupCommit = 128

// maxReadBytes bounds the event bodies of one read's reply (readScript).
const maxReadBytes = 1 << 20

// unusedTTL is how long the meta hash of a workspace that was read but
// never appended to outlives its last read.
const unusedTTL = 24 * time.Hour

// feedPing is how long the feed waits for a message before it pings, so a
// half-open connection is noticed.
const feedPing = 10 * time.Second

// feed reads the notification channel and feeds the hub until ctx is done.
func (l *Log) feed(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		msg, err := l.ps.ReceiveTimeout(ctx, feedPing)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && l.feedUp.Load() {
				// Quiet: make sure the connection is alive; a failed
				// ping shows up as an error on the next receive.
				_ = l.ps.Ping(ctx)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if l.feedUp.Swap(false) {
				l.logger.Warn("redis notification feed lost", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Channel != l.channel {
				continue
			}
			// (Re)subscribed: anything published while we were away was
			// not seen here, so every reader re-reads the log.
			if !l.feedUp.Swap(true) {
				l.logger.Info("redis notification feed subscribed", "channel", m.Channel)
			}
			backoff = 50 * time.Millisecond
			l.hub.Resync()
			// After the resync, so that New's caller subscribes to a hub
			// that is already settled.
			l.subbedOne.Do(func() { close(l.subbed) })
		case *redis.Message:
			if m.Channel == l.ephemeral {
				e, err := stream.DecodeEvent(stream.ID{}, []byte(m.Payload))
				if err != nil {
					l.logger.Error("bad ephemeral event, dropped", "err", err)
					continue
				}
				l.hub.PublishEphemeral(e)
				continue
			}
			if ws, ok := notifiedWorkspace(m.Payload); ok && !l.hub.Following(ws) {
				// Every node hears every append; most are for workspaces
				// no one here follows, and decoding them was a fifth of
				// a publish's CPU on a node with no subscribers.
				continue
			}
			events, err := decodeNotification(m.Payload)
			if err != nil {
				l.logger.Error("bad notification, readers resync", "err", err)
				l.hub.Resync()
				continue
			}
			for _, e := range events {
				l.hub.Publish(e)
			}
		case *redis.Pong:
		}
	}
}

// notifiedWorkspace reads the workspace id of a notification without
// decoding it: Event.Body starts {"type":"…","workspaceId":"…", and both
// are validated to need no escapes. ok is false for anything else, which
// is then decoded in full.
func notifiedWorkspace(p string) (ws string, ok bool) {
	_, p, _ = strings.Cut(p, " ")
	_, p, _ = strings.Cut(p, " ")
	p, ok = strings.CutPrefix(p, `{"type":"`)
	if !ok {
		return "", false
	}
	i := strings.IndexAny(p, `"\`)
	if i < 0 || p[i] != '"' {
		return "", false
	}
	p, ok = strings.CutPrefix(p[i:], `","workspaceId":"`)
	if !ok {
		return "", false
	}
	i = strings.IndexAny(p, `"\`)
	if i < 0 || p[i] != '"' {
		return "", false
	}
	return p[:i], true
}

// decodeNotification parses "<epoch> <seq> <body>", one append, or
// "<epoch> <seq>*<n> <body>\n…" (n bodies, seqs seq to seq+n-1), the
// events a batch appended: one notification for the batch, not one each.
// Bodies are compact JSON, which holds no raw newline.
func decodeNotification(p string) ([]*stream.Event, error) {
	es, rest, ok1 := strings.Cut(p, " ")
	ss, body, ok2 := strings.Cut(rest, " ")
	ss, ns, batch := strings.Cut(ss, "*")
	epoch, err1 := strconv.ParseUint(es, 10, 64)
	seq, err2 := strconv.ParseUint(ss, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("decode notification %.40q", p)
	}
	if !batch {
		e, err := stream.DecodeEvent(stream.ID{Epoch: epoch, Seq: seq}, []byte(body))
		if err != nil {
			return nil, err
		}
		return []*stream.Event{e}, nil
	}
	n, err := strconv.Atoi(ns)
	bodies := strings.Split(body, "\n")
	if err != nil || n < 1 || n > stream.MaxBatch || len(bodies) != n {
		return nil, fmt.Errorf("decode notification %.40q: bad batch", p)
	}
	events := make([]*stream.Event, n)
	for i, b := range bodies {
		e, err := stream.DecodeEvent(stream.ID{Epoch: epoch, Seq: seq + uint64(i)}, []byte(b))
		if err != nil {
			return nil, err
		}
		events[i] = e
	}
	return events, nil
}
