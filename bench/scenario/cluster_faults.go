package scenario

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loopcast/loopcast/internal/natscluster"
)

// phase is a window of the run: the warm-up, each fault from its
// injection to the next one's, and the tail. Clients count what they see
// into the phase of the moment.
type phase struct {
	name       string
	start, end time.Time // end: the next phase's start

	deliveries, gaps, missing, reordered, duplicates, misplaced, unpublished atomic.Int64
	epochChanges, resumesRecovered, resumesNotRecovered, resumeErrors        atomic.Int64
	reconnects                                                               atomic.Int64

	// Under clusterRun.phasesMu.
	notes   []string
	figures map[string]float64 // fault-specific: heal_s, leader_elected_s
}

func newPhase(name string, start time.Time) *phase {
	return &phase{name: name, start: start, figures: map[string]float64{}}
}

// current is the phase clients count into now.
func (s *clusterRun) current() *phase { return s.cur.Load() }

// enter starts a new phase now.
func (s *clusterRun) enter(name string) *phase {
	s.phasesMu.Lock()
	defer s.phasesMu.Unlock()
	now := time.Now()
	s.phases[len(s.phases)-1].end = now
	ph := newPhase(name, now)
	s.phases = append(s.phases, ph)
	s.phase.Store(int32(len(s.phases) - 1))
	s.cur.Store(ph)
	return ph
}

// note adds a line to ph's notes, with the time since its start.
func (s *clusterRun) note(ph *phase, format string, args ...any) {
	line := fmt.Sprintf("+%5.2fs ", time.Since(ph.start).Seconds()) + fmt.Sprintf(format, args...)
	s.phasesMu.Lock()
	ph.notes = append(ph.notes, line)
	s.phasesMu.Unlock()
	s.logf("%s: %s", faultKeyOf(ph.name), line)
}

// figure records a fault-specific figure of ph.
func (s *clusterRun) figure(ph *phase, name string, v float64) {
	s.phasesMu.Lock()
	ph.figures[name] = v
	s.phasesMu.Unlock()
}

// total sums one counter over every phase.
func (s *clusterRun) total(get func(*phase) int64) int64 {
	s.phasesMu.Lock()
	defer s.phasesMu.Unlock()
	var n int64
	for _, ph := range s.phases {
		n += get(ph)
	}
	return n
}

// faultKeyOf is a phase name up to its colon.
func faultKeyOf(name string) string {
	k, _, _ := strings.Cut(name, ":")
	return k
}

// clusterFault is one kind of fault: do injects it at once (the phase
// starts then) and undoes it, for the faults that heal by a restart,
// within the run's bounds.
type clusterFault struct {
	key  rune
	name string
	nats bool // a NATS fault: wait for a healthy NATS cluster first
	do   func(s *clusterRun, ctx context.Context, ph *phase, at faultSetting) error
}

// faultSetting is the cluster as a fault finds it.
type faultSetting struct {
	leader string              // the stream's leader (NATS faults)
	on     map[string][]string // NATS node -> instances connected to it
}

var clusterFaults = map[rune]*clusterFault{
	'a': {key: 'a', name: "a: SIGKILL the NATS server leading the stream, restart it", nats: true, do: (*clusterRun).killLeader},
	'b': {key: 'b', name: "b: SIGSTOP the NATS server leading the stream, SIGCONT it", nats: true, do: (*clusterRun).freezeLeader},
	'c': {key: 'c', name: "c: SIGKILL a loopcast instance (no drain), restart it", do: (*clusterRun).killInstance},
	'd': {key: 'd', name: "d: every client socket closed at once (a gateway update)", do: (*clusterRun).resetClients},
}

