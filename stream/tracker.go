package stream

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Ephemeral event types the PresenceTracker broadcasts.
const (
	// TypePresenceChanged carries a PresenceChange: every presence change
	// this node determined in one workspace during one interval.
	TypePresenceChanged = "presence.changed"
	TypeTypingStarted   = "typing.started"
	TypeTypingStopped   = "typing.stopped"
)

// PresenceChange is the data of a presence.changed event: the users of one
// workspace whose effective status changed, grouped by their new status,
// each sorted. A user appears once, with the status they had when the
// event was sent. Arrays are never null.
type PresenceChange struct {
	Online  []string `json:"online"`
	Away    []string `json:"away"`
	Busy    []string `json:"busy"`
	Offline []string `json:"offline"`
}

// Typing is the data of a typing.started or typing.stopped event.
type Typing struct {
	ChatID string `json:"chatId"`
	UserID string `json:"userId"`
}

// Broadcaster sends ephemeral events to the current subscribers of their
// workspace on every node (Log.Broadcast).
type Broadcaster interface {
	Broadcast(ctx context.Context, e *Event) error
}

// PresenceConfig configures a PresenceTracker. Zero values are defaults.
type PresenceConfig struct {
	// Interval is the coalescing window: the presence changes of a
	// workspace that this node determines are announced in one
	// presence.changed event, at most once per Interval (500ms). An
	// isolated change goes out at once.
	Interval time.Duration
	// ConnTTL is how long a connection's record lives in the store unless
	// refreshed; the tracker refreshes this node's every ConnTTL/3 (45s).
	ConnTTL time.Duration
	// Grace is how long after a user's last connection on this node
	// closes they are settled, offline unless they came back (5s).
	Grace time.Duration
	// StatusTTL is how long an explicit status lasts unless set again
	// (60s).
	StatusTTL time.Duration
	// TypingTTL is how long "typing" lasts unless set again (5s).
	TypingTTL time.Duration
	// Logger receives store failures (discarded when nil).
	Logger *slog.Logger
}

func (c PresenceConfig) withDefaults() PresenceConfig {
	if c.Interval <= 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.ConnTTL <= 0 {
		c.ConnTTL = 45 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 5 * time.Second
	}
	if c.StatusTTL <= 0 {
		c.StatusTTL = time.Minute
	}
	if c.TypingTTL <= 0 {
		c.TypingTTL = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// storeTimeout bounds each store call the tracker makes on its own.
const storeTimeout = 5 * time.Second

// PresenceTracker is this node's side of presence: it records the node's
// connections in the PresenceStore (one record per workspace and user,
// however many streams that user holds here), refreshes them, settles
// users when their last connection closes or their status lapses, expires
// typing, and announces changes.
//
// Announcements cost O(changes), not O(people × changes): presence changes
// are coalesced per workspace into at most one presence.changed event per
// Interval (5,000 people connecting at once is a handful of events, not
// 5,000), and only readers that ask for presence or typing receive them
// (see Filter). Typing starts and stops go out at once, one event each.
// With several nodes, each announces the changes it determined, so a
// reader sees at most one presence.changed per node per Interval.
//
// One goroutine, started by NewPresenceTracker and stopped by Close, runs
// every timed step (coalesced announcements, settles, typing expiry,
// connection refreshes); nothing else keeps a timer. All methods are safe
// for concurrent use.
type PresenceTracker struct {
	store PresenceStore
	out   Broadcaster
	cfg   PresenceConfig

	mu      sync.Mutex // guards members, jobs, pending, due and closed
	members map[wsUser]*member
	jobs    []connJob             // store calls for connections opened and closed, in order
	pending map[string]*wsChanges // by workspace
	due     dueHeap
	closed  bool

	wake   chan struct{} // a token when due's earliest item changed
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

type wsUser struct{ ws, user string }

// member is one user's presence in one workspace on this node.
type member struct {
	key     wsUser
	conn    string // this node's connection id in the store
	streams int    // guarded by PresenceTracker.mu
}

// connJob is a store call the tracker's goroutine makes for a member:
// recording its connection (open) or forgetting it. They run in the order
// they were queued, so a member's open always precedes its close.
type connJob struct {
	m    *member
	open bool
}

// wsChanges are the changes of one workspace not yet announced.
type wsChanges struct {
	status     map[string]string // user → new status
	scheduled  bool              // a flush is due
	quietUntil time.Time         // no flush before: the last one plus Interval
}

// NewPresenceTracker starts a tracker over store, announcing through out.
// Close stops it.
func NewPresenceTracker(store PresenceStore, out Broadcaster, cfg PresenceConfig) *PresenceTracker {
	ctx, cancel := context.WithCancel(context.Background())
	t := &PresenceTracker{
		store: store, out: out, cfg: cfg.withDefaults(),
		members: make(map[wsUser]*member), pending: make(map[string]*wsChanges),
		wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}),
	}
	// Exits when Close cancels ctx, after announcing what is pending.
	go t.run(ctx)
	return t
}

// Members returns how many users are present through this node's streams
// (one per user and workspace), for metrics.
func (t *PresenceTracker) Members() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.members)
}

