package handlers

import (
	"bytes"
	"html"
	"net/http"
	"net/netip"

	"github.com/realtime-dev/realtime/web"
)

// contentSecurityPolicy lets the dashboard load only its own files and talk
// only to its own origin.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"

// handleDashboard serves the dashboard. With a dev token configured (only
// under --dev) the page carries it, so it signs itself in.
func handleDashboard(devToken string) http.Handler {
	page, err := web.Files.ReadFile("index.html")
	if err != nil {
		panic(err) // embedded at build time
	}
	plain := page
	if devToken != "" {
		meta := `<meta name="realtime-dev-token" content="` + html.EscapeString(devToken) + `">`
		page = bytes.Replace(page, []byte("<!--realtime:dev-->"), []byte(meta), 1)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := page
		if !fromLoopback(r) {
			page = plain // the dev token goes to this machine's browsers only
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Cache-Control", "no-store") // it may carry a dev token
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		w.Write(page)
	})
}

// fromLoopback reports whether r came from this machine.
func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// handleAsset serves one embedded file.
func handleAsset(name, contentType string) http.Handler {
	b, err := web.Files.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		w.Write(b)
	})
}
