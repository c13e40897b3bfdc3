// Package poll serves the polling reader of the event log: it parses a
// poll's query (cursor, limit, wait, types), reads the log after the cursor
// and, for long polls, waits on the node's hub until something arrives. It
// imports stream and never net/http: the handler owns the HTTP side. It is
// not a public API.
package poll
