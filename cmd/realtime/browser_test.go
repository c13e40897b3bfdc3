package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	appmw "github.com/realtime-dev/realtime/middleware"
	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// chromiumPath finds Debian's Chromium, or skips (fails under CI=true).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found under CI=true (.ci/run installs Debian's chromium)")
	}
	t.Skip("chromium not found; install Debian's chromium to run the browser tests")
	return ""
}

// browser is one headless Chromium for a test; every tab it opens is
// watched for console errors and uncaught exceptions, which fail the test.
type browser struct {
	t    *testing.T
	root context.Context

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 860),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, root: bctx}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("browser: %s", p)
		}
	})
	return b
}

// tab opens a new tab; script, if any, runs in every document before the
// page's own scripts.
func (b *browser) tab(script string) context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.root)
	b.t.Cleanup(cancel)
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.report("console error: " + strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.report("uncaught exception: " + msg)
		}
	})
	if err != nil {
		b.t.Fatal(err)
	}
	if script != "" {
		err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: script})
			return err
		}))
		if err != nil {
			b.t.Fatal(err)
		}
	}
	return ctx
}

func (b *browser) report(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, p)
}

// dashboardURL is the page for tok on ws, with client options shrunk so
// tests do not wait for production backoffs.
func dashboardURL(base, tok, ws string, opts string) string {
	return base + "/?" + opts + "#token=" + url.QueryEscape(tok) + "&workspace=" + url.QueryEscape(ws)
}

func navigate(t *testing.T, tab context.Context, u string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
}

// waitJS waits until expr is truthy in the page.
func waitJS(t *testing.T, tab context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, timeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(25*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('conn').dataset.state + ' / ' + document.getElementById('conn-text').textContent`))
		t.Fatalf("waiting for %s: %v (connection: %s)", what, err, state)
	}
}

func evalJS[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

const (
	isLive        = `document.getElementById('conn').dataset.state === 'live' && document.getElementById('conn').dataset.transport === 'sse'`
	isLivePolling = `document.getElementById('conn').dataset.state === 'live' && document.getElementById('conn').dataset.transport === 'polling'`
	connText      = `document.getElementById('conn-text').textContent`
)

func sel(id string) string { return strconv.Quote(id) }

// screenshot saves a PNG of the tab under the folder the README names
// (web/screenshots, or $REALTIME_SCREENSHOTS).
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	dir := os.Getenv("REALTIME_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "web", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

const fastClient = "initialDelay=300&maxDelay=2000&maxAttempts=10&firstFrameTimeout=1500&stallTimeout=20000"

func TestBrowserEachEventTypeChangesThePage(t *testing.T) {
	n := startNode(t, nil)
	b := newBrowser(t)
	u1, u2 := token(t, "u1", []string{"ws1"}), token(t, "u2", []string{"ws1"})
	tab1, tab2 := b.tab(""), b.tab("")
	navigate(t, tab1, dashboardURL(n.URL, u1, "ws1", fastClient))
	navigate(t, tab2, dashboardURL(n.URL, u2, "ws1", fastClient))
	waitJS(t, tab1, "live", isLive, 15*time.Second)
	waitJS(t, tab2, "live", isLive, 15*time.Second)
	if got := evalJS[string](t, tab1, connText); got != "Live" {
		t.Errorf("indicator %q; want Live", got)
	}
	// Record the classes cards are inserted with, to see the animation.
	evalJS[chromedp.Void](t, tab1, `window.__added = []; new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes) if (n.classList) window.__added.push(n.className); }).observe(document.getElementById('approvals'), {childList: true}); undefined`)

	n.publish(t, "ws1", `{"type":"approval.created","data":{"id":"a1","title":"Deploy to production","status":"pending","requestedBy":"Ada"}}`)
	card := `document.querySelector('#approvals [data-id="a1"]')`
	waitJS(t, tab1, "approval card", card+` !== null`, 10*time.Second)
	if added := evalJS[[]string](t, tab1, `window.__added`); len(added) != 1 || !strings.Contains(added[0], "enter") {
		t.Errorf("approval card inserted with classes %q; want the slide-in class 'enter'", added)
	}
	if got := evalJS[string](t, tab1, card+`.querySelector('.title').textContent`); got != "Deploy to production" {
		t.Errorf("card title %q", got)
	}

	evalJS[chromedp.Void](t, tab1, card+`.__marker = 'same element'; undefined`)
	n.publish(t, "ws1", `{"type":"approval.updated","data":{"id":"a1","status":"approved"}}`)
	waitJS(t, tab1, "status approved", card+`.dataset.status === 'approved'`, 10*time.Second)
	if got := evalJS[string](t, tab1, card+`.__marker + ' ' + document.querySelectorAll('#approvals .card').length`); got != "same element 1" {
		t.Errorf("after an update: %q; want the same card changed in place", got)
	}

	n.publish(t, "ws1", `{"type":"approval.deleted","data":{"id":"a1"}}`)
	waitJS(t, tab1, "card removed", card+` === null`, 10*time.Second)

	n.publish(t, "ws1", `{"type":"agent.status.changed","data":{"agentId":"ag1","name":"Indexer","status":"running"}}`)
	dot := `document.querySelector('#agents [data-agent="ag1"] .dot')`
	waitJS(t, tab1, "agent dot", dot+` !== null && `+dot+`.classList.contains('dot-running')`, 10*time.Second)
	n.publish(t, "ws1", `{"type":"agent.status.changed","data":{"agentId":"ag1","status":"error"}}`)
	waitJS(t, tab1, "agent dot error", dot+`.classList.contains('dot-error') && !`+dot+`.classList.contains('dot-running')`, 10*time.Second)

	n.publish(t, "ws1", `{"type":"notification.new","targetUserId":"u1","data":{"id":"n1","title":"For u1"}}`)
	n.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"general","id":"m1","author":"Grace","text":"hello there"}}`)
	msg := `document.querySelector('#chat [data-id="m1"]')`
	waitJS(t, tab1, "chat message", msg+` !== null && `+msg+`.textContent.includes('hello there')`, 10*time.Second)
	waitJS(t, tab2, "chat message on u2", msg+` !== null`, 10*time.Second)
	// The chat message came after the notification on the same stream, so
	// both pages have had the chance to count it.
	if got := evalJS[string](t, tab1, `document.getElementById('notif-badge').textContent`); got != "1" {
		t.Errorf("u1 badge %q; want 1", got)
	}
	if got := evalJS[string](t, tab2, `document.getElementById('notif-badge').classList.contains('hidden') + ' ' + document.getElementById('notif-badge').textContent`); got != "true 0" {
		t.Errorf("u2 badge %q; want hidden and 0 (the notification was for u1)", got)
	}
	n.publish(t, "ws1", `{"type":"approval.created","data":{"id":"a2","title":"Refund order #1042","status":"pending","requestedBy":"Grace"}}`)
	waitJS(t, tab1, "settled card", `(() => { const c = document.querySelector('#approvals [data-id="a2"]'); return c && !c.classList.contains('enter'); })()`, 10*time.Second)
	screenshot(t, tab1, "live")
}

