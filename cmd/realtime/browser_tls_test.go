package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// tlsNode starts `realtime serve` with a test certificate (REALTIME_TLS_CERT
// and _KEY) and env; its URL is https.
func tlsNode(t *testing.T, env map[string]string) *node {
	t.Helper()
	full := map[string]string{}
	for k, v := range env {
		full[k] = v
	}
	return startH2Node(t, "tls", full)
}

// openStreams opens one EventSource per workspace in the page; each records
// when it is ready and the ids of the events it receives.
const openStreamsJS = `(() => {
  window.__ready = 0; window.__got = {};
  for (const ws of %s) {
    const es = new EventSource(%q + '/v1/workspaces/' + ws + '/events/stream?access_token=' + %q);
    window.__got[ws] = [];
    es.addEventListener('ready', () => { window.__ready++; });
    es.addEventListener('chat.message', (e) => { window.__got[ws].push(e.lastEventId); });
    (window.__es = window.__es || []).push(es);
  }
})()`

func workspaces(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "ws" + strconv.Itoa(i)
	}
	return out
}

func jsList(ss []string) string { return `["` + strings.Join(ss, `","`) + `"]` }

// Over TLS the browser speaks HTTP/2 and one page holds 10 streams to 10
// workspaces at once, all delivering; over HTTP/1 the same page gets six
// (the per-host connection limit) and the seventh waits until one closes.
func TestBrowserTenStreamsOverHTTP2(t *testing.T) {
	b := newBrowser(t, chromedp.Flag("ignore-certificate-errors", true))
	wss := workspaces(10)
	tok := token(t, "u1", wss)

	n := tlsNode(t, nil)
	tab := b.tab("")
	navigate(t, tab, n.URL+"/healthz")
	if proto := evalJS[string](t, tab, `performance.getEntriesByType('navigation')[0].nextHopProtocol`); proto != "h2" {
		t.Fatalf("page loaded over %q; want h2", proto)
	}
	evalJS[chromedp.Void](t, tab, fmt.Sprintf(openStreamsJS, jsList(wss), n.URL, tok))
	waitJS(t, tab, "10 streams ready", `window.__ready === 10`, 15*time.Second)
	ids := map[string]string{}
	for _, ws := range wss {
		ids[ws] = n.publish(t, ws, chat(1)).ID
	}
	waitJS(t, tab, "an event on each stream", `Object.values(window.__got).every((g) => g.length === 1)`, 15*time.Second)
	for _, ws := range wss {
		if got := evalJS[[]string](t, tab, `window.__got[`+strconv.Quote(ws)+`]`); len(got) != 1 || got[0] != ids[ws] {
			t.Errorf("%s got %v; want [%s]", ws, got, ids[ws])
		}
	}
	if protos := evalJS[[]string](t, tab, `[...new Set(performance.getEntriesByType('resource').map((e) => e.nextHopProtocol))]`); len(protos) > 1 || (len(protos) == 1 && protos[0] != "h2") {
		t.Errorf("streams over %v; want h2 only", protos)
	}

	// The same page over HTTP/1.
	h1 := startNode(t, nil)
	tab1 := b.tab("")
	navigate(t, tab1, h1.URL+"/healthz")
	evalJS[chromedp.Void](t, tab1, fmt.Sprintf(openStreamsJS, jsList(wss), h1.URL, tok))
	waitJS(t, tab1, "six streams ready", `window.__ready === 6`, 15*time.Second)
	for _, ws := range wss {
		h1.publish(t, ws, chat(1))
	}
	waitJS(t, tab1, "six streams deliver", `Object.values(window.__got).filter((g) => g.length === 1).length === 6`, 15*time.Second)
	time.Sleep(time.Second) // the seventh would have had time to open
	if ready := evalJS[int](t, tab1, `window.__ready`); ready != 6 {
		t.Fatalf("over HTTP/1 %d streams ready; want 6 (the browser's limit per host)", ready)
	}
	evalJS[chromedp.Void](t, tab1, `window.__es.find((es) => es.readyState === EventSource.OPEN).close()`)
	waitJS(t, tab1, "the seventh opens once one closes", `window.__ready === 7`, 15*time.Second)
}

