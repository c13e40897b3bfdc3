// Package redisstream implements stream.Log on Redis Streams, so that many
// stateless `realtime serve` processes share one log. It is the only
// package of this module that imports go-redis, and it is not a public API.
//
// Layout, per workspace W, under a configurable prefix P (default "rt"):
//
//	P:{W}:s   the stream; entry ids are "<seq>-0", one field b = the event body
//	P:{W}:m   a hash: e = epoch, s = seq of the newest event
//
// The braces are a Redis Cluster hash tag: both keys of a workspace live in
// one slot, so every operation on a workspace is one atomic Lua script. The
// stream's own ids are the per-workspace sequence numbers, which makes a
// trimmed cursor exact to detect (a hole before the oldest entry) without
// XINFO.
//
// Epochs: the meta hash is the witness of a workspace's history. When it
// is missing (FLUSHALL, a restart without persistence, eviction) or says
// events exist while the stream is gone, the next script to touch the
// workspace starts a new epoch from the Redis clock and drops any orphaned
// stream. Cursors of the old epoch are then reported expired.
//
// Live delivery: the append script also PUBLISHes the event on P:events.
// Each process holds one subscription to that channel (one connection,
// whatever the number of its subscribers) and feeds its stream.Hub in
// order. When that connection drops and comes back, the hub tells every
// reader to resync from the log, which is where nothing is ever missed.
package redisstream
