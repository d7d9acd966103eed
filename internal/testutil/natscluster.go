//go:build linux

package testutil

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/loopcast/loopcast/internal/natscluster"
)

// natsLogTail is how much of each node's log a failed test prints.
const natsLogTail = 64 << 10

// NATSCluster is a real three-node NATS cluster with JetStream, each
// node a nats-server process of its own (so that a test can SIGKILL it,
// or freeze it with SIGSTOP), on loopback ports, with file storage in
// the test's temporary directory: internal/natscluster, failing the test
// instead of returning errors. Its nodes are named n1, n2 and n3
// (server_name, which JetStream reports as a stream's leader). Everything
// is killed at the test's cleanup, and each node's log is printed when
// the test failed.
//
// The methods are meant for the test's goroutine (they call t.Fatal);
// URLs, Names and the monitoring look-ups are safe from any goroutine.
type NATSCluster struct {
	t testing.TB
	c *natscluster.Cluster
}

// StreamView is one node's view of a stream, from its /jsz.
type StreamView = natscluster.StreamView

// StartNATSCluster builds nats-server from the module's go.mod (once
// per test binary, while some cluster uses it), starts three clustered
// nodes and returns once every node answers and JetStream has a meta
// leader that every node agrees on.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	bin := natsServerBinary(t)
	c, err := natscluster.Start(context.Background(), natscluster.Options{Dir: t.TempDir(), Bin: bin, ClusterName: "loopcast-test"})
	if c != nil {
		t.Cleanup(func() {
			c.Close()
			if t.Failed() {
				for _, n := range c.Names() {
					t.Logf("nats-server %s log (%s):\n%s", n, c.LogPath(n), natscluster.Tail(c.LogPath(n), natsLogTail))
				}
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return &NATSCluster{t: t, c: c}
}

// Names are the nodes' server names, n1 to n3.
func (c *NATSCluster) Names() []string { return c.c.Names() }

// URLs are the client URLs of all three nodes, comma-separated (what
// --nats-url takes).
func (c *NATSCluster) URLs() string { return c.c.URLs() }

// URL is node name's client URL.
func (c *NATSCluster) URL(name string) string {
	c.known(name)
	return c.c.URL(name)
}

// LogPath is the file node name logs to.
func (c *NATSCluster) LogPath(name string) string {
	c.known(name)
	return c.c.LogPath(name)
}

func (c *NATSCluster) known(name string) {
	if !c.c.Has(name) {
		c.t.Fatalf("no NATS node %q (have n1, n2, n3)", name)
	}
}

// Kill sends SIGKILL to node name (a crashed pod or machine) and waits
// until the process is gone. A stopped (SIGSTOP) node dies as well.
func (c *NATSCluster) Kill(name string) {
	c.t.Helper()
	if err := c.c.Kill(name); err != nil {
		c.t.Fatal(err)
	}
}

// Restart starts node name again after Kill, with the same ports, store
// directory and configuration, and waits until it reports healthy
// (/healthz: JetStream is current, its streams caught up).
func (c *NATSCluster) Restart(name string) {
	c.t.Helper()
	if err := c.c.Restart(context.Background(), name); err != nil {
		c.t.Fatal(err)
	}
}

// Stop freezes node name with SIGSTOP: its sockets stay open and nothing
// answers on them, as with a network partition; Cont heals it.
func (c *NATSCluster) Stop(name string) {
	c.t.Helper()
	if err := c.c.Stop(name); err != nil {
		c.t.Fatal(err)
	}
}

// Cont resumes a node frozen by Stop with SIGCONT.
func (c *NATSCluster) Cont(name string) {
	c.t.Helper()
	if err := c.c.Cont(name); err != nil {
		c.t.Fatal(err)
	}
}

// Healthy reports whether node name answers /healthz with 200 (its
// JetStream is current).
func (c *NATSCluster) Healthy(name string) bool { return c.c.Healthy(name) }

// StreamReplicas is each live node's view of stream (a node that does not
// answer, or holds no replica, is left out).
func (c *NATSCluster) StreamReplicas(stream string) map[string]StreamView {
	return c.c.StreamReplicas(stream)
}

// StreamLeader is the server name of stream's leader, when every live
// node holding a replica names the same one, and that one is live and
// says so itself; "" otherwise (an election, or a frozen leader the
// others have not voted out yet). Poll it.
func (c *NATSCluster) StreamLeader(stream string) string { return c.c.StreamLeader(stream) }

// MoveStreamLeader asks stream's leader to step down in favour of node
// to, and waits until every live replica names to as the leader.
func (c *NATSCluster) MoveStreamLeader(stream, to string) {
	c.t.Helper()
	if err := c.c.MoveStreamLeader(context.Background(), stream, to); err != nil {
		c.t.Fatal(err)
	}
}

// MetaLeader is the JetStream meta leader every live node names, or "".
func (c *NATSCluster) MetaLeader() string { return c.c.MetaLeader() }

// ClientServer is the name of the live node that holds a client
// connection named clientName (nats.Name), or "".
func (c *NATSCluster) ClientServer(clientName string) string { return c.c.ClientServer(clientName) }

// natsServerBinary builds nats-server at the version go.mod requires,
// once while any cluster of this test binary uses it; the directory goes
// when the last of them is cleaned up.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	natsBin.mu.Lock()
	defer natsBin.mu.Unlock()
	if natsBin.users == 0 {
		dir, err := os.MkdirTemp("", "loopcast-nats-server-")
		if err != nil {
			t.Fatal(err)
		}
		bin, err := natscluster.Build(context.Background(), dir)
		if err != nil {
			os.RemoveAll(dir)
			t.Fatal(err)
		}
		natsBin.dir, natsBin.path = dir, bin
	}
	natsBin.users++
	t.Cleanup(func() {
		natsBin.mu.Lock()
		defer natsBin.mu.Unlock()
		if natsBin.users--; natsBin.users == 0 {
			os.RemoveAll(natsBin.dir)
		}
	})
	return natsBin.path
}

var natsBin struct {
	mu        sync.Mutex
	users     int
	dir, path string
}