// Close makes the store calls still queued (the connections of streams
// that ended, which would otherwise linger for ConnTTL), announces the
// changes still pending, and stops the tracker; what was scheduled later
// (settles, typing expiry) is dropped. After it, Join and Leave do
// nothing, and SetStatus and SetTyping reach the store but schedule
// nothing. It is idempotent.
func (t *PresenceTracker) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	<-t.done
}

// Member is one stream's or long poll's share of its user's presence.
type Member struct {
	t    *PresenceTracker
	m    *member
	once sync.Once
}

// Join counts a connection of user in ws: the first one on this node
// records the user as connected (online, unless they set another status)
// and announces the change. Leave the returned Member when the connection
// ends. Join never waits for the store: the tracker's goroutine makes the
// call, so a stream's goroutine stays as small as it was, and a connect
// burst is one queue of store calls rather than thousands at once.
func (t *PresenceTracker) Join(ws, user string) *Member {
	key := wsUser{ws, user}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.members[key]
	if m == nil {
		m = &member{key: key, conn: newID()}
		t.members[key] = m
		t.queueLocked(connJob{m: m, open: true})
	}
	m.streams++
	return &Member{t: t, m: m}
}

// Leave ends the connection's share; the user's last connection on this
// node removes its record, and the user is settled after the grace (a
// reconnect within it keeps them online, and nothing is announced). It is
// idempotent, and never waits for the store.
func (mb *Member) Leave() {
	mb.once.Do(func() { mb.t.leave(mb.m) })
}

func (t *PresenceTracker) leave(m *member) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m.streams--
	if m.streams > 0 {
		return
	}
	if t.members[m.key] == m {
		delete(t.members, m.key)
	}
	t.queueLocked(connJob{m: m})
}

// queueLocked queues a store call for the goroutine; t.mu must be held.
func (t *PresenceTracker) queueLocked(j connJob) {
	if t.closed {
		return
	}
	t.jobs = append(t.jobs, j)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// runJobs makes the queued store calls, in order.
func (t *PresenceTracker) runJobs(ctx context.Context) {
	for {
		t.mu.Lock()
		jobs := t.jobs
		t.jobs = nil
		t.mu.Unlock()
		if len(jobs) == 0 {
			return
		}
		// A run's call, once started, is not cut short by ctx (it would
		// drop the rest of a pipelined run, thousands of records left
		// to their ttl at shutdown); between runs, ctx stops the round.
		op, cancel := roundContext(context.WithoutCancel(ctx), len(jobs))
		for i := 0; i < len(jobs); {
			if ctx.Err() != nil {
				// Stopping: give the rest back, for Close's last round.
				t.mu.Lock()
				t.jobs = append(jobs[i:], t.jobs...)
				t.mu.Unlock()
				cancel()
				return
			}
			// The joins up to the next departure (or the departures up to
			// the next join) go to the store in one call, in their order.
			// A run holds at most one job per member key (a user's join and
			// departure on this node alternate), which is all the order
			// OpenConns needs to keep.
			open, k := jobs[i].open, i
			for k < len(jobs) && jobs[k].open == open {
				k++
			}
			refs := make([]ConnRef, k-i)
			for n, j := range jobs[i:k] {
				refs[n] = ConnRef{Workspace: j.m.key.ws, User: j.m.key.user, Conn: j.m.conn}
			}
			i = k
			if !open {
				if err := t.store.CloseConns(op, refs); err != nil {
					t.cfg.Logger.DebugContext(op, "presence not closed", "connections", len(refs), "err", err)
				}
				// Settled after the grace, so that a reconnect does not flap.
				grace := time.Now().Add(t.cfg.Grace)
				for _, r := range refs {
					t.schedule(dueKey{kind: dueGrace, ws: r.Workspace, a: r.User}, "", grace)
				}
				continue
			}
			failed, first := 0, error(nil)
			for n, o := range t.store.OpenConns(op, refs, t.cfg.ConnTTL) {
				if o.Err != nil {
					if failed++; first == nil {
						first = o.Err
					}
				} else if o.Changed {
					t.changed(refs[n].Workspace, o.Presence)
				}
			}
			if failed > 0 {
				// One line per run, not one per connection of a burst.
				t.cfg.Logger.WarnContext(op, "presence not recorded", "connections", failed, "of", len(refs), "err", first)
			}
		}
		cancel()
	}
}

// roundContext bounds a round of n store calls with one deadline, not a
// timer per call (a connect burst is thousands of calls).
func roundContext(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeTimeout+time.Duration(n)*time.Millisecond)
}