// The dashboard shows who is here (GET .../presence at start, then the
// coalesced presence.changed events its stream asks for) and who is typing
// in the chat, and typing in its composer reaches another page.
func TestBrowserShowsPresenceAndTyping(t *testing.T) {
	env := map[string]string{"REALTIME_PRESENCE_GRACE": "300ms", "REALTIME_TYPING_TTL": "1s"}
	n := startNode(t, env)
	b := newBrowser(t)
	alice, bob := token(t, "alice", []string{"ws1"}), token(t, "bob", []string{"ws1"})
	// Carol was here before the page opened: only GET .../presence knows.
	carol := n.openStream(t, "ws1", token(t, "carol", []string{"ws1"}), "")
	carol.first(t)
	waitFor(t, func() bool { return strings.Contains(n.presence(t, "ws1", alice), "carol=online") })

	tab := b.tab("")
	navigate(t, tab, dashboardURL(n.URL, alice, "ws1", fastClient))
	waitJS(t, tab, "live", isLive, 15*time.Second)
	person := func(u string) string { return `document.querySelector('#people [data-user="` + u + `"]')` }
	waitJS(t, tab, "carol listed", person("carol")+` !== null && `+person("carol")+`.dataset.status === 'online'`, 10*time.Second)
	waitJS(t, tab, "alice listed", person("alice")+` !== null`, 10*time.Second)

	// Bob arrives, sets himself away, and types.
	bobStream := n.openStream(t, "ws1", bob, "")
	bobStream.first(t)
	waitJS(t, tab, "bob online", person("bob")+` !== null && `+person("bob")+`.dataset.status === 'online'`, 10*time.Second)
	if resp, body := do(t, "PUT", n.URL+"/v1/workspaces/ws1/presence", bob, `{"status":"away"}`); resp.StatusCode != 200 {
		t.Fatalf("PUT presence: %d %s", resp.StatusCode, body)
	}
	waitJS(t, tab, "bob away", person("bob")+`.dataset.status === 'away'`, 10*time.Second)
	if resp, body := do(t, "POST", n.URL+"/v1/workspaces/ws1/chats/general/typing", bob, `{"typing":true}`); resp.StatusCode != 200 {
		t.Fatalf("POST typing: %d %s", resp.StatusCode, body)
	}
	typing := `document.getElementById('typing').textContent`
	waitJS(t, tab, "bob typing", typing+` === 'bob is typing…'`, 10*time.Second)
	screenshot(t, tab, "presence")
	waitJS(t, tab, "bob stopped (the TTL)", typing+` === ''`, 10*time.Second)

	// Alice types in the composer; a watcher of bob's that asked for
	// typing sees it.
	watch := n.openStream(t, "ws1", bob, "types=typing.*")
	watch.first(t)
	evalJS[chromedp.Void](t, tab, `(() => { const i = document.getElementById('composer-text'); i.value = 'hel'; i.dispatchEvent(new Event('input')); })()`)
	if typ, d := watch.nextEphemeral(t); typ != "typing.started" || d["userId"] != "alice" || d["chatId"] != "general" {
		t.Fatalf("watcher got %s %v; want alice typing in general", typ, d)
	}

	// Carol leaves: gone from the page after the grace.
	carol.close()
	waitJS(t, tab, "carol gone", person("carol")+` === null`, 10*time.Second)
	if got := evalJS[string](t, tab, `document.getElementById('people-count').textContent`); got != "2" {
		t.Errorf("people count %q; want 2 (alice, bob)", got)
	}
}

