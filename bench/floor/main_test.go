package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime/stream/redisstream/redistest"
)

// The tests run the tool as a child process, but the Redis test's client
// is in this one.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The floor tool runs end to end in each mode, on a small scale (it
// re-executes itself for its readers, so it runs as a built binary).
// Its figures are reported, never judged: machines differ.
func TestFloorRuns(t *testing.T) {
	bin := build(t)
	for _, tc := range []struct {
		args []string
		want *regexp.Regexp
	}{
		{[]string{"-mode", "write", "-n", "20", "-w", "4", "-rate", "50", "-duration", "200ms"},
			regexp.MustCompile(`(?m)^floor write: 20 subscribers over 4 workspaces, 10 events .* 50 frames of \d+ bytes$`)},
		{[]string{"-mode", "longpoll", "-n", "20"},
			regexp.MustCompile(`(?m)^floor longpoll: last answer read [\d.]+ ms after the release`)},
		// The publish floor's report is realtime bench's: answers counted,
		// none failed, and this server's CPU per event.
		{[]string{"-mode", "publish", "-c", "4", "-w", "10", "-duration", "500ms"},
			regexp.MustCompile(`(?s)batch=1\npublish: [1-9]\d* requests .*\nerrors: 0 \[\]\n.*\nserver: CPU [\d.]+s = [\d.]*[1-9][\d.]* µs per event`)},
		{[]string{"-mode", "publish", "-c", "4", "-w", "10", "-duration", "500ms", "-batch", "20"},
			regexp.MustCompile(`(?s)batch=20\npublish: [1-9]\d* requests .*\nerrors: 0 \[\]\n.*\nserver: CPU [\d.]+s = [\d.]*[1-9][\d.]* µs per event`)},
	} {
		out, err := exec.CommandContext(t.Context(), bin, tc.args...).CombinedOutput()
		if err != nil || !tc.want.Match(out) {
			t.Errorf("floor %v: %v\n%s\nwant a line matching %s", tc.args, err, out, tc.want)
		}
	}
}

// The Redis floor answers only what Redis stored: every answered publish
// is one entry in its workspace's stream, and the CPU it reports is the
// server's and Redis's.
func TestFloorRedisAppendsWhatItAnswers(t *testing.T) {
	bin := build(t)
	rs := redistest.Start(t)
	out, err := exec.CommandContext(t.Context(), bin, "-mode", "publish", "-redis", rs.URL(), "-c", "4", "-w", "3", "-duration", "500ms").CombinedOutput()
	if err != nil {
		t.Fatalf("floor: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^publish: (\d+) requests`).FindSubmatch(out)
	if m == nil || !regexp.MustCompile(`(?m)^server: CPU [\d.]+s = [\d.]*[1-9][\d.]* µs per event`).Match(out) {
		t.Fatalf("floor's report:\n%s", out)
	}
	answered, _ := strconv.Atoi(string(m[1]))
	rdb := rs.Client()
	stored := 0
	for _, ws := range []string{"ws0", "ws1", "ws2"} {
		// Entries added, not the length: MAXLEN ~ may have trimmed some.
		info, err := rdb.XInfoStream(t.Context(), "floor:{"+ws+"}:s").Result()
		if err != nil {
			t.Fatal(err)
		}
		stored += int(info.EntriesAdded)
	}
	if answered == 0 || stored != answered {
		t.Errorf("%d publishes answered, %d entries stored\n%s", answered, stored, out)
	}
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "floor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}
