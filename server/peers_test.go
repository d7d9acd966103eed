package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// metricValue scrapes the admin listener's /metrics and returns the
// sample line's value for name (with labels, if any), or "" if absent.
func metricValue(t *testing.T, admin, name string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return v
		}
	}
	return ""
}

// startLogged runs a server whose log the test reads, with an admin
// listener on loopback.
func startLogged(t *testing.T, cfg server.Config) (*server.Server, string, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cfg.AdminAddr = "127.0.0.1:0"
	srv := startServerLog(t, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return srv, "http://" + srv.AdminAddr().String(), logs
}

// TestPeersSplitWithoutBroker: --peers-dns resolving to more than one
// instance without a broker is reported (a warning once per change,
// loopcast_peers, loopcast_rooms_split 1); back to one instance it is
// cleared; a failing lookup keeps the last answer and is logged once.
func TestPeersSplitWithoutBroker(t *testing.T) {
	dns := testutil.StartDNS(t)
	const name = "loopcast-peers.default.svc.cluster.local."
	dns.Set(name, "10.244.0.7", "10.244.1.9", "10.244.1.9") // a repeat counts once
	cfg := testConfig()
	cfg.PeersDNS, cfg.PeersInterval, cfg.Resolver = name, 20*time.Millisecond, dns.Resolver()
	_, admin, logs := startLogged(t, cfg)

	waitFor(t, ioTimeout, "rooms_split 1", func() bool { return metricValue(t, admin, "loopcast_rooms_split") == "1" })
	if v := metricValue(t, admin, "loopcast_peers"); v != "2" {
		t.Errorf("loopcast_peers %q, want 2", v)
	}
	q := dns.Queries()
	waitFor(t, ioTimeout, "more lookups", func() bool { return dns.Queries() >= q+4 })
	if n := strings.Count(logs.String(), "rooms are split"); n != 1 {
		t.Errorf("%d warnings while the count stayed 2, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "peers=2") {
		t.Errorf("want a WARN with peers=2:\n%s", logs.String())
	}

	dns.Set(name, "10.244.0.7")
	waitFor(t, ioTimeout, "rooms_split 0", func() bool { return metricValue(t, admin, "loopcast_rooms_split") == "0" })
	if v := metricValue(t, admin, "loopcast_peers"); v != "1" {
		t.Errorf("loopcast_peers %q, want 1", v)
	}
	waitFor(t, ioTimeout, "the all-clear", func() bool { return strings.Contains(logs.String(), "rooms are whole") })

	dns.Set(name, "10.244.0.7", "10.244.2.3")
	waitFor(t, ioTimeout, "split again", func() bool { return metricValue(t, admin, "loopcast_rooms_split") == "1" })
	dns.Fail(true)
	q = dns.Queries()
	waitFor(t, ioTimeout, "failed lookups", func() bool { return dns.Queries() >= q+6 })
	if v := metricValue(t, admin, "loopcast_rooms_split"); v != "1" {
		t.Errorf("after failed lookups rooms_split %q, want the last answer's 1", v)
	}
	if n := strings.Count(logs.String(), "peers lookup failed"); n != 1 {
		t.Errorf("%d lookup-failure warnings, want 1", n)
	}
	if n := strings.Count(logs.String(), "rooms are split"); n != 2 {
		t.Errorf("%d split warnings after two changes to 2, want 2", n)
	}
}

// TestPeersOff: without --peers-dns nothing is looked up and both gauges
// are 0.
func TestPeersOff(t *testing.T) {
	_, admin, _ := startLogged(t, testConfig())
	for _, m := range []string{"loopcast_peers", "loopcast_rooms_split"} {
		if v := metricValue(t, admin, m); v != "0" {
			t.Errorf("%s %q, want 0", m, v)
		}
	}
}

// TestUntrustedForwardedFor: with a per-address limit, X-Forwarded-For
// from a peer outside --trusted-proxies (a gateway whose subnet is
// missing) is counted and logged once, and the limit applies to the
// peer, so its clients share one allowance; from a trusted peer it is not
// counted.
func TestUntrustedForwardedFor(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnsPerIP = 2
	cfg.TrustedProxies = []string{"10.225.0.0/16"} // not loopback: the "gateway" below is untrusted
	srv, admin, logs := startLogged(t, cfg)
	addr := srv.Addr().String()
	for i, want := range []int{101, 101, 429} {
		xff := "X-Forwarded-For: 203.0.113." + string(rune('1'+i)) + ":5000"
		if s := upgrade(t, addr, "127.0.0.6", "/ws/a", xff).StatusCode; s != want {
			t.Fatalf("client %d through the untrusted gateway: %d, want %d", i, s, want)
		}
	}
	if v := metricValue(t, admin, "loopcast_forwarded_untrusted_total"); v != "3" {
		t.Errorf("loopcast_forwarded_untrusted_total %q, want 3", v)
	}
	if n := strings.Count(logs.String(), "outside --trusted-proxies"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "peer=127.0.0.6") {
		t.Errorf("the warning should name the peer:\n%s", logs.String())
	}

	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	srv, admin, _ = startLogged(t, cfg)
	if s := upgrade(t, srv.Addr().String(), "127.0.0.6", "/ws/a", "X-Forwarded-For: 203.0.113.1").StatusCode; s != 101 {
		t.Fatalf("through a trusted gateway: %d", s)
	}
	if v := metricValue(t, admin, "loopcast_forwarded_untrusted_total"); v != "0" {
		t.Errorf("trusted: loopcast_forwarded_untrusted_total %q, want 0", v)
	}
}
