package stream

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

var _ Log = (*Memory)(nil)

// DefaultRetention is the number of events a workspace log keeps when a
// config leaves it zero.
const DefaultRetention = 10000

// DefaultReadLimit is the page size of a Read whose limit is not positive.
const DefaultReadLimit = 100

// MemoryConfig configures Memory.
type MemoryConfig struct {
	// Retention is how many events each workspace keeps; zero means
	// DefaultRetention.
	Retention int
	// MaxWorkspaces caps how many workspaces this node follows live at
	// once (0: no cap); see ErrTooManyWorkspaces.
	MaxWorkspaces int
}

// Memory is the embedded Log: every workspace log lives in this process and
// dies with it. A new Memory starts a new epoch, so cursors from a previous
// process are reported expired rather than silently continued.
type Memory struct {
	retention int
	epoch     uint64
	hub       *Hub

	// mu guards logs, closed and pres. It is never held during a fan-out
	// or across workspaces' work: each workspace's log has a lock of its
	// own, so a workspace writing to a thousand sockets delays no other.
	mu     sync.Mutex
	logs   map[string]*memLog
	closed bool

	lim limiter // publish rate buckets, apart from mu
	tk  tickets // stream tickets, apart from mu

	pres map[string]*presenceState // guarded by mu
}

type memLog struct {
	// mu guards the rest, and orders appends with the hub's fan-out of
	// this workspace: publishing under it keeps hub order equal to log
	// order.
	mu     sync.Mutex
	seq    uint64   // seq of the newest event
	events []*Event // retained events, oldest first
	once   map[string]onceRecord
	// onceOrder lists once's keys in the order they were recorded (with
	// stale entries for keys recorded again), so that the oldest are
	// forgotten first in O(1) per append.
	onceOrder []onceEntry
	onceHead  int
}

type onceEntry struct {
	key     string
	expires time.Time
}

type onceRecord struct {
	fingerprint string
	event       *Event
	expires     time.Time
}

// NewMemory returns an empty embedded log.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	return &Memory{retention: cfg.Retention, epoch: NewEpoch(), hub: NewHub(HubConfig{MaxWorkspaces: cfg.MaxWorkspaces, Retention: cfg.Retention, OrderedFeed: true}), logs: make(map[string]*memLog)}
}

var lastEpoch atomic.Uint64

// NewEpoch returns an epoch for a new log life: the current time in
// microseconds, strictly greater than any epoch this process handed out
// before, so two logs created in the same microsecond still differ.
func NewEpoch() uint64 {
	for {
		prev := lastEpoch.Load()
		e := max(uint64(time.Now().UnixMicro()), prev+1)
		if lastEpoch.CompareAndSwap(prev, e) {
			return e
		}
	}
}

// Epoch returns the epoch of this log.
func (m *Memory) Epoch() uint64 { return m.epoch }

