package stream

import (
	"fmt"
	"strings"
)

// maxTypePatterns bounds a ?types= filter.
const maxTypePatterns = 32

// ValidType reports whether t is a well-formed event type: dot-separated
// segments of [a-z0-9_-]. Types become the SSE "event:" field, so this also
// keeps CR, LF and NUL out of frames.
func ValidType(t string) bool { return validSegments(t, false) }

// ParseTypes parses a comma-separated list of type patterns such as
// "approval.*,chat.message". A "*" may only be the last segment, and
// matches every type that starts with what precedes it ("*" alone matches
// all). The empty string yields nil: no filter.
func ParseTypes(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxTypePatterns {
		return nil, fmt.Errorf("at most %d type patterns", maxTypePatterns)
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.Trim(p, " ")
		if !validSegments(p, true) {
			return nil, fmt.Errorf("bad type pattern %q: want dot-separated segments of [a-z0-9_-], with * only as the last", truncate(p))
		}
		out = append(out, p)
	}
	return out, nil
}

func validSegments(s string, wildcard bool) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	segs := strings.Split(s, ".")
	for i, seg := range segs {
		if seg == "*" && wildcard && i == len(segs)-1 {
			continue
		}
		if seg == "" {
			return false
		}
		for j := 0; j < len(seg); j++ {
			c := seg[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Continuous reports whether a reader at cursor after can continue without
// a hole in a log whose current epoch is epoch, whose newest event has seq
// head, and whose oldest retained event has seq first (head+1 when nothing
// is retained). It is the one definition of cursor expiry both
// implementations use.
func Continuous(after ID, epoch, head, first uint64) bool {
	if after.IsZero() {
		return true
	}
	return after.Epoch == epoch && after.Seq <= head && after.Seq+1 >= first
}

// ValidWorkspace reports whether id can name a workspace: 1-128 characters
// of [A-Za-z0-9_.:-], starting with a letter or digit. Ids become part of
// Redis keys (inside a {hash tag}) and of log lines, so no braces, spaces
// or control characters.
func ValidWorkspace(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '_' && c != '.' && c != ':' && c != '-')) {
			return false
		}
	}
	return true
}
