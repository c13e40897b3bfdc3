package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream"
)

var _ stream.TicketStore = (*Log)(nil)

// ticketKey is where a ticket lives: in its workspace's slot, so that a
// ticket of one workspace is not even looked up for another.
func (l *Log) ticketKey(ws, id string) string { return l.prefix + ":{" + ws + "}:tk:" + id }

// PutTicket stores t under id for ttl (SET NX PX: an id is never
// overwritten).
func (l *Log) PutTicket(ctx context.Context, id string, t stream.Ticket, ttl time.Duration) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("ticket: %w", err)
	}
	ok, err := l.rdb.SetNX(ctx, l.ticketKey(t.Workspace, id), b, max(ttl, time.Millisecond)).Result()
	if err != nil {
		return unavailable("put ticket", err)
	}
	if !ok {
		return errors.New("put ticket: id already in use")
	}
	return nil
}

// takeScript is GETDEL in one step on any Redis version: of many nodes
// redeeming one ticket, one gets it. KEYS ticket.
var takeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
`)

// TakeTicket returns and deletes the ticket id of ws, atomically.
func (l *Log) TakeTicket(ctx context.Context, ws, id string) (stream.Ticket, bool, error) {
	s, err := takeScript.Run(ctx, l.rdb, []string{l.ticketKey(ws, id)}).Text()
	if errors.Is(err, redis.Nil) {
		return stream.Ticket{}, false, nil
	}
	if err != nil {
		return stream.Ticket{}, false, unavailable("take ticket", err)
	}
	var t stream.Ticket
	if err := json.Unmarshal([]byte(s), &t); err != nil {
		return stream.Ticket{}, false, fmt.Errorf("take ticket: stored ticket does not decode: %w", err)
	}
	return t, t.Workspace == ws, nil
}