// What `make run` serves: the dashboard signs itself in under --dev, and
// its simulate panel publishes every event type.
func TestBrowserDevDashboardSimulates(t *testing.T) {
	n := startNode(t, nil, "--dev")
	b := newBrowser(t)
	tab := b.tab("")
	navigate(t, tab, n.URL+"/")
	waitJS(t, tab, "live", isLive, 15*time.Second)
	if evalJS[bool](t, tab, `document.getElementById('simulate').classList.contains('hidden')`) {
		t.Fatal("the simulate panel is hidden in dev mode")
	}
	// Clicked from script: panels appear as events arrive, and a click by
	// coordinates could land on a button that has just moved.
	click := func(kind string) {
		t.Helper()
		evalJS[chromedp.Void](t, tab, `document.querySelector('[data-sim="`+kind+`"]').click()`)
	}
	for range 3 {
		click("approval.created")
	}
	waitJS(t, tab, "three approvals", `document.querySelectorAll('#approvals .card').length === 3`, 10*time.Second)
	click("approval.updated")
	waitJS(t, tab, "an approved card", `document.querySelector('#approvals .card[data-status="approved"]') !== null`, 10*time.Second)
	click("approval.deleted")
	waitJS(t, tab, "a withdrawn card", `document.querySelectorAll('#approvals .card:not([data-removed])').length === 2`, 10*time.Second)
	for range 3 {
		click("agent.status.changed")
	}
	waitJS(t, tab, "agents", `document.querySelectorAll('#agents .agent').length === 3`, 10*time.Second)
	click("notification.new")
	click("notification.other")
	click("chat.message")
	waitJS(t, tab, "chat", `document.querySelectorAll('#chat .msg').length === 1`, 10*time.Second)
	if got := evalJS[string](t, tab, `document.getElementById('notif-badge').textContent`); got != "1" {
		t.Errorf("badge %q; want 1 (the other notification is someone else's)", got)
	}
	waitJS(t, tab, "settled", `document.querySelectorAll('#approvals .enter, #approvals .leave').length === 0`, 10*time.Second)
	screenshot(t, tab, "dev")
}

