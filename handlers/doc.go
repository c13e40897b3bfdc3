// Package handlers is the HTTP side of the service: the router (routes.go
// lists the whole API surface, one line per openapi.yaml operation), one
// maker function per endpoint, and respond.go, the only place that encodes
// JSON responses and errors. It imports middleware, poll and stream, and it
// is not a public API.
package handlers
