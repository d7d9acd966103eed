package server_test

import (
	"testing"
)

// TestBugIPv6PerAddressCap: an IPv6 client is usually given a whole /64
// (RFC 6177, RFC 8273), so counting each /128 apart lets one client open
// 2^64 times the per-address cap. By default the cap counts a /64 as one
// address; IPv4 stays per address. The addresses come from a trusted
// proxy's X-Forwarded-For, since the test cannot own a /64 on loopback.
func TestBugIPv6PerAddressCap(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxConnsPerIP = 2
	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	from := func(client string) int {
		return upgrade(t, addr, "127.0.0.8", "/ws/a", "X-Forwarded-For: "+client).StatusCode
	}
	for i, c := range []struct {
		client string
		want   int
	}{
		{"2001:db8:1:2::1", 101},
		{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:443", 101}, // same /64, with a port
		{"2001:db8:1:2:aaaa::1", 429},                   // a third in that /64
		{"2001:db8:1:3::1", 101},                        // the next /64 is another client
		{"::ffff:192.0.2.1", 101},                       // IPv4-mapped: counted as IPv4 192.0.2.1
		{"192.0.2.1", 101},                              //
		{"192.0.2.1", 429},                              // IPv4: per address
		{"192.0.2.2", 101},                              // the next IPv4 address is another client
	} {
		if got := from(c.client); got != c.want {
			t.Fatalf("%d: from %s: %d, want %d", i, c.client, got, c.want)
		}
	}
	if got := srv.Stats().Rejects[429]; got != 2 {
		t.Errorf("429s counted: %d, want 2", got)
	}
}

// TestIPv6PrefixSetting: ConnsPerIPv6Prefix chooses the prefix (128:
// every address apart), and a session that ends frees its prefix's place.
func TestIPv6PrefixSetting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		bits   int
		second int // a second session from the same /64
	}{
		{128, 101},
		{64, 429},
		{56, 429},
	} {
		cfg := testConfig()
		cfg.MaxConnsPerIP = 1
		cfg.ConnsPerIPv6Prefix = c.bits
		cfg.TrustedProxies = []string{"127.0.0.0/8"}
		srv := startServer(t, cfg)
		addr := srv.Addr().String()
		first := upgrade(t, addr, "127.0.0.8", "/ws/a", "X-Forwarded-For: 2001:db8:0:1::1")
		if first.StatusCode != 101 {
			t.Fatalf("/%d: first session: %d", c.bits, first.StatusCode)
		}
		if s := upgrade(t, addr, "127.0.0.8", "/ws/a", "X-Forwarded-For: 2001:db8:0:1::2").StatusCode; s != c.second {
			t.Fatalf("/%d: second address of the /64: %d, want %d", c.bits, s, c.second)
		}
		if c.second == 101 {
			continue
		}
		// 2001:db8:0:2::/64 is another client at /64, the same at /56.
		want := 101
		if c.bits <= 56 {
			want = 429
		}
		if s := upgrade(t, addr, "127.0.0.8", "/ws/a", "X-Forwarded-For: 2001:db8:0:2::1").StatusCode; s != want {
			t.Fatalf("/%d: address in the next /64: %d, want %d", c.bits, s, want)
		}
		open := int64(0) // sessions left once the first ends
		if want == 101 {
			open = 1
		}
		closeConnOf(t, first)
		waitFor(t, ioTimeout, "the first session to end", func() bool { return srv.Stats().WebSockets == open })
		if s := upgrade(t, addr, "127.0.0.8", "/ws/a", "X-Forwarded-For: 2001:db8:0:1::3").StatusCode; s != 101 {
			t.Fatalf("/%d: after the first session ended: %d, want 101", c.bits, s)
		}
	}
}
