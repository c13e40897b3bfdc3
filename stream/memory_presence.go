package stream

import (
	"context"
	"sort"
	"time"
)

// presenceState is the embedded log's presence of one workspace.
type presenceState struct {
	explicit map[string]explicitStatus       // user → status set by PUT
	conns    map[string]map[string]time.Time // user → conn → expiry
	shown    map[string]Presence             // user → last reported presence
	typing   map[[2]string]typingState       // (chat, user)
}

type explicitStatus struct {
	status  string
	expires time.Time
}

type typingState struct {
	token   string
	expires time.Time
}

// existingPresence returns the presence state of ws, or nil: reads and
// removals create nothing (GET .../presence on 50,000 unused workspaces
// kept 21 MB).
func (m *Memory) existingPresence(ws string) *presenceState { return m.pres[ws] }

// forgetPresence drops p's workspace state once nothing is left in it.
func (m *Memory) forgetPresence(ws string, p *presenceState) {
	if len(p.explicit) == 0 && len(p.conns) == 0 && len(p.shown) == 0 && len(p.typing) == 0 {
		delete(m.pres, ws)
	}
}

func (m *Memory) presence(ws string) *presenceState {
	if m.pres == nil {
		m.pres = make(map[string]*presenceState)
	}
	p := m.pres[ws]
	if p == nil {
		p = &presenceState{explicit: map[string]explicitStatus{}, conns: map[string]map[string]time.Time{},
			shown: map[string]Presence{}, typing: map[[2]string]typingState{}}
		m.pres[ws] = p
	}
	return p
}

// effective computes a user's status at now, dropping what expired.
func (p *presenceState) effective(user string, now time.Time) string {
	if ex, ok := p.explicit[user]; ok {
		if now.Before(ex.expires) {
			return ex.status
		}
		delete(p.explicit, user)
	}
	for c, exp := range p.conns[user] {
		if now.Before(exp) {
			return "online"
		}
		delete(p.conns[user], c)
	}
	delete(p.conns, user)
	return "offline"
}

// settle compares the effective status with the shown one and records a
// change.
func (p *presenceState) settle(user string, now time.Time) (Presence, bool) {
	eff := p.effective(user, now)
	shown, ok := p.shown[user]
	if !ok {
		shown = Presence{UserID: user, Status: "offline", Since: now}
	}
	if shown.Status == eff {
		return shown, false
	}
	cur := Presence{UserID: user, Status: eff, Since: now}
	if eff == "offline" {
		delete(p.shown, user)
	} else {
		p.shown[user] = cur
	}
	return cur, true
}

