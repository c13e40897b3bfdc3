// Command realtime serves workspace events as Server-Sent Events and cursor
// polling over one event log. `realtime serve` runs the service; `realtime
// token` mints a token for curl; `realtime tail` and `realtime publish` are
// its command-line client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		smallStacks()
	}
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "realtime: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage:
  realtime serve [flags]     run the service (realtime serve -h for flags)
  realtime token [flags]     mint a token from REALTIME_JWT_SECRET
  realtime tail [flags]      print a workspace's events as they happen (--poll: by long polling)
  realtime publish [flags]   publish one event, or a file of them (--file)
  realtime bench [flags]     load-test a running service (steady, burst, resume, longpoll, publish)
  realtime version           print the version (also --version)
Each command takes -h.
`

// smallStacks restarts the process (same pid, same arguments) with
// GODEBUG=adaptivestackstart=0 unless the operator set that knob. A node
// holds two goroutines per open stream that stay shallow (one waits in
// conn.Read, one in a select); adaptive initial stacks start every new
// goroutine at the average size seen by the last GC, which deep request
// handlers inflate. Measured with sseload scenario (b), 10,000 streams:
// about 3 KiB less RSS per stream. The setting is read only at process
// start (neither //go:debug nor os.Setenv can change it), hence the exec.
func smallStacks() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "adaptivestackstart=") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	os.Setenv("GODEBUG", godebug+"adaptivestackstart=0")
	syscall.Exec(exe, os.Args, os.Environ()) // returns only on failure: run as we are
}

// run dispatches the subcommand. Tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command")
	}
	var err error
	switch args[1] {
	case "serve":
		err = serve(ctx, args[2:], getenv, stdout, stderr)
	case "token":
		err = mintToken(args[2:], getenv, stdout, stderr)
	case "tail":
		err = tailCmd(ctx, args[2:], getenv, stdout, stderr)
	case "publish":
		err = publishCmd(ctx, args[2:], getenv, stdin, stdout, stderr)
	case "bench":
		err = benchCmd(ctx, args[2:], getenv, stdout, stderr)
	case "version", "--version", "-version":
		printVersion(stdout)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[1])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h: the command printed its help, and asking for it is no failure
	}
	return err
}
