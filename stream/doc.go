// Package stream defines the one event log that every reader of the service
// shares, and speaks only of logs, events and subscriptions:
//
//   - event.go, id.go, types.go, filter.go: the Event envelope (and its SSE
//     frame, rendered once), the ID (also the SSE id and the polling
//     cursor), type patterns and the Filter a reader sees the log through;
//   - log.go: the Log contract, with presence.go's PresenceStore and
//     limit.go's RateLimiter beside it (both logs implement all three);
//   - hub.go, subscription.go: the node-local Hub that fans live events out
//     to Subscriptions, whose Deliveries say what they are (Kind);
//   - direct.go: the one place where the fan-out writes straight to a
//     parked reader's connection, with its invariants and lock order;
//   - tail.go: Tail, catch-up from the log then live, exactly once;
//   - tracker.go: the PresenceTracker, which owns every presence timer and
//     coalesces announcements;
//   - memory.go: Memory, the embedded Log used when no Redis is configured.
//
// stream imports nothing of this module and nothing outside the standard
// library, so both implementations (Memory here, redisstream for Redis
// Streams) and both readers (the SSE handler and the poll package) depend on
// it and never on each other. Sockets are not its business: a DirectWriter
// is whatever the caller hands a Tail (handlers/sock). It is not a public
// API.
package stream