// inject runs one fault in a phase of its own, which starts as the fault
// is injected: it waits for the cluster to be whole, injects the fault,
// then waits until it healed (every publisher acknowledged an attempt
// sent after the injection, every client subscribed again, NATS healthy
// with a stream leader), within FaultTimeout.
func (s *clusterRun) inject(ctx context.Context, f *clusterFault) {
	var set faultSetting
	moved := ""
	if f.nats {
		var err error
		if set.leader, err = s.fleet.waitNATSHealthy(ctx, s.cfg.FaultTimeout); err != nil {
			s.r.Errorf("before %s: %v", faultKeyOf(f.name), err)
			return
		}
		on, _ := s.fleet.connections()
		if to := s.mixedNode(on, set.leader, f.key); to != set.leader {
			if err := s.fleet.nats.MoveStreamLeader(ctx, clusterStream, to); err != nil {
				moved = fmt.Sprintf("could not move the stream leader from %s to %s: %v", set.leader, to, err)
			} else {
				moved = fmt.Sprintf("moved the stream leader from %s to %s first", set.leader, to)
			}
			if set.leader, err = s.fleet.waitNATSHealthy(ctx, s.cfg.FaultTimeout); err != nil {
				s.r.Errorf("before %s: %v", faultKeyOf(f.name), err)
				return
			}
		}
	}
	on, where := s.fleet.connections()
	set.on = on
	ph := s.enter(f.name)
	if moved != "" {
		s.note(ph, "%s", moved)
	}
	s.note(ph, "instances on NATS: %s", where)
	if err := f.do(s, ctx, ph, set); err != nil {
		s.r.Errorf("fault %s: %v", faultKeyOf(f.name), err)
		s.note(ph, "ERROR %v", err)
	}
	injected := ph.start
	healed := natscluster.Poll(ctx, max(0, s.cfg.FaultTimeout-time.Since(injected)), "the cluster to heal", func() bool {
		if s.ready.Load() < int64(len(s.subs)) {
			return false
		}
		for _, p := range s.pubs {
			if !p.ackedSince(injected) {
				return false
			}
		}
		for _, n := range s.fleet.nats.Names() {
			if !s.fleet.nats.Healthy(n) {
				return false
			}
		}
		return s.fleet.nats.StreamLeader(clusterStream) != ""
	})
	if healed != nil {
		s.r.Errorf("fault %s: not healed within %s: %d of %d clients subscribed; publishers acknowledged again: %s",
			faultKeyOf(f.name), s.cfg.FaultTimeout, s.ready.Load(), len(s.subs), s.ackedAgain(injected))
		s.note(ph, "NOT healed within %s", s.cfg.FaultTimeout)
		return
	}
	s.figure(ph, HealSeconds, round3(time.Since(injected).Seconds()))
	_, where = s.fleet.connections()
	s.note(ph, "healed: every client subscribed, every publisher acknowledged again, NATS healthy; instances on NATS: %s", where)
}

// mixedNode is the NATS node to lead the stream when a NATS fault hits
// it: one with some instances connected to it and not all, so that the
// fault hits instances that lose their NATS connection and instances
// whose connection survives (the two paths of issue 31), the current
// leader if it is one. When every instance is on one node: that node
// for fault a (every instance loses its connection) and another for
// fault b (every connection survives the freeze), so that a run covers
// both paths.
func (s *clusterRun) mixedNode(on map[string][]string, leader string, fault rune) string {
	all := len(s.fleet.inst)
	mixed := func(n string) bool { return len(on[n]) > 0 && len(on[n]) < all }
	if mixed(leader) {
		return leader
	}
	names := s.fleet.nats.Names()
	for _, n := range names {
		if mixed(n) {
			return n
		}
	}
	for _, n := range names {
		if full := len(on[n]) == all; full == (fault == 'a') {
			if full == (len(on[leader]) == all) {
				return leader // the leader is such a node already
			}
			return n
		}
	}
	return leader
}

// ackedAgain lists which publishers had an acknowledgement since t.
func (s *clusterRun) ackedAgain(t time.Time) string {
	var parts []string
	for _, p := range s.pubs {
		parts = append(parts, fmt.Sprintf("%s %v", p.label, p.ackedSince(t)))
	}
	return strings.Join(parts, ", ")
}

