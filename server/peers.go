package server

import (
	"context"
	"net"
	"slices"
	"time"
)

// peersLookupTimeout bounds one lookup of Config.PeersDNS.
const peersLookupTimeout = 5 * time.Second

// peers is what the last lookup of Config.PeersDNS found.
type peers struct {
	count    int  // distinct addresses the name resolved to; 0 before the first answer
	split    bool // count > 1 without a broker: each room's members are split over instances
	failures int  // lookups in a row that failed
}

// watchPeers looks Config.PeersDNS up at start and every
// Config.PeersInterval until ctx ends, and says when more than one
// instance serves rooms without a broker: a warning in the log (once per
// change of the count), loopcast_peers and loopcast_rooms_split on
// /metrics. It runs on its own goroutine, never on an event loop.
func (s *Server) watchPeers(ctx context.Context) {
	defer close(s.peersDone)
	r := s.cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	name := s.cfg.PeersDNS
	t := time.NewTicker(s.cfg.PeersInterval)
	defer t.Stop()
	last := 0
	for {
		lctx, cancel := context.WithTimeout(ctx, peersLookupTimeout)
		addrs, err := r.LookupHost(lctx, name)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.peersMu.Lock()
		if err != nil {
			s.peers.failures++
			if s.peers.failures == 1 {
				s.log.Warn("peers lookup failed; keeping the last answer", "peers_dns", name, "err", err)
			}
		} else {
			slices.Sort(addrs)
			n := len(slices.Compact(addrs))
			s.peers = peers{count: n, split: n > 1 && s.cfg.Broker == nil}
			if n != last {
				switch {
				case s.peers.split:
					s.log.Warn("rooms are split: more than one instance and no broker, so each instance delivers a room's messages only to its own members; set --nats-url, or run one instance (a rollout's surge pod counts until the old pod is gone)",
						"peers", n, "peers_dns", name)
				case last > 1 && s.cfg.Broker == nil:
					s.log.Info("one instance again: rooms are whole", "peers", n, "peers_dns", name)
				}
				last = n
			}
		}
		s.peersMu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// peerState is the last lookup's result, for /metrics.
func (s *Server) peerState() peers {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	return s.peers
}
