package stream

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// Ticket is what a stream ticket stands for: one stream of Workspace, as
// UserID, with Types, ending at Expires (the expiry of the token the
// ticket was bought with).
type Ticket struct {
	UserID    string    `json:"sub"`
	Workspace string    `json:"ws"`
	Types     []string  `json:"types,omitempty"`
	Expires   time.Time `json:"exp"`
}

// TicketStore keeps stream tickets where the log keeps events, so that a
// ticket bought from one node opens a stream on any: Memory in this
// process, redisstream.Log in Redis. Both pass streamtest.RunTickets.
// Methods are safe for concurrent use and block on the store.
type TicketStore interface {
	// PutTicket stores t under id (NewTicketID) for ttl.
	PutTicket(ctx context.Context, id string, t Ticket, ttl time.Duration) error
	// TakeTicket returns the ticket stored under id for workspace ws and
	// deletes it, in one atomic step: of any number of callers, on any
	// number of nodes, at most one gets it. ok is false for a ticket never
	// stored, already taken, expired, or stored for another workspace (which
	// it leaves in place).
	TakeTicket(ctx context.Context, ws, id string) (t Ticket, ok bool, err error)
}

var _ TicketStore = (*Memory)(nil)

// ticketBytes is the randomness of a ticket id: 256 bits, unguessable.
const ticketBytes = 32

// ticketLen is the length of a ticket id: ticketBytes in unpadded base64url.
var ticketLen = base64.RawURLEncoding.EncodedLen(ticketBytes)

// NewTicketID returns a fresh random ticket id (43 characters of base64url).
func NewTicketID() string {
	b := make([]byte, ticketBytes)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidTicketID reports whether s has the shape of a ticket id, so that
// nothing else reaches the store (a key built from it, or a log line).
func ValidTicketID(s string) bool {
	if len(s) != ticketLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// tickets holds the embedded log's tickets.
type tickets struct {
	mu    sync.Mutex
	m     map[string]memTicket // ws + "\x00" + id
	swept int                  // size after the last sweep
}

type memTicket struct {
	t   Ticket
	end time.Time
}

// PutTicket stores t under id for ttl.
func (m *Memory) PutTicket(ctx context.Context, id string, t Ticket, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	m.tk.mu.Lock()
	defer m.tk.mu.Unlock()
	if m.tk.m == nil {
		m.tk.m = make(map[string]memTicket)
	}
	if len(m.tk.m) >= 2*m.tk.swept+1024 {
		// Tickets nobody redeemed: forget the expired, at a cost of
		// O(1) per ticket stored.
		for k, v := range m.tk.m {
			if !now.Before(v.end) {
				delete(m.tk.m, k)
			}
		}
		m.tk.swept = len(m.tk.m)
	}
	m.tk.m[t.Workspace+"\x00"+id] = memTicket{t: t, end: now.Add(ttl)}
	return nil
}

// TakeTicket returns and forgets the ticket id of ws.
func (m *Memory) TakeTicket(ctx context.Context, ws, id string) (Ticket, bool, error) {
	if err := ctx.Err(); err != nil {
		return Ticket{}, false, err
	}
	k := ws + "\x00" + id
	m.tk.mu.Lock()
	defer m.tk.mu.Unlock()
	v, ok := m.tk.m[k]
	if !ok {
		return Ticket{}, false, nil
	}
	delete(m.tk.m, k)
	if !time.Now().Before(v.end) {
		return Ticket{}, false, nil
	}
	return v.t, true, nil
}
