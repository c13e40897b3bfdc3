package stream

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ID identifies an event in a workspace log. It is the SSE id, the
// Last-Event-ID and the polling cursor.
//
// Epoch names one life of a workspace log: it changes whenever the log's
// history is lost (Redis flushed or restarted without persistence, the
// embedded log restarted), so a cursor from an older life is recognised as
// such rather than compared with ids that merely look larger. Seq numbers the
// events of one epoch 1, 2, 3, ... with no holes, which is what lets a reader
// tell history trimmed by retention (a hole before the oldest retained event)
// from a quiet workspace.
//
// The zero ID is the cursor "0": "from the oldest retained event".
type ID struct {
	Epoch uint64
	Seq   uint64
}

// maxIDLen bounds what ParseID looks at; real ids are about 20 bytes.
const maxIDLen = 64

// ErrMalformedID reports a cursor or Last-Event-ID that is not an ID.
var ErrMalformedID = errors.New("malformed event id")

// String formats the id as "<epoch base36>-<seq>", or "0" for the zero ID.
// Clients treat it as opaque.
func (id ID) String() string {
	if id.IsZero() {
		return "0"
	}
	var b [32]byte
	return string(id.append(b[:0]))
}

func (id ID) append(b []byte) []byte {
	if id.IsZero() {
		return append(b, '0')
	}
	b = strconv.AppendUint(b, id.Epoch, 36)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// AppendText implements encoding.TextAppender.
func (id ID) AppendText(b []byte) ([]byte, error) { return id.append(b), nil }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return id.append(nil), nil }

// IsZero reports whether id is the "from the oldest" cursor.
func (id ID) IsZero() bool { return id == ID{} }

// Next returns the id that directly follows id in the same epoch.
func (id ID) Next() ID { return ID{Epoch: id.Epoch, Seq: id.Seq + 1} }

// startsEpochAfter reports whether id is the first event of an epoch newer
// than prev's. Epochs are numbered from the store's clock, so a newer one
// is larger; an older or equal one is not a successor.
func (id ID) startsEpochAfter(prev ID) bool { return id.Seq == 1 && id.Epoch > prev.Epoch }

// ParseID parses the output of ID.String. It accepts "0" (the zero ID) and
// "<epoch base36>-<seq>" with a non-zero epoch, and nothing else: no signs,
// no spaces, no leading zeros, so every id has exactly one spelling.
func ParseID(s string) (ID, error) {
	if s == "0" {
		return ID{}, nil
	}
	if len(s) == 0 || len(s) > maxIDLen {
		return ID{}, fmt.Errorf("parse id %q: %w", truncate(s), ErrMalformedID)
	}
	es, ss, ok := strings.Cut(s, "-")
	if !ok || !canonical(es, 36) || !canonical(ss, 10) {
		return ID{}, fmt.Errorf("parse id %q: %w", truncate(s), ErrMalformedID)
	}
	epoch, err1 := strconv.ParseUint(es, 36, 64)
	seq, err2 := strconv.ParseUint(ss, 10, 64)
	if err1 != nil || err2 != nil || epoch == 0 {
		return ID{}, fmt.Errorf("parse id %q: %w", truncate(s), ErrMalformedID)
	}
	return ID{Epoch: epoch, Seq: seq}, nil
}

// canonical reports whether s is a non-empty run of lowercase digits of the
// base without a redundant leading zero.
func canonical(s string, base int) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case base == 36 && c >= 'a' && c <= 'z':
		default:
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
