package stream_test

import (
	"testing"

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

func TestMemoryPresence(t *testing.T) {
	l := stream.NewMemory(stream.MemoryConfig{})
	defer l.Close()
	streamtest.RunPresence(t, l, l)
}
