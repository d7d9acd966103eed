package server

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// admission enforces the connection limits at the handshake: MaxConns
// WebSocket sessions in all, MaxConnsPerIP per client address, where an
// IPv6 client's address is its ConnsPerIPv6Prefix prefix (one client
// usually holds a whole /64). Counting happens once per handshake and
// once per close, never per message.
type admission struct {
	maxConns, maxPerIP int
	v6Bits             int // ConnsPerIPv6Prefix
	trusted            []netip.Prefix

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int // by perIPKey

	// untrusted counts handshakes carrying X-Forwarded-For from a peer
	// outside trusted while maxPerIP applies: a proxy missing from
	// TrustedProxies (a wrong subnet), whose clients then all count as
	// the proxy's address. The first one is logged, once per process.
	untrusted atomic.Int64
	warned    atomic.Bool
	log       *slog.Logger
}

func newAdmission(cfg Config, log *slog.Logger) (*admission, error) {
	a := &admission{maxConns: cfg.MaxConns, maxPerIP: cfg.MaxConnsPerIP, v6Bits: cfg.ConnsPerIPv6Prefix, perIP: map[netip.Addr]int{}, log: log}
	for _, s := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		a.trusted = append(a.trusted, p.Masked())
	}
	return a, nil
}

// perIPKey is what MaxConnsPerIP counts ip as: an IPv4 address as
// itself, an IPv6 address as the first v6Bits bits of it (the rest
// zero), so every address of one /64 (by default) shares one allowance.
func (a *admission) perIPKey(ip netip.Addr) netip.Addr {
	if !ip.Is6() || a.v6Bits <= 0 || a.v6Bits >= 128 {
		return ip
	}
	p, err := ip.WithZone("").Prefix(a.v6Bits)
	if err != nil {
		return ip
	}
	return p.Addr()
}

// admit counts a new session from ip, or returns the answer that refuses
// it: 503 when the server is full, 429 when the address (for IPv6, its
// prefix) has its share.
func (a *admission) admit(ip netip.Addr) *rejection {
	key := a.perIPKey(ip)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.maxConns > 0 && a.total >= a.maxConns {
		return rejFull
	}
	if a.maxPerIP > 0 && a.perIP[key] >= a.maxPerIP {
		return rejPerIP
	}
	a.total++
	if a.maxPerIP > 0 {
		a.perIP[key]++
	}
	return nil
}

// release uncounts a session admitted from ip.
func (a *admission) release(ip netip.Addr) {
	key := a.perIPKey(ip)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.maxPerIP > 0 {
		if n := a.perIP[key] - 1; n > 0 {
			a.perIP[key] = n
		} else {
			delete(a.perIP, key)
		}
	}
}

func (a *admission) trustedList() string {
	s := make([]string, len(a.trusted))
	for i, p := range a.trusted {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (a *admission) isTrusted(ip netip.Addr) bool {
	for _, p := range a.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the address a limit applies to: the peer's, unless the peer
// is a trusted proxy (Application Gateway's subnet), in which case the
// right-most X-Forwarded-For entry that is not itself a trusted proxy.
//
// Every X-Forwarded-For line counts: RFC 9110 §5.3 makes the lines of one
// field one comma-separated list, in order, and a proxy may append its
// entry as a line of its own after the client's. The walk starts at the
// right end, which the trusted peer wrote, and moves left only past
// trusted proxies, so whatever a client wrote further left is never
// reached while an untrusted hop stands between. Entries may carry a
// port, as Application Gateway adds ("1.2.3.4:5678"); empty list elements
// are skipped (RFC 9110 §5.6.1). The walk stops at the last trusted hop
// it reached (the peer, if none), counting that proxy's address, when
//   - an entry is not an address (the proxy chain is misconfigured), or
//   - the request has more lines than the parser keeps
//     (reqhead.MaxForwardedFor) and every kept entry is trusted: the
//     client's entry is in a line that was not kept, and taking any kept
//     entry instead would let the client choose.
//
// Untrusted peers cannot choose their address by sending the header. It
// does not allocate.
func (a *admission) clientIP(remote net.Addr, h *reqhead.Head) netip.Addr {
	var ip netip.Addr
	if ta, ok := remote.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
		ip = ip.Unmap()
	}
	if !ip.IsValid() || h.ForwardedForLines == 0 {
		return ip
	}
	if !a.isTrusted(ip) {
		if a.maxPerIP == 0 {
			return ip // no per-address limit: the address does not matter
		}
		a.untrusted.Add(1)
		if a.warned.CompareAndSwap(false, true) {
			a.log.Warn("X-Forwarded-For from a peer outside --trusted-proxies: if it is your gateway, every client behind it counts as its address for --max-conns-per-ip; "+
				"set --trusted-proxies to the gateway's subnet (logged once; loopcast_forwarded_untrusted_total counts them)",
				"peer", ip.String(), "trusted_proxies", a.trustedList(), "max_conns_per_ip", a.maxPerIP)
		}
		return ip
	}
	lines := h.ForwardedForList()
	for i := len(lines) - 1; i >= 0; i-- {
		for rest := lines[i]; len(rest) > 0; {
			var e []byte
			if c := bytes.LastIndexByte(rest, ','); c >= 0 {
				e, rest = rest[c+1:], rest[:c]
			} else {
				e, rest = rest, nil
			}
			if e = bytes.TrimSpace(e); len(e) == 0 {
				continue
			}
			addr, ok := reqhead.ParseForwardedAddr(e)
			if !ok {
				return ip // malformed: limit the last trusted hop's address
			}
			if !a.isTrusted(addr) {
				return addr
			}
			ip = addr
		}
	}
	// Every entry kept names a trusted proxy: the client is further left,
	// in a line not kept (ForwardedForTruncated), or it is a trusted
	// address itself. Either way ip is a trusted hop's address, which no
	// client chose.
	return ip
}
