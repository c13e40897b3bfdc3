package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/realtime-dev/realtime/handlers"
)

// version is set at link time by a release build:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/realtime
//
// Without it, the module version the go command stamped (a tag, or a
// pseudo-version from the VCS) is used, or "devel".
var version string

// buildVersion describes this binary from version and the build info the
// go command embeds (the VCS revision, its time, and whether the tree had
// uncommitted changes).
func buildVersion() handlers.BuildInfo {
	b := handlers.BuildInfo{Version: version, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// printVersion is `realtime version` and `realtime --version`.
func printVersion(w io.Writer) {
	b := buildVersion()
	fmt.Fprintf(w, "realtime %s", b.Version)
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(w, " (%s", rev)
		if b.Modified {
			fmt.Fprint(w, ", modified")
		}
		if b.Time != "" {
			fmt.Fprintf(w, ", %s", b.Time)
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintf(w, " %s\n", b.GoVersion)
}