// crossOriginPage is a page of another origin that loads the client script
// from the service, streams with it and polls with it (EventSource: null
// forces polling), and records what happens.
const crossOriginPage = `<!doctype html><meta charset="utf-8"><title>other origin</title>
<script type="module">
const api = new URLSearchParams(location.search).get('api');
const token = new URLSearchParams(location.search).get('token');
window.__log = { events: {sse: [], polling: []}, status: {} };
import(api + '/client/realtime.js').then(({ connect }) => {
  window.__log.loaded = true;
  for (const [name, extra] of [['sse', {}], ['polling', { EventSource: null, pollWait: 2 }]]) {
    const rt = connect({ baseUrl: api, workspaceId: 'ws1', token, initialDelay: 200, maxDelay: 1000, ...extra });
    rt.onStatus((s) => { window.__log.status[name] = s.state + '/' + (s.transport || ''); });
    rt.on('chat.message', (e) => window.__log.events[name].push(e.id));
  }
}, (err) => { window.__log.importError = String(err); });
// Without the client: a plain poll and a plain stream.
fetch(api + '/v1/workspaces/ws1/events', { headers: { Authorization: 'Bearer ' + token } })
  .then((r) => { window.__log.fetch = 'status ' + r.status; }, (err) => { window.__log.fetch = 'error ' + err.name; });
const es = new EventSource(api + '/v1/workspaces/ws1/events/stream?access_token=' + token);
es.addEventListener('ready', () => { window.__log.es = 'ready'; });
es.onerror = () => { if (!window.__log.es) window.__log.es = 'error'; es.close(); };
</script>`

// A page on another origin allowed by REALTIME_CORS_ORIGINS loads the
// client script, streams and polls (over TLS); a page on an origin not
// allowed can do none of it.
func TestBrowserCrossOrigin(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, crossOriginPage)
	})
	allowed, denied := httptest.NewServer(page), httptest.NewServer(page)
	defer allowed.Close()
	defer denied.Close()
	n := tlsNode(t, map[string]string{"REALTIME_CORS_ORIGINS": allowed.URL})
	b := newBrowser(t, chromedp.Flag("ignore-certificate-errors", true))
	tok := token(t, "u1", []string{"ws1"})
	pageURL := func(base string) string { return base + "/?api=" + n.URL + "&token=" + tok }

	tab := b.tab("")
	navigate(t, tab, pageURL(allowed.URL))
	waitJS(t, tab, "client script loaded", `window.__log.loaded === true`, 15*time.Second)
	waitJS(t, tab, "streaming and polling", `window.__log.status.sse === 'live/sse' && window.__log.status.polling === 'live/polling'`, 15*time.Second)
	id := n.publish(t, "ws1", chat(1)).ID
	waitJS(t, tab, "the event by both", `window.__log.events.sse.length === 1 && window.__log.events.polling.length === 1`, 15*time.Second)
	if got := evalJS[[]string](t, tab, `[window.__log.events.sse[0], window.__log.events.polling[0], window.__log.fetch, window.__log.es]`); strings.Join(got, " ") != id+" "+id+" status 200 ready" {
		t.Errorf("allowed origin: %q; want the event %s by stream and poll, a plain poll's 200 and a ready stream", got, id)
	}

	other := b.tab("")
	navigate(t, other, pageURL(denied.URL))
	waitJS(t, other, "all three refused", `window.__log.importError !== undefined && window.__log.fetch !== undefined && window.__log.es !== undefined`, 15*time.Second)
	if got := evalJS[[]string](t, other, `[String(window.__log.loaded), window.__log.fetch, window.__log.es]`); strings.Join(got, " ") != "undefined error TypeError error" {
		t.Errorf("origin not allowed: loaded, fetch, stream = %q; want the script, the poll and the stream refused", got)
	}
}
