package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"
)

// clientFlags are the flags tail and publish share: where the service is
// and who we are.
type clientFlags struct {
	url       string
	token     string
	workspace string
	envToken  string // REALTIME_TOKEN, taken when --token is not given
}

func (c *clientFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	def := getenv("REALTIME_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&c.url, "url", def, "service URL (REALTIME_URL)")
	// Not the flag's default: -h prints defaults, and a token does not
	// belong in a terminal's scrollback.
	c.envToken = getenv("REALTIME_TOKEN")
	fs.StringVar(&c.token, "token", "", "bearer token (default: REALTIME_TOKEN)")
	fs.StringVar(&c.workspace, "workspace", getenv("REALTIME_WORKSPACE"), "workspace id (REALTIME_WORKSPACE)")
}

func (c *clientFlags) check() error {
	var problems []string
	if c.token == "" {
		c.token = c.envToken
	}
	if c.token == "" {
		problems = append(problems, "a token is required (--token or REALTIME_TOKEN)")
	}
	if c.workspace == "" {
		problems = append(problems, "--workspace is required")
	}
	if _, err := url.Parse(c.url); err != nil || !strings.HasPrefix(c.url, "http") {
		problems = append(problems, "--url must be an http(s) URL")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (c *clientFlags) endpoint(path string, q url.Values) string {
	u := strings.TrimSuffix(c.url, "/") + "/v1/workspaces/" + url.PathEscape(c.workspace) + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// post sends a JSON body to the workspace's path with the token, and the
// Idempotency-Key when idKey is set.
func (c *clientFlags) post(ctx context.Context, path string, body []byte, idKey string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path, nil), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	if idKey != "" {
		req.Header.Set("Idempotency-Key", idKey)
	}
	return http.DefaultClient.Do(req)
}

// problemError is a problem+json answer, as a CLI error.
type problemError struct {
	status int
	body   []byte
}

func (e *problemError) Error() string {
	var p struct{ Code, Detail string }
	if json.Unmarshal(e.body, &p) == nil && p.Code != "" {
		return fmt.Sprintf("%d %s: %s", e.status, p.Code, p.Detail)
	}
	return fmt.Sprintf("%d %s", e.status, http.StatusText(e.status))
}

// permanent reports whether retrying cannot help (bad token, no access,
// bad request).
func (e *problemError) permanent() bool { return e.status >= 400 && e.status < 500 && e.status != 429 }

// publish posts one event and prints it as stored.
func publishCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var (
		cf                                  clientFlags
		typ, data, target, corr, src, idKey string
		file                                string
		batch                               int
	)
	fs := flag.NewFlagSet("realtime publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf.register(fs, getenv)
	fs.StringVar(&typ, "type", "", "event type, e.g. chat.message (required without --file)")
	fs.StringVar(&data, "data", "", "the event's data, a JSON object (required without --file)")
	fs.StringVar(&target, "target", "", "only this user receives it (targetUserId)")
	fs.StringVar(&corr, "correlation-id", "", "correlation id (generated when empty)")
	fs.StringVar(&src, "source", "realtime-cli", "source")
	fs.StringVar(&idKey, "idempotency-key", "", "makes a retry append nothing (with --file: of each batch, suffixed -1, -2, ...)")
	fs.StringVar(&file, "file", "", `publish the events of a file of JSON lines, one event object per line ("-": stdin), in batches; each as it is written (--source and the others do not apply)`)
	fs.IntVar(&batch, "batch", 100, "events per request with --file (1-100)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cf.check(); err != nil {
		return err
	}
	if file != "" {
		if typ != "" || data != "" {
			return errors.New("--file takes its events from the file: drop --type and --data")
		}
		if batch < 1 || batch > 100 {
			return errors.New("--batch must be 1 to 100")
		}
		in := stdin
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		if in == nil {
			return errors.New("--file -: no standard input")
		}
		return publishLines(ctx, cf, in, batch, idKey, stdout)
	}
	if typ == "" || !json.Valid([]byte(data)) {
		return errors.New("--type and --data (a JSON object) are required")
	}
	fields := map[string]any{"type": typ, "data": json.RawMessage(data)}
	for k, v := range map[string]string{"targetUserId": target, "correlationId": corr, "source": src} {
		if v != "" {
			fields[k] = v
		}
	}
	body, _ := json.Marshal(fields)
	resp, err := cf.post(ctx, "/events", body, idKey)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return &problemError{status: resp.StatusCode, body: b}
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(b)))
	return nil
}

// publishLines publishes the JSON lines of in, batch events per request
// to the batch route, in order, and prints each stored event as a line.
// It stops at the first refused batch, saying which lines it held; the
// batches before it are stored.
func publishLines(ctx context.Context, cf clientFlags, in io.Reader, batch int, idKey string, stdout io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		pending   []json.RawMessage
		firstLine int
		line      int
		n         int
	)
	send := func() error {
		if len(pending) == 0 {
			return nil
		}
		n++
		body, _ := json.Marshal(map[string]any{"events": pending})
		key := ""
		if idKey != "" {
			key = fmt.Sprintf("%s-%d", idKey, n)
		}
		resp, err := cf.post(ctx, "/events/batch", body, key)
		if err != nil {
			return fmt.Errorf("publish lines %d-%d: %w", firstLine, line, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("lines %d-%d (nothing of them stored): %w", firstLine, line, &problemError{status: resp.StatusCode, body: b})
		}
		var ans struct{ Events []json.RawMessage }
		if err := json.Unmarshal(b, &ans); err != nil {
			return fmt.Errorf("lines %d-%d: answer: %w", firstLine, line, err)
		}
		for _, e := range ans.Events {
			fmt.Fprintln(stdout, string(e))
		}
		pending = pending[:0]
		return nil
	}
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if !json.Valid(text) || text[0] != '{' {
			return fmt.Errorf("line %d is not a JSON object", line)
		}
		if len(pending) == 0 {
			firstLine = line
		}
		pending = append(pending, append(json.RawMessage(nil), text...))
		if len(pending) == batch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return send()
}

// tailCmd prints a workspace's events until interrupted, resuming across
// drops from the last id it printed.
func tailCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var (
		cf      clientFlags
		types   string
		from    string
		usePoll bool
		format  string
	)
	fs := flag.NewFlagSet("realtime tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf.register(fs, getenv)
	fs.StringVar(&types, "types", "", "type filter, e.g. approval.*,chat.message")
	fs.StringVar(&from, "from", "", "resume after this event id (0: from the oldest retained); default: from now")
	fs.BoolVar(&usePoll, "poll", false, "use long polling instead of the SSE stream")
	fs.StringVar(&format, "format", "auto", "json (one event per line), text, or auto (text on a terminal)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cf.check(); err != nil {
		return err
	}
	if format == "auto" {
		format = "json"
		if f, ok := stdout.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format != "json" && format != "text" {
		return fmt.Errorf("--format must be json, text or auto")
	}
	out := &printer{w: stdout, text: format == "text"}
	var err error
	if usePoll {
		err = tailPoll(ctx, cf, types, from, out, stderr)
	} else {
		err = tailSSE(ctx, cf, types, from, out, stderr)
	}
	if ctx.Err() != nil {
		return nil // interrupted: a normal end
	}
	return err
}

// printer writes events as JSON lines or as readable lines.
type printer struct {
	w    io.Writer
	text bool
}

func (p *printer) event(raw []byte) {
	if !p.text {
		fmt.Fprintf(p.w, "%s\n", bytes.TrimSpace(raw))
		return
	}
	var e struct {
		ID, Type, TargetUserID, CorrelationID string
		Timestamp                             time.Time
		Data                                  json.RawMessage
	}
	if json.Unmarshal(raw, &e) != nil {
		fmt.Fprintf(p.w, "%s\n", raw)
		return
	}
	if e.ID == "" {
		e.ID = "(ephemeral)" // presence and typing: not in the log
	}
	to := ""
	if e.TargetUserID != "" {
		to = " → " + e.TargetUserID
	}
	fmt.Fprintf(p.w, "%s  %-22s %s%s  %s\n", e.Timestamp.Local().Format("15:04:05.000"), e.Type, e.ID, to, e.Data)
}

func (p *printer) reset(head string) {
	if p.text {
		fmt.Fprintf(p.w, "-- history lost: continuing after %s (refetch your state)\n", head)
		return
	}
	fmt.Fprintf(p.w, "{\"type\":\"sync.reset\",\"head\":%q}\n", head)
}

// tailSSE follows the stream with r3labs/sse. Its traps (see
// PROTOCOL-NOTES): the default backoff gives up after 15 minutes, and a
// stream that ends cleanly is not reconnected, so we bring our own backoff
// and an outer loop; LastEventID lives on the client across reconnects.
func tailSSE(ctx context.Context, cf clientFlags, types, from string, out *printer, stderr io.Writer) error {
	q := url.Values{}
	if types != "" {
		q.Set("types", types)
	}
	c := sse.NewClient(cf.endpoint("/events/stream", q), sse.ClientMaxBufferSize(1<<20))
	c.Headers["Authorization"] = "Bearer " + cf.token
	if from != "" {
		c.LastEventID.Store([]byte(from))
	}
	var fatal error
	c.ResponseValidator = func(_ *sse.Client, resp *http.Response) error {
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		pe := &problemError{status: resp.StatusCode, body: b}
		if pe.permanent() {
			fatal = pe
			return &backoff.PermanentError{Err: pe}
		}
		return pe
	}
	c.ReconnectNotify = func(err error, d time.Duration) {
		fmt.Fprintf(stderr, "tail: %v; reconnecting in %s\n", err, d.Round(time.Millisecond))
	}
	handle := func(msg *sse.Event) {
		switch string(msg.Event) {
		case "", "ready", "heartbeat":
			// Control frames; the client tracks ids itself.
		case "sync.reset":
			out.reset(string(msg.ID))
		default:
			out.event(msg.Data)
		}
	}
	for ctx.Err() == nil {
		b := backoff.NewExponentialBackOff()
		b.MaxElapsedTime = 0 // never give up on our own
		b.MaxInterval = 10 * time.Second
		c.ReconnectStrategy = backoff.WithContext(b, ctx)
		err := c.SubscribeRawWithContext(ctx, handle)
		if fatal != nil {
			return fatal
		}
		if ctx.Err() != nil {
			return nil
		}
		// A clean end (the server drained or shed us): come back shortly.
		if err != nil {
			fmt.Fprintf(stderr, "tail: %v\n", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// tailPoll follows the workspace by long polling.
func tailPoll(ctx context.Context, cf clientFlags, types, from string, out *printer, stderr io.Writer) error {
	cursor := from
	delay := 250 * time.Millisecond
	for ctx.Err() == nil {
		q := url.Values{}
		if cursor != "" {
			q.Set("cursor", cursor)
			q.Set("wait", "25")
		}
		if types != "" {
			q.Set("types", types)
		}
		page, err := pollOnce(ctx, cf, q)
		var pe *problemError
		switch {
		case errors.As(err, &pe) && pe.permanent():
			return pe
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(stderr, "tail: %v; retrying in %s\n", err, delay)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(delay*2, 10*time.Second)
			continue
		}
		delay = 250 * time.Millisecond
		if page.Reset {
			out.reset(page.NextCursor)
		}
		for _, e := range page.Events {
			out.event(e)
		}
		cursor = page.NextCursor
	}
	return nil
}

type pollPage struct {
	Events     []json.RawMessage `json:"events"`
	NextCursor string            `json:"nextCursor"`
	HasMore    bool              `json:"hasMore"`
	Reset      bool              `json:"reset"`
}

func pollOnce(ctx context.Context, cf clientFlags, q url.Values) (pollPage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cf.endpoint("/events", q), nil)
	if err != nil {
		return pollPage{}, err
	}
	req.Header.Set("Authorization", "Bearer "+cf.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pollPage{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return pollPage{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return pollPage{}, &problemError{status: resp.StatusCode, body: b}
	}
	var p pollPage
	if err := json.Unmarshal(b, &p); err != nil {
		return pollPage{}, fmt.Errorf("poll answer: %w", err)
	}
	return p, nil
}
