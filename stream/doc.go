// Package stream defines the one event log that every reader of the service
// shares: the Event envelope, the ID (which is also the SSE id and the
// polling cursor), the Log contract, the node-local Hub that fans live events
// out to subscribers, and Memory, the embedded Log used when no Redis is
// configured.
//
// stream imports nothing of this module and nothing outside the standard
// library, so both implementations (Memory here, redisstream for Redis
// Streams) and both readers (the SSE handler and the poll package) depend on
// it and never on each other. It is not a public API.
package stream