// SetStatus records user's explicit status in ws for StatusTTL, announces
// a change, and returns the user's presence now. The status is settled
// again when it lapses.
func (t *PresenceTracker) SetStatus(ctx context.Context, ws, user, status string) (Presence, error) {
	cur, changed, err := t.store.SetPresence(ctx, ws, user, status, t.cfg.StatusTTL)
	if err != nil {
		return Presence{}, err
	}
	if changed {
		t.changed(ws, cur)
	}
	// A second past the lapse: the store's clock (Redis) may run behind.
	t.schedule(dueKey{kind: dueStatus, ws: ws, a: user}, "", time.Now().Add(t.cfg.StatusTTL+time.Second))
	return cur, nil
}

// List returns who is present in ws now.
func (t *PresenceTracker) List(ctx context.Context, ws string) ([]Presence, error) {
	return t.store.ListPresence(ctx, ws)
}

// SetTyping records that user is (or stopped) typing in chat, and announces
// a start or a stop at once, with correlationID. Typing stops by itself
// after TypingTTL unless set again.
func (t *PresenceTracker) SetTyping(ctx context.Context, ws, chat, user string, typing bool, correlationID string) error {
	token := newID()
	changed, err := t.store.SetTyping(ctx, ws, chat, user, token, typing, t.cfg.TypingTTL)
	if err != nil {
		return err
	}
	if typing {
		// One expiry per setter: whichever token the store kept, its
		// setter's expiry announces the stop, and the others' find a
		// newer token and do nothing (two tabs typing at once).
		t.schedule(dueKey{kind: dueTyping, ws: ws, a: chat, b: user, token: token}, token, time.Now().Add(t.cfg.TypingTTL))
	}
	if changed {
		typ := TypeTypingStopped
		if typing {
			typ = TypeTypingStarted
		}
		t.announce(ctx, ws, typ, Typing{ChatID: chat, UserID: user}, correlationID)
	}
	return nil
}

// changed queues a presence change of ws for the next announcement.
func (t *PresenceTracker) changed(ws string, p Presence) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.pending[ws]
	if st == nil {
		st = &wsChanges{}
		t.pending[ws] = st
	}
	if st.status == nil {
		st.status = make(map[string]string)
	}
	st.status[p.UserID] = p.Status
	if !st.scheduled && !t.closed {
		st.scheduled = true
		t.scheduleLocked(dueKey{kind: dueFlush, ws: ws}, "", maxTime(time.Now(), st.quietUntil))
	}
}