// A node dies; the page shows reconnecting with growing delays; events are
// published on a second node meanwhile; the first comes back and the page
// is live with every missed event, none twice.
func TestBrowserReconnectsAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	env := redisEnv(srv)
	port := redistest.FreePort(t)
	env1 := map[string]string{"REALTIME_ADDR": fmt.Sprintf("127.0.0.1:%d", port)}
	for k, v := range env {
		env1[k] = v
	}
	n1, n2 := startNode(t, env1), startNode(t, env)
	b := newBrowser(t)
	tab := b.tab("")
	tok := token(t, "u1", []string{"ws1"})
	navigate(t, tab, dashboardURL(n1.URL, tok, "ws1", fastClient))
	waitJS(t, tab, "live", isLive, 15*time.Second)
	n2.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"g","id":"before","text":"before"}}`)
	waitJS(t, tab, "first message", `document.querySelector('#chat [data-id="before"]') !== null`, 10*time.Second)
	evalJS[chromedp.Void](t, tab, `window.__delays = []; new MutationObserver(() => { const c = document.getElementById('conn'); if (c.dataset.state === 'reconnecting') window.__delays.push([Number(c.dataset.attempt), Number(c.dataset.delay)]); }).observe(document.getElementById('conn'), {attributes: true, attributeFilter: ['data-delay', 'data-attempt', 'data-state']}); undefined`)

	if err := n1.stop(); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "three reconnect attempts", `window.__delays.some(([a]) => a >= 3)`, 20*time.Second)
	if !strings.HasPrefix(evalJS[string](t, tab, connText), "Reconnecting… (attempt ") {
		t.Errorf("indicator %q; want Reconnecting… (attempt n/10, next in s)", evalJS[string](t, tab, connText))
	}
	screenshot(t, tab, "reconnecting")
	delays := evalJS[[][2]float64](t, tab, `window.__delays`)
	last := map[float64]float64{}
	for _, d := range delays {
		last[d[0]] = d[1]
	}
	if !(last[1] < last[2] && last[2] < last[3]) {
		t.Errorf("reconnect delays by attempt %v; want them growing", last)
	}

	var missed []string
	for i := range 3 {
		id := fmt.Sprintf("missed-%d", i)
		n2.publish(t, "ws1", fmt.Sprintf(`{"type":"chat.message","data":{"chatId":"g","id":%q,"text":"while down"}}`, id))
		missed = append(missed, id)
	}
	startNode(t, env1) // the first node comes back on the same address
	waitJS(t, tab, "live again", isLive, 30*time.Second)
	for _, id := range append([]string{"before"}, missed...) {
		waitJS(t, tab, "message "+id, `document.querySelectorAll('#chat [data-id=`+sel(id)+`]').length === 1`, 10*time.Second)
	}
	n2.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"g","id":"after","text":"after"}}`)
	waitJS(t, tab, "live message", `document.querySelector('#chat [data-id="after"]') !== null`, 10*time.Second)
	if got := evalJS[int](t, tab, `document.querySelectorAll('#chat .msg').length`); got != 5 {
		t.Errorf("chat shows %d messages; want exactly 5 (none twice)", got)
	}
}