// Append implements Log.
func (m *Memory) Append(ctx context.Context, e *Event) (*Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := e.Body(); err != nil {
		return nil, err
	}
	l := m.log(e.WorkspaceID)
	if l == nil {
		return nil, ErrClosed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return m.appendLocked(l, e), nil
}

// AppendOnce implements Log.
func (m *Memory) AppendOnce(ctx context.Context, e *Event, once Once) (*Event, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if _, err := e.Body(); err != nil {
		return nil, false, err
	}
	if once.TTL <= 0 {
		once.TTL = DefaultOnceTTL
	}
	l := m.log(e.WorkspaceID)
	if l == nil {
		return nil, false, ErrClosed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if r, ok := l.once[once.Key]; ok && now.Before(r.expires) {
		if r.fingerprint != "" && once.Fingerprint != "" && r.fingerprint != once.Fingerprint {
			return nil, false, ErrIdempotencyConflict
		}
		return r.event, true, nil
	}
	e = m.appendLocked(l, e)
	exp := now.Add(once.TTL)
	l.once[once.Key] = onceRecord{fingerprint: once.Fingerprint, event: e, expires: exp}
	l.onceOrder = append(l.onceOrder, onceEntry{key: once.Key, expires: exp})
	m.forgetOnce(l, now)
	return e, false, nil
}

// AppendBatch implements Log.
func (m *Memory) AppendBatch(ctx context.Context, items []BatchItem) ([]*Event, []bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := CheckBatch(items); err != nil {
		return nil, nil, err
	}
	l := m.log(items[0].Event.WorkspaceID)
	if l == nil {
		return nil, nil, ErrClosed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	// First every check, so that a conflict appends nothing.
	for i, it := range items {
		if it.Once == nil {
			continue
		}
		if r, ok := l.once[it.Once.Key]; ok && now.Before(r.expires) &&
			r.fingerprint != "" && it.Once.Fingerprint != "" && r.fingerprint != it.Once.Fingerprint {
			return nil, nil, &BatchError{Index: i, Err: ErrIdempotencyConflict}
		}
	}
	events := make([]*Event, len(items))
	replayed := make([]bool, len(items))
	for i, it := range items {
		if it.Once != nil {
			if r, ok := l.once[it.Once.Key]; ok && now.Before(r.expires) {
				events[i], replayed[i] = r.event, true
				continue
			}
		}
		events[i] = m.appendLocked(l, it.Event)
		if it.Once != nil {
			ttl := it.Once.TTL
			if ttl <= 0 {
				ttl = DefaultOnceTTL
			}
			exp := now.Add(ttl)
			l.once[it.Once.Key] = onceRecord{fingerprint: it.Once.Fingerprint, event: events[i], expires: exp}
			l.onceOrder = append(l.onceOrder, onceEntry{key: it.Once.Key, expires: exp})
		}
	}
	m.forgetOnce(l, now)
	return events, replayed, nil
}

// Broadcast implements Log.
func (m *Memory) Broadcast(ctx context.Context, e *Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.ID = ID{}
	if _, err := e.Body(); err != nil {
		return err
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	// Ephemeral events have no order to keep with appends.
	m.hub.PublishEphemeral(e)
	return nil
}

// maxOnceKeys is how many idempotency keys a workspace of the embedded log
// remembers: four times its retention, at least 1,000. Past that the
// oldest are forgotten before their TTL (a retry of one would append
// again), so that the keys' memory is bounded like the events'.
func (m *Memory) maxOnceKeys() int { return max(4*m.retention, 1000) }

// forgetOnce drops the records that expired, oldest first, and the oldest
// beyond maxOnceKeys; l.mu must be held. Each record is visited once.
func (m *Memory) forgetOnce(l *memLog, now time.Time) {
	for l.onceHead < len(l.onceOrder) {
		oldest := l.onceOrder[l.onceHead]
		r, ok := l.once[oldest.key]
		current := ok && r.expires.Equal(oldest.expires)
		if current && now.Before(oldest.expires) && len(l.once) <= m.maxOnceKeys() {
			break
		}
		if current {
			delete(l.once, oldest.key)
		}
		l.onceOrder[l.onceHead] = onceEntry{}
		l.onceHead++
	}
	if l.onceHead > len(l.onceOrder)/2 && l.onceHead > 64 {
		n := copy(l.onceOrder, l.onceOrder[l.onceHead:])
		clear(l.onceOrder[n:])
		l.onceOrder, l.onceHead = l.onceOrder[:n], 0
	}
}

// log returns the log of ws, created on first use, or nil once m is
// closed. It takes m.mu only for the lookup.
func (m *Memory) log(ws string) *memLog {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	l := m.logs[ws]
	if l == nil {
		l = &memLog{once: make(map[string]onceRecord)}
		m.logs[ws] = l
	}
	return l
}

// existing returns the log of ws if it has one (reads create nothing), and
// whether m is open.
func (m *Memory) existing(ws string) (*memLog, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logs[ws], !m.closed
}

// appendLocked appends e to l; l.mu must be held.
func (m *Memory) appendLocked(l *memLog, e *Event) *Event {
	l.seq++
	e.ID = ID{Epoch: m.epoch, Seq: l.seq}
	l.events = append(l.events, e)
	if n := len(l.events); n > m.retention {
		// Trim in steps of a quarter of the retention so that the copy is
		// amortised over many appends, and drop references to what goes.
		if n >= m.retention+m.retention/4+1 {
			kept := make([]*Event, m.retention, m.retention+m.retention/4+1)
			copy(kept, l.events[n-m.retention:])
			l.events = kept
		}
	}
	// Publishing under l.mu keeps hub order equal to log order. It never
	// blocks, and it holds up only this workspace: direct writes are
	// non-blocking, and a large workspace's fan-out is handed to a worker
	// of its own.
	m.hub.Publish(e)
	return e
}

// retained returns the events kept for reading: the newest retention ones.
func (m *Memory) retained(l *memLog) []*Event {
	if len(l.events) > m.retention {
		return l.events[len(l.events)-m.retention:]
	}
	return l.events
}

// Read implements Log.
func (m *Memory) Read(ctx context.Context, workspace string, after ID, limit int) (Page, error) {
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	l, open := m.existing(workspace)
	if !open {
		return Page{}, ErrClosed
	}
	var (
		head   = ID{Epoch: m.epoch}
		events []*Event
	)
	if l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		head.Seq = l.seq
		events = m.retained(l)
	}
	first := head.Seq + 1
	if len(events) > 0 {
		first = events[0].ID.Seq
	}
	if !Continuous(after, m.epoch, head.Seq, first) {
		return Page{}, &ExpiredError{Cursor: after, Head: head}
	}
	start := 0
	if !after.IsZero() {
		start = int(after.Seq + 1 - first)
	}
	end := min(start+limit, len(events))
	page := Page{Head: head, Events: make([]*Event, 0, end-start)}
	page.Events = append(page.Events, events[start:end]...)
	return page, nil
}

// Head implements Log.
func (m *Memory) Head(ctx context.Context, workspace string) (ID, error) {
	if err := ctx.Err(); err != nil {
		return ID{}, err
	}
	l, open := m.existing(workspace)
	if !open {
		return ID{}, ErrClosed
	}
	head := ID{Epoch: m.epoch}
	if l != nil {
		l.mu.Lock()
		head.Seq = l.seq
		l.mu.Unlock()
	}
	return head, nil
}

// Subscribe implements Log.
func (m *Memory) Subscribe(workspace string, f Filter, size int) *Subscription {
	return m.hub.Subscribe(workspace, f, size)
}

// Ping implements Log.
func (m *Memory) Ping(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("ping memory log: %w", ErrClosed)
	}
	return nil
}

// Close implements Log.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.logs = nil
	m.mu.Unlock()
	m.hub.Close()
	return nil
}
