package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a local Redis Cluster of masters, built from Debian's
// redis-server and `redis-cli --cluster create`.
type Cluster struct {
	Nodes []*Server
}

// clusterPort finds a port that is free together with its cluster bus
// port (port+10000), below the range where +10000 would overflow.
func clusterPort(tb testing.TB, taken map[int]bool) int {
	tb.Helper()
	for range 200 {
		p := 20000 + rand.IntN(20000)
		if taken[p] || taken[p+10000] {
			continue
		}
		ok := true
		for _, q := range []int{p, p + 10000} {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			taken[p] = true
			return p
		}
	}
	tb.Fatal("no free port pair for a cluster node")
	return 0
}

// StartCluster starts n masters, joins them into a cluster, and stops them
// when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	bin := Binary(tb)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatalf("redis-cli not found: %v", err)
	}
	c := &Cluster{}
	taken := map[int]bool{}
	var addrs []string
	for range n {
		s := &Server{tb: tb, bin: bin, Port: clusterPort(tb, taken), dir: tb.TempDir()}
		s.args = []string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port), "--save", "", "--appendonly", "no",
			"--dir", s.dir, "--logfile", s.dir + "/redis.log", "--loglevel", "warning",
			"--cluster-enabled", "yes", "--cluster-config-file", s.dir + "/nodes.conf", "--cluster-node-timeout", "5000",
		}
		s.start()
		tb.Cleanup(s.Kill)
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node agrees the cluster is up.
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		cl := s.Client()
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster not ok on %s: %v %s", s, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c.waitMesh(tb)
	return c
}

// waitMesh waits until a message published on any node reaches a
// subscriber on every other: "cluster_state:ok" comes before all the
// cluster bus links are up, and PUBLISH travels over them.
func (c *Cluster) waitMesh(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	var subs []*redis.PubSub
	for _, s := range c.Nodes {
		ps := s.Client().Subscribe(ctx, "redistest:mesh")
		if _, err := ps.Receive(ctx); err != nil {
			tb.Fatalf("subscribe on %s: %v", s, err)
		}
		tb.Cleanup(func() { ps.Close() })
		subs = append(subs, ps)
	}
	deadline := time.Now().Add(30 * time.Second)
	for round := 0; ; round++ {
		for i, s := range c.Nodes {
			s.Client().Publish(ctx, "redistest:mesh", fmt.Sprintf("%d:%d", round, i))
		}
		all := true
		for _, ps := range subs {
			seen := map[string]bool{}
			for len(seen) < len(c.Nodes) {
				msg, err := ps.ReceiveTimeout(ctx, 200*time.Millisecond)
				if err != nil {
					break
				}
				if m, ok := msg.(*redis.Message); ok {
					r, from, _ := strings.Cut(m.Payload, ":")
					if r == strconv.Itoa(round) {
						seen[from] = true
					}
				}
			}
			if len(seen) < len(c.Nodes) {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("cluster bus links not up within 30s")
		}
	}
}

// URL is a cluster URL for redisstream.Config with Cluster set.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr()
	for i, s := range c.Nodes[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=" + s.Addr()
	}
	return u
}

// Client returns a cluster client for inspection, closed with the test.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	var addrs []string
	for _, s := range c.Nodes {
		addrs = append(addrs, s.Addr())
	}
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// FlushAll empties every master.
func (c *Cluster) FlushAll(tb testing.TB) {
	tb.Helper()
	for _, s := range c.Nodes {
		if err := s.Client().FlushAll(context.Background()).Err(); err != nil {
			tb.Fatalf("FLUSHALL on %s: %v", s, err)
		}
	}
}

// String names the cluster in test output.
func (c *Cluster) String() string { return fmt.Sprintf("redis cluster of %d", len(c.Nodes)) }
