package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// The floor tool runs end to end in each mode, on a small scale (it
// re-executes itself for its readers, so it runs as a built binary).
// Its figures are reported, never judged: machines differ.
func TestFloorRuns(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "floor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
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
