package web_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestClientUnit runs realtime.js's unit tests (realtime.test.mjs) with
// Node's built-in test runner, so `go test ./...` covers the client's state
// machine as well as its behaviour in Chromium (cmd/realtime).
func TestClientUnit(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node not found under CI=true (.ci/run installs Debian's nodejs)")
		}
		t.Skip("node not found; install Node.js to run realtime.js's unit tests")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--test", "realtime.test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test realtime.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
