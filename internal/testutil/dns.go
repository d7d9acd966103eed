package testutil

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS is a small authoritative DNS server on 127.0.0.1 (UDP) for tests
// that resolve names the way a pod resolves a headless Service: A
// records set with Set, NXDOMAIN for other names, SERVFAIL while Fail
// is on. Resolver returns a Go resolver that asks only this server.
type DNS struct {
	conn net.PacketConn
	done chan struct{}

	mu      sync.Mutex
	records map[string][]netip.Addr // by lower-case name with the final dot
	fail    bool
	queries int
}

// StartDNS listens on a free UDP port and serves until the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &DNS{conn: c, done: make(chan struct{}), records: map[string][]netip.Addr{}}
	go d.serve()
	t.Cleanup(func() { c.Close(); <-d.done })
	return d
}

// Set answers name (with or without the final dot) with addrs, A records
// for IPv4 and AAAA for IPv6; no addrs removes the name.
func (d *DNS) Set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := canonical(name)
	if len(addrs) == 0 {
		delete(d.records, key)
		return
	}
	as := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		as[i] = netip.MustParseAddr(a)
	}
	d.records[key] = as
}

// Fail makes every answer SERVFAIL while on.
func (d *DNS) Fail(on bool) {
	d.mu.Lock()
	d.fail = on
	d.mu.Unlock()
}

// Queries is how many questions the server has answered.
func (d *DNS) Queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries
}

// Resolver sends every query to this server (the pure Go resolver, as
// in a distroless image without cgo).
func (d *DNS) Resolver() *net.Resolver {
	addr := d.conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", addr)
	}}
}

func canonical(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func (d *DNS) serve() {
	defer close(d.done)
	buf := make([]byte, 512)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := d.answer(buf[:n]); out != nil {
			_, _ = d.conn.WriteTo(out, from)
		}
	}
}

func (d *DNS) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	d.mu.Lock()
	d.queries++
	addrs, known := d.records[canonical(q.Name.String())]
	fail := d.fail
	d.mu.Unlock()

	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	switch {
	case fail:
		rh.RCode = dnsmessage.RCodeServerFailure
	case !known:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil
	}
	if !fail {
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
		for _, a := range addrs {
			switch {
			case a.Is4() && q.Type == dnsmessage.TypeA:
				rr.Type = dnsmessage.TypeA
				if b.AResource(rr, dnsmessage.AResource{A: a.As4()}) != nil {
					return nil
				}
			case a.Is6() && q.Type == dnsmessage.TypeAAAA:
				rr.Type = dnsmessage.TypeAAAA
				if b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()}) != nil {
					return nil
				}
			}
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
