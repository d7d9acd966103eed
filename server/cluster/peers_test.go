package cluster_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// TestPeersWithBroker: with NATS joining the instances, more than one
// instance behind --peers-dns is the intended shape, not a split:
// loopcast_peers counts them, loopcast_rooms_split stays 0 and nothing
// is logged as a warning.
func TestPeersWithBroker(t *testing.T) {
	ns := runNATS(t, 0, 0)
	dns := testutil.StartDNS(t)
	const name = "loopcast-peers.default.svc.cluster.local."
	dns.Set(name, "10.244.0.7", "10.244.1.9", "10.244.2.4")
	n := startNode(t, natsURL(ns), func(c *server.Config) {
		c.AdminAddr = "127.0.0.1:0"
		c.PeersDNS, c.PeersInterval, c.Resolver = name, 20*time.Millisecond, dns.Resolver()
	})
	metrics := func() string {
		resp, err := http.Get("http://" + n.srv.AdminAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, 3*time.Second, "loopcast_peers 3", func() bool { return strings.Contains(metrics(), "\nloopcast_peers 3\n") })
	q := dns.Queries()
	waitFor(t, 3*time.Second, "more lookups", func() bool { return dns.Queries() >= q+3 })
	if m := metrics(); !strings.Contains(m, "\nloopcast_rooms_split 0\n") {
		t.Error("rooms_split is not 0 with a broker")
	}
	if strings.Contains(n.logs.String(), "rooms are split") {
		t.Errorf("warned about a split with a broker:\n%s", n.logs.String())
	}
}
