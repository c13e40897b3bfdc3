package redisstream

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtime-dev/realtime/stream"
)

// Presence keys, all in the workspace's slot:
//
//	P:{W}:pe        hash user → "status\x1fexpiry ms"  (explicit status)
//	P:{W}:pc:<hex>  zset conn → expiry ms              (a user's live streams)
//	P:{W}:ps        hash user → "status\x1fsince ms"   (last reported status)
//	P:{W}:ty:<hex chat>:<hex user>, …:tyo:…            typing state and its owner
func (l *Log) presenceKeys(ws, user string) []string {
	return []string{l.prefix + ":{" + ws + "}:pe", l.connsKey(ws, user), l.prefix + ":{" + ws + "}:ps"}
}

// connsKey is presenceKeys' second key alone, user's connections in ws:
// what the commands that touch only it need.
func (l *Log) connsKey(ws, user string) string {
	return l.prefix + ":{" + ws + "}:pc:" + hex.EncodeToString([]byte(user))
}

// presenceTTL keeps presence keys from outliving their workspace's use.
const presenceTTL = 24 * time.Hour

// settleLua computes the effective status of ARGV[1] and records a change
// in the shown hash. Returns {status, since ms, changed}.
const settleLua = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function settle(user, now, keep)
  local eff = 'offline'
  local ex = redis.call('HGET', KEYS[1], user)
  if ex then
    local st, exp = string.match(ex, '^(.-)\31(%d+)$')
    if exp and tonumber(exp) > now then eff = st else redis.call('HDEL', KEYS[1], user) end
  end
  if eff == 'offline' then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
    if redis.call('ZCARD', KEYS[2]) > 0 then eff = 'online' end
  end
  local shown, since = 'offline', now
  local sh = redis.call('HGET', KEYS[3], user)
  if sh then
    local s, t = string.match(sh, '^(.-)\31(%d+)$')
    if s then shown, since = s, tonumber(t) end
  end
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keep) end
  if shown == eff then return {eff, since, 0} end
  if eff == 'offline' then redis.call('HDEL', KEYS[3], user) else redis.call('HSET', KEYS[3], user, eff .. '\31' .. now) end
  return {eff, now, 1}
end
`

var (
	// ARGV user, status, ttl ms, keep ms
	setPresenceScript = redis.NewScript(settleLua + `
local now = now_ms()
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. (now + tonumber(ARGV[3])))
return settle(ARGV[1], now, ARGV[4])
`)
	// ARGV user, conn, ttl ms, keep ms
	openConnScript = redis.NewScript(settleLua + `
local now = now_ms()
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
return settle(ARGV[1], now, ARGV[4])
`)
	// ARGV user, keep ms
	settleScript = redis.NewScript(settleLua + `
return settle(ARGV[1], now_ms(), ARGV[2])
`)
	// KEYS typing, owner; ARGV token, ttl ms, on (1/0)
	setTypingScript = redis.NewScript(`
if ARGV[3] == '1' then
  local was = redis.call('EXISTS', KEYS[1])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]) + 60000)
  return 1 - was
end
local was = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
return was
`)
	// KEYS typing, owner; ARGV token. Returns {stopped, remaining ms}.
	expireTypingScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  -- Still ours and not yet expired by Redis's millisecond clock: PTTL can
  -- be 0 in the last millisecond, and 0 would mean "not ours, stop".
  if v == ARGV[1] then return {0, math.max(redis.call('PTTL', KEYS[1]), 1)} end
  return {0, 0}
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return {1, 0}
end
return {0, 0}
`)
)

func presenceReply(ws, user string, res []any, err error) (stream.Presence, bool, error) {
	if err != nil {
		return stream.Presence{}, false, unavailable("presence in "+ws, err)
	}
	if len(res) != 3 {
		return stream.Presence{}, false, fmt.Errorf("presence in %s: unexpected reply %v", ws, res)
	}
	st, _ := res[0].(string)
	since, _ := res[1].(int64)
	changed, _ := res[2].(int64)
	return stream.Presence{UserID: user, Status: st, Since: time.UnixMilli(since).UTC()}, changed == 1, nil
}

// SetPresence records user's explicit status for ttl; see stream.Memory.
func (l *Log) SetPresence(ctx context.Context, ws, user, status string, ttl time.Duration) (stream.Presence, bool, error) {
	res, err := setPresenceScript.Run(ctx, l.rdb, l.presenceKeys(ws, user), user, status, ttl.Milliseconds(), presenceTTL.Milliseconds()).Slice()
	return presenceReply(ws, user, res, err)
}

// OpenConn records a live stream connection of user.
func (l *Log) OpenConn(ctx context.Context, ws, user, conn string, ttl time.Duration) (stream.Presence, bool, error) {
	res, err := openConnScript.Run(ctx, l.rdb, l.presenceKeys(ws, user), user, conn, ttl.Milliseconds(), presenceTTL.Milliseconds()).Slice()
	return presenceReply(ws, user, res, err)
}

// OpenConns records each of conns, in order, as OpenConn does: pipelines
// of refreshChunk script calls (on a cluster go-redis sends each node its
// share, in order), so that a connect burst of thousands of streams costs
// a few round trips, not one per connection.
func (l *Log) OpenConns(ctx context.Context, conns []stream.ConnRef, ttl time.Duration) []stream.Opened {
	out := make([]stream.Opened, len(conns))
	for start := 0; start < len(conns); start += refreshChunk {
		chunk := conns[start:min(len(conns), start+refreshChunk)]
		cmds := runPipelined(ctx, l.rdb, openConnScript, len(chunk), func(i int) ([]string, []any) {
			c := chunk[i]
			return l.presenceKeys(c.Workspace, c.User), []any{c.User, c.Conn, ttl.Milliseconds(), presenceTTL.Milliseconds()}
		})
		for i, cmd := range cmds {
			res, err := cmd.Slice()
			o := &out[start+i]
			o.Presence, o.Changed, o.Err = presenceReply(chunk[i].Workspace, chunk[i].User, res, err)
		}
	}
	return out
}

