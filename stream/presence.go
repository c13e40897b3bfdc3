package stream

import (
	"context"
	"time"
)

// Presence is who is in a workspace, as GET .../presence reports it.
type Presence struct {
	UserID string    `json:"userId"`
	Status string    `json:"status"` // online, away, busy; offline only from the store
	Since  time.Time `json:"since"`
}

// PresenceStore is the presence and typing state a log keeps where it keeps
// events, so that every node sees the same: Memory in this process,
// redisstream.Log in Redis. Both pass streamtest.RunPresence.
//
// A user's effective status is their explicit status while it has not
// expired, else "online" while they have a live connection, else
// "offline". The store also remembers the status it last reported for each
// user, so that the operations that can change the effective status report
// whether they did: of many callers racing over one transition, on any
// number of nodes, exactly one is told changed, and that one announces it.
// Nothing in the store expires on its own schedule: a lapse is noticed by
// the next operation on that user (the PresenceTracker settles at the
// right time). All methods are safe for concurrent use and block on the
// store (a Redis round trip).
type PresenceStore interface {
	// SetPresence records user's explicit status for ttl and returns the
	// effective presence, and whether it changed.
	SetPresence(ctx context.Context, ws, user, status string, ttl time.Duration) (Presence, bool, error)
	// OpenConn records a live connection conn of user, valid for ttl
	// unless refreshed, and returns the effective presence.
	OpenConn(ctx context.Context, ws, user, conn string, ttl time.Duration) (Presence, bool, error)
	// OpenConns records each of conns as OpenConn does, all valid for
	// ttl: a node's round of joins in one call, which Redis serves as
	// pipelines rather than a round trip per connection. Each result is
	// its connection's, with its own error. The calls of different users
	// are independent; two of one user's connections in one call are
	// recorded in order except across a Redis restart (see runPipelined),
	// so a caller that needs their order makes them in separate calls.
	OpenConns(ctx context.Context, conns []ConnRef, ttl time.Duration) []Opened
	// RefreshConns extends the life of each of conns to ttl from now, if
	// it is recorded (it records none): a node's refresh round in one
	// call, which Redis serves as a pipeline rather than a round trip per
	// connection.
	RefreshConns(ctx context.Context, conns []ConnRef, ttl time.Duration) error
	// CloseConn forgets conn. It does not settle: the caller does after a
	// grace, so that a reconnect does not flap.
	CloseConn(ctx context.Context, ws, user, conn string) error
	// CloseConns forgets each of conns, as CloseConn does: a round of
	// departures in one call (pipelined on Redis). It returns the first
	// error, having tried them all.
	CloseConns(ctx context.Context, conns []ConnRef) error
	// SettlePresence recomputes user's status and reports a change.
	SettlePresence(ctx context.Context, ws, user string) (Presence, bool, error)
	// ListPresence returns who is present in ws now (never offline), by
	// user id; it records nothing.
	ListPresence(ctx context.Context, ws string) ([]Presence, error)
	// SetTyping records that user is (typing) or stopped typing in chat;
	// changed reports a transition. A typing state lapses after ttl
	// unless set again: its setter, holding token, calls ExpireTyping then.
	SetTyping(ctx context.Context, ws, chat, user, token string, typing bool, ttl time.Duration) (changed bool, err error)
	// ExpireTyping is called by the setter holding token when its ttl ran
	// out: stopped reports that the state lapsed and this caller must
	// announce the stop; remaining > 0 that it was renewed with the same
	// token and is due again then. Otherwise a newer setter owns it.
	ExpireTyping(ctx context.Context, ws, chat, user, token string) (stopped bool, remaining time.Duration, err error)
}

// ConnRef names a connection record: user's connection conn in workspace.
type ConnRef struct{ Workspace, User, Conn string }

// Opened is what OpenConns reports for one connection: its user's
// effective presence, and whether it changed, as OpenConn returns them.
type Opened struct {
	Presence Presence
	Changed  bool
	Err      error
}

var _ PresenceStore = (*Memory)(nil)