// announce broadcasts one ephemeral event; a failure is logged: presence
// is best effort and never fails its caller.
func (t *PresenceTracker) announce(ctx context.Context, ws, typ string, data any, correlationID string) {
	b, err := json.Marshal(data)
	if err != nil {
		t.cfg.Logger.ErrorContext(ctx, "encode presence event", "type", typ, "err", err)
		return
	}
	if correlationID == "" {
		correlationID = newID()
	}
	e := &Event{Type: typ, WorkspaceID: ws, CorrelationID: correlationID, Source: "realtime", Timestamp: time.Now().UTC(), Data: b}
	if err := t.out.Broadcast(ctx, e); err != nil {
		t.cfg.Logger.WarnContext(ctx, "broadcast failed", "type", typ, "err", err)
	}
}

// run performs due items until ctx is done, and refreshes this node's
// connection records every ConnTTL/3.
func (t *PresenceTracker) run(ctx context.Context) {
	defer close(t.done)
	refresh := time.NewTicker(t.cfg.ConnTTL / 3)
	defer refresh.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		t.mu.Lock()
		next, ok := t.due.next()
		t.mu.Unlock()
		if ok {
			timer.Reset(time.Until(next))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), storeTimeout)
			t.runJobs(last)
			cancel()
			t.flushAll()
			return
		case <-t.wake:
		case <-timer.C:
		case <-refresh.C:
			t.refreshAll(ctx)
		}
		t.runJobs(ctx)
		t.runDue(ctx, time.Now())
	}
}

// runDue performs every item due by now, each outside t.mu. Announcements
// go last, so that the changes settled in this round (a thousand people
// whose grace ends together) make one event, not a first and a rest.
func (t *PresenceTracker) runDue(ctx context.Context, now time.Time) {
	var flushes []string
	for {
		t.mu.Lock()
		it, ok := t.due.popDue(now)
		if ok && it.key.kind == dueForget {
			if st := t.pending[it.key.ws]; st != nil && !st.scheduled && !now.Before(st.quietUntil) {
				delete(t.pending, it.key.ws)
			}
		}
		t.mu.Unlock()
		if !ok {
			break
		}
		if it.key.kind == dueFlush {
			flushes = append(flushes, it.key.ws)
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		op, cancel := context.WithTimeout(ctx, storeTimeout)
		switch it.key.kind {
		case dueGrace, dueStatus:
			t.settle(op, it.key.ws, it.key.a)
		case dueTyping:
			t.expireTyping(op, it.key, it.token)
		}
		cancel()
	}
	for _, ws := range flushes {
		t.mu.Lock()
		changes := t.takeLocked(ws, time.Now())
		t.mu.Unlock()
		op, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		t.flush(op, ws, changes)
		cancel()
	}
}

// takeLocked takes the pending changes of ws for a flush at now; t.mu
// must be held.
func (t *PresenceTracker) takeLocked(ws string, now time.Time) map[string]string {
	st := t.pending[ws]
	if st == nil {
		return nil
	}
	changes := st.status
	st.status = nil
	st.scheduled = false
	st.quietUntil = now.Add(t.cfg.Interval)
	if !t.closed {
		t.scheduleLocked(dueKey{kind: dueForget, ws: ws}, "", st.quietUntil)
	}
	return changes
}

// flush announces changes as one presence.changed event.
func (t *PresenceTracker) flush(ctx context.Context, ws string, changes map[string]string) {
	if len(changes) == 0 {
		return
	}
	c := PresenceChange{Online: []string{}, Away: []string{}, Busy: []string{}, Offline: []string{}}
	for user, status := range changes {
		switch status {
		case "online":
			c.Online = append(c.Online, user)
		case "away":
			c.Away = append(c.Away, user)
		case "busy":
			c.Busy = append(c.Busy, user)
		default:
			c.Offline = append(c.Offline, user)
		}
	}
	for _, s := range [][]string{c.Online, c.Away, c.Busy, c.Offline} {
		slices.Sort(s)
	}
	t.announce(ctx, ws, TypePresenceChanged, c, "")
}

// flushAll announces everything pending, at shutdown.
func (t *PresenceTracker) flushAll() {
	t.mu.Lock()
	now := time.Now()
	all := make(map[string]map[string]string, len(t.pending))
	for ws := range t.pending {
		all[ws] = t.takeLocked(ws, now)
	}
	t.due = dueHeap{}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	for ws, changes := range all {
		t.flush(ctx, ws, changes)
	}
}

func (t *PresenceTracker) settle(ctx context.Context, ws, user string) {
	cur, changed, err := t.store.SettlePresence(ctx, ws, user)
	if err != nil {
		t.cfg.Logger.DebugContext(ctx, "presence not settled", "err", err)
		return
	}
	if changed {
		t.changed(ws, cur)
	}
}

func (t *PresenceTracker) expireTyping(ctx context.Context, key dueKey, token string) {
	stopped, left, err := t.store.ExpireTyping(ctx, key.ws, key.a, key.b, token)
	switch {
	case err != nil:
		t.cfg.Logger.DebugContext(ctx, "typing expiry failed", "err", err)
	case stopped:
		t.announce(ctx, key.ws, TypeTypingStopped, Typing{ChatID: key.a, UserID: key.b}, "")
	case left > 0:
		t.schedule(key, token, time.Now().Add(left))
	}
}

// refreshAll extends the life of this node's connection records.
func (t *PresenceTracker) refreshAll(ctx context.Context) {
	t.mu.Lock()
	refs := make([]ConnRef, 0, len(t.members))
	for _, m := range t.members {
		refs = append(refs, ConnRef{Workspace: m.key.ws, User: m.key.user, Conn: m.conn})
	}
	t.mu.Unlock()
	op, cancel := roundContext(ctx, len(refs))
	defer cancel()
	if err := t.store.RefreshConns(op, refs, t.cfg.ConnTTL); err != nil {
		t.cfg.Logger.WarnContext(op, "presence refresh round failed", "connections", len(refs), "err", err)
	}
}

// schedule makes key due at at, replacing its earlier schedule (and token).
func (t *PresenceTracker) schedule(key dueKey, token string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.scheduleLocked(key, token, at)
	}
}

