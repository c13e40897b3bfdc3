package redisstream

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// groupCommit sends the appends that callers make concurrently on this
// node to Redis together. The first caller to find no round trip in flight
// leads: it takes every append queued (its own first), sends them as one
// pipeline (one write and one read on each side, instead of one of each
// per append), answers each, and, when more were queued meanwhile, hands
// the lead to the oldest of them. Each append is still its own script call,
// run by Redis in queue order, so appends to one workspace keep the order
// in which they were queued, and each caller is answered only once Redis
// has run its script.
//
// No goroutine of its own: the leader is always a caller, so there is
// nothing to stop, and an idle node costs nothing.
type groupCommit struct {
	rdb    redis.UniversalClient
	script *redis.Script
	max    int // appends per round trip

	mu    sync.Mutex
	queue []*commitReq
	busy  bool // a leader owns the queue's next round trip
}

// commitReq is one queued append.
type commitReq struct {
	keys []string
	args []any

	// Set under groupCommit.mu by the leader.
	taken bool // in a leader's batch: no longer removable
	lead  bool // handed the lead: its caller runs the next batch
	wake  chan struct{}

	// Set by the leader before wake is signalled.
	res []any
	err error
}

func newGroupCommit(rdb redis.UniversalClient, script *redis.Script, max int) *groupCommit {
	return &groupCommit{rdb: rdb, script: script, max: max}
}

// run executes the script once with keys and args, together with whatever
// other appends are in flight, and returns its reply. When ctx ends before
// the append was sent, it is withdrawn and ctx's error returned; once sent,
// run waits for its reply (bounded by the client's timeouts), since it may
// have executed.
func (g *groupCommit) run(ctx context.Context, keys []string, args ...any) ([]any, error) {
	r := &commitReq{keys: keys, args: args, wake: make(chan struct{}, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if !g.busy {
		g.busy = true
		g.mu.Unlock()
		g.lead()
		return r.res, r.err
	}
	g.mu.Unlock()
	select {
	case <-r.wake:
	case <-ctx.Done():
		g.mu.Lock()
		if !r.taken && !r.lead {
			g.withdrawLocked(r)
			g.mu.Unlock()
			return nil, ctx.Err()
		}
		g.mu.Unlock()
		<-r.wake
	}
	if r.lead {
		g.lead()
	}
	return r.res, r.err
}

func (g *groupCommit) withdrawLocked(r *commitReq) {
	for i, q := range g.queue {
		if q == r {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			return
		}
	}
}

// lead runs one batch, starting with the oldest queued append (the
// caller's own), then hands the lead on or gives it up.
func (g *groupCommit) lead() {
	g.mu.Lock()
	n := min(len(g.queue), g.max)
	batch := make([]*commitReq, n)
	copy(batch, g.queue)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	for _, r := range batch {
		r.taken = true
	}
	g.mu.Unlock()

	g.send(batch)

	g.mu.Lock()
	if len(g.queue) == 0 {
		g.busy = false
	} else {
		next := g.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	}
	g.mu.Unlock()
	// Answer the batch only now: the leader's own request is batch[0],
	// answered by returning, and the others may start new appends at once.
	for _, r := range batch[1:] {
		r.wake <- struct{}{}
	}
}

// send runs batch as one pipeline (runPipelined), each append answered
// with its own reply or error.
func (g *groupCommit) send(batch []*commitReq) {
	// The appends are the callers' and outlive none of them, but one
	// caller's cancellation must not fail the others': the client's own
	// timeouts bound the round trip.
	ctx := context.Background()
	if len(batch) == 1 {
		r := batch[0]
		r.res, r.err = g.script.Run(ctx, g.rdb, r.keys, r.args...).Slice()
		return
	}
	cmds := runPipelined(ctx, g.rdb, g.script, len(batch), func(i int) ([]string, []any) { return batch[i].keys, batch[i].args })
	for i, r := range batch {
		r.res, r.err = cmds[i].Slice()
	}
}

// runPipelined runs script n times, call i with the keys and args call(i)
// returns, as one pipeline of EVALSHA; the calls Redis did not run because
// it did not know the script (after a restart or SCRIPT FLUSH) are sent
// again with the script's body. Redis runs a node's calls in their order;
// those sent again run after the rest, which reorders them only when the
// script became known in the middle of the pipeline (another client
// loaded it after a restart). The group commit's appends are concurrent
// callers', in no order among themselves; the tracker's joins are one per
// user. The replies are in call order, each with its own error.
func runPipelined(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, n int, call func(i int) ([]string, []any)) []*redis.Cmd {
	cmds := pipelineScript(ctx, rdb, script, n, call, true)
	var again []int
	for i, c := range cmds {
		if noScript(c.Err()) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		redo := pipelineScript(ctx, rdb, script, len(again), func(j int) ([]string, []any) { return call(again[j]) }, false)
		for j, i := range again {
			cmds[i] = redo[j]
		}
	}
	return cmds
}

func pipelineScript(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, n int, call func(i int) ([]string, []any), sha bool) []*redis.Cmd {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, n)
	for i := range n {
		keys, args := call(i)
		if sha {
			cmds[i] = script.EvalSha(ctx, pipe, keys, args...)
		} else {
			cmds[i] = script.Eval(ctx, pipe, keys, args...)
		}
	}
	// Each command's error is read from it.
	_, _ = pipe.Exec(ctx)
	return cmds
}

func noScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