// RefreshConns extends the life of the connections still recorded: one
// ZADD XX each, pipelined (on a cluster go-redis sends each node its
// share), so that a node's round over thousands of connections costs a
// few round trips, not one per connection.
func (l *Log) RefreshConns(ctx context.Context, conns []stream.ConnRef, ttl time.Duration) error {
	exp := float64(time.Now().Add(ttl).UnixMilli())
	for len(conns) > 0 {
		chunk := conns[:min(len(conns), refreshChunk)]
		conns = conns[len(chunk):]
		_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range chunk {
				p.ZAddXX(ctx, l.connsKey(c.Workspace, c.User), redis.Z{Score: exp, Member: c.Conn})
			}
			return nil
		})
		if err != nil {
			return unavailable("refresh presence", err)
		}
	}
	return nil
}

// refreshChunk bounds one RefreshConns pipeline, so that its replies are
// not all buffered at once.
const refreshChunk = 512

// CloseConn forgets a connection; the caller settles after a grace period.
func (l *Log) CloseConn(ctx context.Context, ws, user, conn string) error {
	if err := l.rdb.ZRem(ctx, l.connsKey(ws, user), conn).Err(); err != nil {
		return unavailable("close presence in "+ws, err)
	}
	return nil
}

// CloseConns forgets each of conns: one ZREM each, pipelined in
// refreshChunks, as RefreshConns sends its ZADDs.
func (l *Log) CloseConns(ctx context.Context, conns []stream.ConnRef) error {
	var first error
	for len(conns) > 0 {
		chunk := conns[:min(len(conns), refreshChunk)]
		conns = conns[len(chunk):]
		_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range chunk {
				p.ZRem(ctx, l.connsKey(c.Workspace, c.User), c.Conn)
			}
			return nil
		})
		if err != nil && first == nil {
			first = unavailable("close presence", err)
		}
	}
	return first
}

// SettlePresence recomputes user's status and reports a change.
func (l *Log) SettlePresence(ctx context.Context, ws, user string) (stream.Presence, bool, error) {
	res, err := settleScript.Run(ctx, l.rdb, l.presenceKeys(ws, user), user, presenceTTL.Milliseconds()).Slice()
	return presenceReply(ws, user, res, err)
}

// ListPresence returns who is present in ws now. It computes, and does
// not record: changes are reported by the operations that cause them.
func (l *Log) ListPresence(ctx context.Context, ws string) ([]stream.Presence, error) {
	keys := l.presenceKeys(ws, "")
	pipe := l.rdb.Pipeline()
	explicit := pipe.HGetAll(ctx, keys[0])
	shown := pipe.HGetAll(ctx, keys[2])
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable("list presence in "+ws, err)
	}
	users := map[string]bool{}
	for u := range explicit.Val() {
		users[u] = true
	}
	for u := range shown.Val() {
		users[u] = true
	}
	now := time.Now().UnixMilli()
	conns := map[string]*redis.IntCmd{}
	pipe = l.rdb.Pipeline()
	for u := range users {
		conns[u] = pipe.ZCount(ctx, l.connsKey(ws, u), strconv.FormatInt(now, 10), "+inf")
	}
	if len(conns) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, unavailable("list presence in "+ws, err)
		}
	}
	split := func(v string) (string, int64) {
		a, b, _ := strings.Cut(v, "\x1f")
		n, _ := strconv.ParseInt(b, 10, 64)
		return a, n
	}
	out := []stream.Presence{}
	for u := range users {
		eff := "offline"
		if st, exp := split(explicit.Val()[u]); st != "" && exp > now {
			eff = st
		} else if conns[u].Val() > 0 {
			eff = "online"
		}
		if eff == "offline" {
			continue
		}
		since := now
		if st, t := split(shown.Val()[u]); st == eff {
			since = t
		}
		out = append(out, stream.Presence{UserID: u, Status: eff, Since: time.UnixMilli(since).UTC()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

func (l *Log) typingKeys(ws, chat, user string) []string {
	base := l.prefix + ":{" + ws + "}:ty"
	tail := ":" + hex.EncodeToString([]byte(chat)) + ":" + hex.EncodeToString([]byte(user))
	return []string{base + tail, base + "o" + tail}
}

// SetTyping records that user is (or stopped) typing in chat; see
// stream.Memory.
func (l *Log) SetTyping(ctx context.Context, ws, chat, user, token string, typing bool, ttl time.Duration) (bool, error) {
	on := "0"
	if typing {
		on = "1"
	}
	n, err := setTypingScript.Run(ctx, l.rdb, l.typingKeys(ws, chat, user), token, ttl.Milliseconds(), on).Int()
	if err != nil {
		return false, unavailable("typing in "+ws, err)
	}
	return n == 1, nil
}

// ExpireTyping is called by the setter holding token when its ttl ran out.
func (l *Log) ExpireTyping(ctx context.Context, ws, chat, user, token string) (bool, time.Duration, error) {
	res, err := expireTypingScript.Run(ctx, l.rdb, l.typingKeys(ws, chat, user), token).Int64Slice()
	if err != nil || len(res) != 2 {
		return false, 0, unavailable("typing in "+ws, err)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}
