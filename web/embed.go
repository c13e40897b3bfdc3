// Package web holds the browser side: realtime.js, the dependency-free
// client served at /client/realtime.js, and the dashboard served at /.
// The files are embedded into the binary; handlers serves them. It is not
// a public Go API.
package web

import "embed"

// Files are the browser files, by name.
//
//go:embed index.html app.js app.css realtime.js
var Files embed.FS