// After the last attempt the page says the connection is lost and offers
// Retry, which works once the server is back.
func TestBrowserGivesUpThenRetries(t *testing.T) {
	port := redistest.FreePort(t)
	env := map[string]string{"REALTIME_ADDR": fmt.Sprintf("127.0.0.1:%d", port)}
	n := startNode(t, env)
	b := newBrowser(t)
	tab := b.tab("")
	tok := token(t, "u1", []string{"ws1"})
	navigate(t, tab, dashboardURL(n.URL, tok, "ws1", "initialDelay=100&maxDelay=300&maxAttempts=3&firstFrameTimeout=1500"))
	waitJS(t, tab, "live", isLive, 15*time.Second)
	n.publish(t, "ws1", `{"type":"approval.created","data":{"id":"old","title":"Before the restart"}}`)
	waitJS(t, tab, "old card", `document.querySelector('#approvals [data-id="old"]') !== null`, 10*time.Second)
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "connection lost", `document.getElementById('conn').dataset.state === 'offline'`, 20*time.Second)
	if got := evalJS[string](t, tab, connText+` + ' | ' + !document.getElementById('retry').classList.contains('hidden') + ' | ' + !document.getElementById('rt-note').classList.contains('hidden')`); got != "Connection lost | true | true" {
		t.Errorf("offline page shows %q; want 'Connection lost', a Retry button and a note", got)
	}
	screenshot(t, tab, "lost")
	// It stays offline: no more attempts on its own.
	if got := evalJS[string](t, tab, `document.getElementById('conn').dataset.state`); got != "offline" {
		t.Fatalf("state %q after giving up", got)
	}
	n2 := startNode(t, env)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.ID("retry"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "live after Retry", isLive, 15*time.Second)
	// The embedded log restarted empty: the page was told to reset and
	// rebuilt itself from what the log holds now.
	waitJS(t, tab, "state rebuilt after sync.reset", `document.querySelector('#approvals [data-id="old"]') === null`, 10*time.Second)
	n2.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"g","id":"back","text":"back"}}`)
	waitJS(t, tab, "message after Retry", `document.querySelector('#chat [data-id="back"]') !== null`, 10*time.Second)
}

// switchingProxy buffers responses (streams never get through) until
// passThrough is set, then forwards them as they come.
type switchingProxy struct {
	*httptest.Server
	mu          sync.Mutex
	passThrough bool
}

func newSwitchingProxy(t *testing.T, target string) *switchingProxy {
	t.Helper()
	sp := &switchingProxy{}
	sp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := contractTransport{base: http.DefaultTransport, c: theContract()}.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		sp.mu.Lock()
		pass := sp.passThrough
		sp.mu.Unlock()
		// Nothing reaches the client before the first body write.
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if !pass {
			body, _ := io.ReadAll(resp.Body) // a stream ends only when the client leaves
			w.Write(body)
			return
		}
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			k, err := resp.Body.Read(buf)
			if k > 0 {
				w.Write(buf[:k])
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		sp.CloseClientConnections()
		sp.Close()
	})
	return sp
}

func (sp *switchingProxy) pass() {
	sp.mu.Lock()
	sp.passThrough = true
	sp.mu.Unlock()
}

// A page pushed to polling by a buffering proxy goes back to streaming by
// itself once streams get through, without losing or repeating an event.
func TestBrowserReturnsFromPollingToStreaming(t *testing.T) {
	n := startNode(t, nil)
	proxy := newSwitchingProxy(t, n.URL)
	b := newBrowser(t)
	tab := b.tab("")
	tok := token(t, "u1", []string{"ws1"})
	navigate(t, tab, dashboardURL(proxy.URL, tok, "ws1", fastClient+"&pollWait=2&streamRetryInterval=1000"))
	waitJS(t, tab, "live over polling", isLivePolling, 20*time.Second)
	n.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"g","id":"polled","text":"polled"}}`)
	waitJS(t, tab, "polled message", `document.querySelector('#chat [data-id="polled"]') !== null`, 15*time.Second)
	proxy.pass()
	waitJS(t, tab, "back to streaming", isLive, 20*time.Second)
	n.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"g","id":"streamed","text":"streamed"}}`)
	waitJS(t, tab, "streamed message", `document.querySelector('#chat [data-id="streamed"]') !== null`, 15*time.Second)
	if got := evalJS[int](t, tab, `document.querySelectorAll('#chat .msg').length`); got != 2 {
		t.Errorf("chat shows %d messages; want exactly 2", got)
	}
}

func TestBrowserWithoutEventSourcePolls(t *testing.T) {
	n := startNode(t, nil)
	b := newBrowser(t)
	tab := b.tab(`delete window.EventSource;`)
	tok := token(t, "u1", []string{"ws1"})
	navigate(t, tab, dashboardURL(n.URL, tok, "ws1", fastClient+"&pollWait=5"))
	waitJS(t, tab, "live over polling", isLivePolling, 15*time.Second)
	if got := evalJS[string](t, tab, connText+` + ' | ' + typeof window.EventSource`); got != "Live (polling) | undefined" {
		t.Errorf("page shows %q; want 'Live (polling)' without EventSource", got)
	}
	if evalJS[bool](t, tab, `document.getElementById('rt-note').classList.contains('hidden')`) {
		t.Error("no note says streaming is unavailable")
	}
	n.publish(t, "ws1", `{"type":"approval.created","data":{"id":"p1","title":"Over polling"}}`)
	n.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"g","id":"pm","text":"polled"}}`)
	waitJS(t, tab, "events over polling", `document.querySelector('#approvals [data-id="p1"]') !== null && document.querySelector('#chat [data-id="pm"]') !== null`, 15*time.Second)
	screenshot(t, tab, "polling")
}

// bufferingProxy forwards requests to target but holds each response body
// until it ends, as a misconfigured proxy does: a stream never gets through.
func bufferingProxy(t *testing.T, target string) *httptest.Server {
	t.Helper()
	return newSwitchingProxy(t, target).Server
}

