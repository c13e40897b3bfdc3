package stream

import "strings"

// Filter selects the events a reader may and wants to see.
type Filter struct {
	// Types are patterns from ParseTypes; empty means every type of the
	// log, and no ephemeral events.
	Types []string
	// UserID is the authenticated reader: events targeted at another user
	// never match.
	UserID string
}

// Match reports whether e passes the filter. Ephemeral events (presence,
// typing: the zero ID) are opt-in: they match only a pattern that names
// them, such as "presence.*", "typing.*" or "*", never the empty filter,
// so that a plain stream of a workspace of thousands is not sent every
// join and leave of the others.
func (f Filter) Match(e *Event) bool {
	if e.TargetUserID != "" && e.TargetUserID != f.UserID {
		return false
	}
	if len(f.Types) == 0 {
		return !e.ID.IsZero()
	}
	for _, p := range f.Types {
		if p == "*" || p == e.Type || (strings.HasSuffix(p, ".*") && strings.HasPrefix(e.Type, p[:len(p)-1])) {
			return true
		}
	}
	return false
}