// SetPresence records user's explicit status for ttl.
func (m *Memory) SetPresence(ctx context.Context, ws, user, status string, ttl time.Duration) (Presence, bool, error) {
	if err := ctx.Err(); err != nil {
		return Presence{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	p := m.presence(ws)
	p.explicit[user] = explicitStatus{status: status, expires: now.Add(ttl)}
	cur, changed := p.settle(user, now)
	return cur, changed, nil
}

// OpenConn records a live stream connection of user, valid for ttl unless
// refreshed.
func (m *Memory) OpenConn(ctx context.Context, ws, user, conn string, ttl time.Duration) (Presence, bool, error) {
	if err := ctx.Err(); err != nil {
		return Presence{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	p := m.presence(ws)
	if p.conns[user] == nil {
		p.conns[user] = map[string]time.Time{}
	}
	p.conns[user][conn] = now.Add(ttl)
	cur, changed := p.settle(user, now)
	return cur, changed, nil
}

// OpenConns records each of conns, in order, as OpenConn does.
func (m *Memory) OpenConns(ctx context.Context, conns []ConnRef, ttl time.Duration) []Opened {
	out := make([]Opened, len(conns))
	for i, c := range conns {
		out[i].Presence, out[i].Changed, out[i].Err = m.OpenConn(ctx, c.Workspace, c.User, c.Conn, ttl)
	}
	return out
}

// RefreshConns extends the life of the recorded ones of conns.
func (m *Memory) RefreshConns(ctx context.Context, conns []ConnRef, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp := time.Now().Add(ttl)
	for _, c := range conns {
		p := m.existingPresence(c.Workspace)
		if p == nil {
			continue
		}
		if cs := p.conns[c.User]; cs != nil {
			if _, ok := cs[c.Conn]; ok {
				cs[c.Conn] = exp
			}
		}
	}
	return ctx.Err()
}

// CloseConn forgets a connection. It does not settle: the caller does,
// after a grace period, so that a reconnect does not flap.
func (m *Memory) CloseConn(ctx context.Context, ws, user, conn string) error {
	return m.CloseConns(ctx, []ConnRef{{Workspace: ws, User: user, Conn: conn}})
}

// CloseConns forgets each of conns, as CloseConn does.
func (m *Memory) CloseConns(ctx context.Context, conns []ConnRef) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range conns {
		if p := m.existingPresence(c.Workspace); p != nil {
			delete(p.conns[c.User], c.Conn)
		}
	}
	return ctx.Err()
}

// SettlePresence recomputes user's status and reports a change.
func (m *Memory) SettlePresence(ctx context.Context, ws, user string) (Presence, bool, error) {
	if err := ctx.Err(); err != nil {
		return Presence{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.existingPresence(ws)
	if p == nil {
		return Presence{UserID: user, Status: "offline", Since: time.Now()}, false, nil
	}
	cur, changed := p.settle(user, time.Now())
	m.forgetPresence(ws, p)
	return cur, changed, nil
}

// ListPresence returns who is present in ws now, by user id.
func (m *Memory) ListPresence(ctx context.Context, ws string) ([]Presence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	p := m.existingPresence(ws)
	if p == nil {
		return []Presence{}, nil
	}
	users := map[string]bool{}
	for u := range p.explicit {
		users[u] = true
	}
	for u := range p.conns {
		users[u] = true
	}
	for u := range p.shown {
		users[u] = true
	}
	out := []Presence{}
	for u := range users {
		eff := p.effective(u, now)
		if eff == "offline" {
			continue
		}
		since := now
		if sh, ok := p.shown[u]; ok && sh.Status == eff {
			since = sh.Since
		}
		out = append(out, Presence{UserID: u, Status: eff, Since: since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	m.forgetPresence(ws, p)
	return out, nil
}

// SetTyping records that user is (or stopped) typing in chat. changed
// reports a transition worth broadcasting. A typing state lapses after ttl
// unless set again; the setter calls ExpireTyping with its token then.
func (m *Memory) SetTyping(ctx context.Context, ws, chat, user, token string, typing bool, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.presence(ws)
	k := [2]string{chat, user}
	cur, ok := p.typing[k]
	now := time.Now()
	active := ok && now.Before(cur.expires)
	if !typing {
		delete(p.typing, k)
		return active, nil
	}
	p.typing[k] = typingState{token: token, expires: now.Add(ttl)}
	return !active, nil
}

// ExpireTyping is called by the setter holding token when its ttl ran out:
// stopped reports that the state has lapsed and this caller must broadcast
// the stop; remaining > 0 that it was renewed by this same setter and is
// due again then. Otherwise a newer setter owns it.
func (m *Memory) ExpireTyping(ctx context.Context, ws, chat, user, token string) (stopped bool, remaining time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.existingPresence(ws)
	if p == nil {
		return false, 0, nil
	}
	k := [2]string{chat, user}
	cur, ok := p.typing[k]
	if !ok || cur.token != token {
		return false, 0, nil
	}
	if left := time.Until(cur.expires); left > 0 {
		return false, left, nil
	}
	delete(p.typing, k)
	m.forgetPresence(ws, p)
	return true, 0, nil
}
