// Package middleware holds the HTTP middleware of the service: JWT
// authentication (auth.go), request logging with request ids and token
// redaction (requestlog.go) and panic recovery (recover.go). It imports
// chi only to read route patterns, never handlers, and it is not a public
// API. Errors are written by a function the caller passes in, so that one
// function (handlers.writeError) owns the error format.
package middleware