// leaderOut makes the stream's leader unavailable (kill or freeze),
// notes when another one is elected, and brings it back (restart or
// cont) after the fault's time.
func (s *clusterRun) leaderOut(ctx context.Context, ph *phase, set faultSetting, verb string, out func(string) error,
	after time.Duration, back func(string) error) error {
	nc := s.fleet.nats
	leader, t0 := set.leader, ph.start
	if err := out(leader); err != nil {
		return err
	}
	s.note(ph, "%s %s, the stream leader; instances connected to it: %v", verb, leader, set.on[leader])
	elected := ""
	poll := func(until time.Time) {
		for elected == "" && time.Now().Before(until) && ctx.Err() == nil {
			if l := nc.StreamLeader(clusterStream); l != "" && l != leader {
				elected = l
				s.figure(ph, LeaderElectedSeconds, round3(time.Since(t0).Seconds()))
				s.note(ph, "new stream leader %s, %.2fs after the fault", l, time.Since(t0).Seconds())
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	poll(t0.Add(after))
	s.sleep(ctx, time.Until(t0.Add(after)))
	if err := back(leader); err != nil {
		return err
	}
	s.note(ph, "%s back (%s)", leader, map[bool]string{true: "restarted and healthy", false: "continued"}[verb == "SIGKILL"])
	if elected != "" {
		return nil
	}
	// No other leader while it was out: wait for any (it may lead again).
	now := ""
	_ = natscluster.Poll(ctx, max(0, s.cfg.FaultTimeout-time.Since(t0)), "a stream leader", func() bool {
		now = nc.StreamLeader(clusterStream)
		return now != ""
	})
	switch {
	case now == leader:
		s.note(ph, "no other leader was elected while %s was out; it leads again", leader)
	case now != "":
		s.figure(ph, LeaderElectedSeconds, round3(time.Since(t0).Seconds()))
		s.note(ph, "new stream leader %s, %.2fs after the fault", now, time.Since(t0).Seconds())
	default:
		s.note(ph, "no stream leader %s after the fault", s.cfg.FaultTimeout)
	}
	return nil
}

// killLeader is fault a.
func (s *clusterRun) killLeader(ctx context.Context, ph *phase, set faultSetting) error {
	nc := s.fleet.nats
	return s.leaderOut(ctx, ph, set, "SIGKILL", nc.Kill, s.cfg.NATSRestartAfter,
		func(n string) error { return nc.Restart(ctx, n) })
}

// freezeLeader is fault b.
func (s *clusterRun) freezeLeader(ctx context.Context, ph *phase, set faultSetting) error {
	nc := s.fleet.nats
	return s.leaderOut(ctx, ph, set, "SIGSTOP", nc.Stop, s.cfg.FreezeFor, nc.Cont)
}

// killInstance is fault c: the second instance (the only one, with one)
// killed without a drain, restarted after InstanceRestartAfter; its
// clients reconnect to the next instance meanwhile.
func (s *clusterRun) killInstance(ctx context.Context, ph *phase, _ faultSetting) error {
	in := s.fleet.inst[1%len(s.fleet.inst)]
	clients := 0
	for _, c := range s.subs {
		c.mu.Lock()
		if c.conn != nil && c.inst == 1%len(s.fleet.inst) {
			clients++
		}
		c.mu.Unlock()
	}
	t0 := ph.start
	if err := s.fleet.kill(in, syscall.SIGKILL); err != nil {
		return err
	}
	s.note(ph, "SIGKILL %s (%d clients on it)", in.name, clients)
	s.sleep(ctx, time.Until(t0.Add(s.cfg.InstanceRestartAfter)))
	if err := s.fleet.startInstance(ctx, in); err != nil {
		return err
	}
	s.note(ph, "%s restarted and ready (stream read back)", in.name)
	return nil
}

// resetClients is fault d: every client's socket closed at once, as an
// Application Gateway configuration update does (closed from the client
// side: the server sees each connection end, as when the gateway closes
// its backend connections).
func (s *clusterRun) resetClients(_ context.Context, ph *phase, _ faultSetting) error {
	for _, c := range s.subs {
		c.closeConn()
	}
	for _, p := range s.pubs {
		p.closeConn()
	}
	s.note(ph, "closed %d client and %d publisher sockets", len(s.subs), len(s.pubs))
	return nil
}