func (t *PresenceTracker) scheduleLocked(key dueKey, token string, at time.Time) {
	if t.due.set(key, token, at) {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// Kinds of due items.
const (
	dueFlush  = iota // announce ws's pending changes
	dueForget        // drop ws's coalescing state once quiet
	dueGrace         // settle user a after their last connection closed
	dueStatus        // settle user a after their explicit status lapsed
	dueTyping        // expire user b's typing in chat a
)

// dueKey names a due item; one schedule per key.
type dueKey struct {
	kind  int
	ws    string
	a, b  string
	token string // a typing expiry's setter
}

type dueItem struct {
	key   dueKey
	token string
	at    time.Time
	index int
}

// dueHeap is a min-heap of items by time, with one item per key.
type dueHeap struct {
	items []*dueItem
	byKey map[dueKey]*dueItem
}

func (h *dueHeap) Len() int           { return len(h.items) }
func (h *dueHeap) Less(i, j int) bool { return h.items[i].at.Before(h.items[j].at) }
func (h *dueHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index, h.items[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	it := x.(*dueItem)
	it.index = len(h.items)
	h.items = append(h.items, it)
}
func (h *dueHeap) Pop() any {
	n := len(h.items)
	it := h.items[n-1]
	h.items[n-1] = nil
	h.items = h.items[:n-1]
	return it
}

// set schedules key at at, and reports whether the earliest item changed.
func (h *dueHeap) set(key dueKey, token string, at time.Time) bool {
	if h.byKey == nil {
		h.byKey = make(map[dueKey]*dueItem)
	}
	before, _ := h.next()
	if it, ok := h.byKey[key]; ok {
		it.token, it.at = token, at
		heap.Fix(h, it.index)
	} else {
		it := &dueItem{key: key, token: token, at: at}
		h.byKey[key] = it
		heap.Push(h, it)
	}
	after, _ := h.next()
	return !after.Equal(before)
}

// next returns the earliest item's time.
func (h *dueHeap) next() (time.Time, bool) {
	if len(h.items) == 0 {
		return time.Time{}, false
	}
	return h.items[0].at, true
}

// popDue removes and returns the earliest item if it is due by now.
func (h *dueHeap) popDue(now time.Time) (*dueItem, bool) {
	if len(h.items) == 0 || h.items[0].at.After(now) {
		return nil, false
	}
	it := heap.Pop(h).(*dueItem)
	delete(h.byKey, it.key)
	return it, true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// newID returns a random 128-bit id in hex.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