func TestBrowserBufferingProxyFallsBackToPolling(t *testing.T) {
	n := startNode(t, nil)
	proxy := bufferingProxy(t, n.URL)
	b := newBrowser(t)
	tab := b.tab("")
	tok := token(t, "u1", []string{"ws1"})
	navigate(t, tab, dashboardURL(proxy.URL, tok, "ws1", fastClient+"&pollWait=5"))
	waitJS(t, tab, "live over polling", isLivePolling, 20*time.Second)
	n.publish(t, "ws1", `{"type":"chat.message","data":{"chatId":"g","id":"via-proxy","text":"through the proxy"}}`)
	waitJS(t, tab, "event through the proxy", `document.querySelector('#chat [data-id="via-proxy"]') !== null`, 15*time.Second)
	if got := evalJS[string](t, tab, connText); got != "Live (polling)" {
		t.Errorf("indicator %q; want Live (polling)", got)
	}
}

// The bundled client streams with tickets: no token is in any URL the
// page requests. With tokens that expire every few seconds, every event
// published meanwhile arrives once and in order across the renewals: the
// server ends each stream with auth.expired, the client calls getToken
// for a fresh token, buys a ticket with it and resumes from its last id.
func TestBrowserTicketsRenewAcrossExpiry(t *testing.T) {
	n := startNode(t, map[string]string{"REALTIME_JWT_LEEWAY": "0s"})
	// MinStreamLifetime is 5s: a ticket bought with a fresh token has 3s
	// to open its stream.
	const ttl = 8 * time.Second
	var minted atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := appmw.IssueToken([]byte(testSecret), appmw.TokenSpec{Subject: "u1", Workspaces: []string{"ws1"}, TTL: ttl}, time.Now())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		minted.Add(1)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, tok)
	}))
	defer idp.Close()

	b := newBrowser(t)
	tab := b.tab("")
	var (
		mu   sync.Mutex
		urls []string
	)
	err := chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			urls = append(urls, e.Request.Method+" "+e.Request.URL)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// A page of the service's origin without the dashboard: the client alone.
	navigate(t, tab, n.URL+"/healthz")
	evalJS[chromedp.Void](t, tab, `window.__got = []; window.__states = []; window.__tokens = 0;
import('/client/realtime.js').then(({ connect }) => {
  const rt = connect({ workspaceId: 'ws1', initialDelay: 200, maxDelay: 1000,
    getToken: async () => { window.__tokens++; return (await fetch(`+strconv.Quote(idp.URL)+`, { cache: 'no-store' })).text(); } });
  rt.on('*', (e) => window.__got.push(e.id));
  rt.onStatus((s) => window.__states.push(s.state + (s.transport ? '/' + s.transport : '') + (s.reason ? ':' + s.reason : '')));
  window.rt = rt;
}); undefined`)
	waitJS(t, tab, "live", `window.__states.includes('live/sse')`, 15*time.Second)

	var want []string
	deadline := time.Now().Add(2*ttl + 3*time.Second) // at least two expiries
	for i := 0; time.Now().Before(deadline); i++ {
		want = append(want, n.publish(t, "ws1", chat(i)).ID)
		time.Sleep(100 * time.Millisecond)
	}
	waitJS(t, tab, "every event", fmt.Sprintf(`window.__got.length >= %d`, len(want)), 20*time.Second)
	time.Sleep(300 * time.Millisecond) // a duplicate would come now; only the direction matters
	got := evalJS[[]string](t, tab, `window.__got`)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("page got %d events, want %d once each and in order:\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
	if tokens := evalJS[int](t, tab, `window.__tokens`); tokens < 3 {
		t.Fatalf("getToken called %d times; want a renewal per expiry (at least 3)", tokens)
	}
	states := evalJS[[]string](t, tab, `window.__states`)
	for _, s := range states {
		if s != "connecting" && s != "live/sse" {
			t.Errorf("status %q during renewals (%v); want the page live throughout", s, states)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var tickets, streams int
	for _, u := range urls {
		if strings.Contains(u, "access_token") || strings.Contains(u, "eyJ") {
			t.Errorf("a token in a URL the page requested: %s", u)
		}
		if strings.HasPrefix(u, "POST ") && strings.HasSuffix(u, "/v1/workspaces/ws1/stream-tickets") {
			tickets++
		}
		if strings.Contains(u, "/events/stream?") && strings.Contains(u, "ticket=") {
			streams++
		}
	}
	if tickets < 3 || streams < 3 {
		t.Errorf("%d ticket purchases and %d streams opened with a ticket; want one per renewal (at least 3):\n%s", tickets, streams, strings.Join(urls, "\n"))
	}
}
