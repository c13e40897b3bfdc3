package stream_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/realtime-dev/realtime/stream"
	"github.com/realtime-dev/realtime/stream/streamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemory(t *testing.T) {
	streamtest.Run(t, streamtest.Harness{
		Features: streamtest.Features{ExactRetention: true},
		New: func(t *testing.T, retention int) stream.Log {
			l := stream.NewMemory(stream.MemoryConfig{Retention: retention})
			t.Cleanup(func() { l.Close() })
			return l
		},
		// A restarted process starts a new Memory: nothing of the old one
		// survives, and its epoch is new.
		LoseHistory: func(t *testing.T, l stream.Log) stream.Log {
			l.Close()
			n := stream.NewMemory(stream.MemoryConfig{})
			t.Cleanup(func() { n.Close() })
			return n
		},
	})
}

func TestMemoryLimiter(t *testing.T) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	streamtest.RunLimiter(t, l, l)
}

func TestMemoryTickets(t *testing.T) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	streamtest.RunTickets(t, l, l)
}

func TestMemoryPresence(t *testing.T) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	streamtest.RunPresence(t, l, l)
}

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// The embedded log's idempotency keys are bounded like its events: with a
// retention of 10, 20,000 idempotent publishes of 2 KB keep the newest
// 1,000 keys (replayed), forget the older ones, and hold a few MB, not the
// 162 MB they did.
func TestMemoryOnceKeysAreBounded(t *testing.T) {
	l := stream.NewMemory(stream.MemoryConfig{Retention: 10})
	defer l.Close()
	before := heapAfterGC()
	pad := strings.Repeat("x", 2000)
	var ids []stream.ID
	for i := range 20000 {
		e, _, err := l.AppendOnce(t.Context(), &stream.Event{Type: "chat.message", WorkspaceID: "ws1", Data: json.RawMessage(`{"pad":"` + pad + `"}`)},
			stream.Once{Key: fmt.Sprintf("k%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	if grew := int64(heapAfterGC()) - int64(before); grew > 16<<20 {
		t.Fatalf("20,000 idempotent publishes kept %d MB; want a bound near 1,000 keys' worth", grew>>20)
	}
	e, replayed, err := l.AppendOnce(t.Context(), &stream.Event{Type: "chat.message", WorkspaceID: "ws1", Data: json.RawMessage(`{}`)}, stream.Once{Key: "k19999"})
	if err != nil || !replayed || e.ID != ids[19999] {
		t.Fatalf("a recent key: replayed %v, id %v (want %v), err %v", replayed, e.ID, ids[19999], err)
	}
	if _, replayed, _ := l.AppendOnce(t.Context(), &stream.Event{Type: "chat.message", WorkspaceID: "ws1", Data: json.RawMessage(`{}`)}, stream.Once{Key: "k0"}); replayed {
		t.Fatal("the oldest key is still remembered past the bound")
	}
}

// Reading creates nothing: presence lists and heads of 50,000 unused
// workspaces leave the heap as it was.
func TestMemoryReadsCreateNoState(t *testing.T) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	before := heapAfterGC()
	for i := range 50000 {
		ws := fmt.Sprintf("unused-%d", i)
		if ps, err := l.ListPresence(t.Context(), ws); err != nil || len(ps) != 0 {
			t.Fatalf("ListPresence: %v %v", ps, err)
		}
		if _, err := l.Head(t.Context(), ws); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Read(t.Context(), ws, stream.ID{}, 10); err != nil {
			t.Fatal(err)
		}
		l.SettlePresence(t.Context(), ws, "u1")
		l.CloseConn(t.Context(), ws, "u1", "c1")
	}
	if grew := int64(heapAfterGC()) - int64(before); grew > 1<<20 {
		t.Fatalf("reading 50,000 unused workspaces kept %d KB", grew>>10)
	}
	// A workspace whose last user left is forgotten too.
	l.OpenConn(t.Context(), "ws", "u1", "c1", time.Minute)
	l.CloseConn(t.Context(), "ws", "u1", "c1")
	if p, changed, _ := l.SettlePresence(t.Context(), "ws", "u1"); !changed || p.Status != "offline" {
		t.Fatalf("settle after the last connection: %+v %v", p, changed)
	}
}
