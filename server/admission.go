package server

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// admission enforces the connection limits at the handshake: MaxConns
// WebSocket sessions in all, MaxConnsPerIP per client address. Counting
// happens once per handshake and once per close, never per message.
type admission struct {
	maxConns, maxPerIP int
	trusted            []netip.Prefix

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int

	// untrusted counts handshakes carrying X-Forwarded-For from a peer
	// outside trusted while maxPerIP applies: a proxy missing from
	// TrustedProxies (a wrong subnet), whose clients then all count as
	// the proxy's address. The first one is logged, once per process.
	untrusted atomic.Int64
	warned    atomic.Bool
	log       *slog.Logger
}

func newAdmission(cfg Config, log *slog.Logger) (*admission, error) {
	a := &admission{maxConns: cfg.MaxConns, maxPerIP: cfg.MaxConnsPerIP, perIP: map[netip.Addr]int{}, log: log}
	for _, s := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		a.trusted = append(a.trusted, p.Masked())
	}
	return a, nil
}

// admit counts a new session from ip, or returns the answer that refuses
// it: 503 when the server is full, 429 when the address has its share.
func (a *admission) admit(ip netip.Addr) *rejection {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.maxConns > 0 && a.total >= a.maxConns {
		return rejFull
	}
	if a.maxPerIP > 0 && a.perIP[ip] >= a.maxPerIP {
		return rejPerIP
	}
	a.total++
	if a.maxPerIP > 0 {
		a.perIP[ip]++
	}
	return nil
}

// release uncounts a session admitted from ip.
func (a *admission) release(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.maxPerIP > 0 {
		if n := a.perIP[ip] - 1; n > 0 {
			a.perIP[ip] = n
		} else {
			delete(a.perIP, ip)
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
// Entries may carry a port, as Application Gateway adds ("1.2.3.4:5678").
// Untrusted peers cannot choose their address by sending the header.
func (a *admission) clientIP(remote net.Addr, h *reqhead.Head) netip.Addr {
	var ip netip.Addr
	if ta, ok := remote.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
		ip = ip.Unmap()
	}
	if !ip.IsValid() || len(h.ForwardedFor) == 0 {
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
	entries := strings.Split(string(h.ForwardedFor), ",")
	for i := len(entries) - 1; i >= 0; i-- {
		e := strings.TrimSpace(entries[i])
		addr, err := netip.ParseAddr(e)
		if err != nil {
			ap, err2 := netip.ParseAddrPort(e)
			if err2 != nil {
				return ip // malformed: limit the proxy's own address
			}
			addr = ap.Addr()
		}
		addr = addr.Unmap()
		if !a.isTrusted(addr) {
			return addr
		}
		ip = addr
	}
	return ip
}
