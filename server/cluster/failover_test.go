//go:build linux

package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
	"github.com/loopcast/loopcast/server/cluster"
)

// failoverMsgIDs: the publishers of TestFailover send a message id with
// every pub (`pub <id> <room> <msgid>`) and retry the same pub after an
// `err … unknown` answer or a dropped connection. Off (go test -run
// TestFailover ./server/cluster/ -args -failover.msgids=false), a pub is
// sent once whatever happens: for servers without message ids.
var failoverMsgIDs = flag.Bool("failover.msgids", true, "TestFailover: publish with message ids and retry unknown outcomes")

// Bounds of TestFailover. failoverAnswerBound is asserted, and with
// message ids every publish must be resolved within failoverRetryFor;
// the others only keep a broken run from hanging.
const (
	// failoverAnswerBound: every pub gets an answer within this long.
	failoverAnswerBound = 15 * time.Second
	// failoverRate is each publisher's pace: 50 pubs/s.
	failoverRate = 20 * time.Millisecond
	// failoverStep bounds each wait of the test (a leader, a ready
	// instance, publishing acknowledged again).
	failoverStep = 30 * time.Second
	// failoverRecover bounds the wait, after each fault, for every
	// publisher's next acknowledgement; past it the test goes on (the
	// assertions at the end tell what was not answered).
	failoverRecover = 5 * time.Second
	// failoverObserve is how long publishing goes on between faults once
	// it was acknowledged again.
	failoverObserve = 2 * time.Second
	// failoverRetryFor: a publish is retried for this long after its
	// first attempt (message ids on).
	failoverRetryFor = 30 * time.Second
)

// TestFailover is the fault-injection suite of issue 31: a real
// three-node NATS cluster (processes: SIGKILL and SIGSTOP are real), the
// room stream at three replicas on file storage, three loopcast
// instances over it (--nats-url naming all three nodes), two subscribers
// on each, one loopcast.v1 publisher per instance at 50 pubs/s. Faults,
// one after another: (a) SIGKILL of the stream leader, restarted 5 s
// later; (b) SIGKILL of a node that does not lead, restarted 5 s later;
// (c) the leader frozen (SIGSTOP) for 8 s, a partition that heals; (d)
// SIGKILL of the leader and, during the election, an instance closed
// without drain (a killed pod): its clients resume on the others; a
// replacement instance c2 starts while the stream has no leader, and a
// subscriber and a publisher reach it before it is ready. Before (a),
// (c) and (d) the stream's leader is moved, if needed, so that the
// fault hits instances connected to the leader and instances whose
// connection survives.
//
// For every publish: an answer within failoverAnswerBound; once
// acknowledged, delivered exactly once to every subscriber of its room
// (that was subscribed when it was placed), at the acknowledged epoch and
// offset; once refused, never delivered; with message ids, every publish
// ends acknowledged or refused. No subscriber sees another epoch than
// the stream's, every resume is recovered, offsets only increase. The
// summary (t.Logf) has the figures per fault.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three nats-server processes and about a minute of faults")
	}
	f := &failover{t: t, msgIDs: *failoverMsgIDs, instances: map[string]*lcInstance{}, stalled: map[string]bool{}}
	f.nc = testutil.StartNATSCluster(t)
	f.summaryAtCleanup() // after the clients' cleanups, before the cluster's
	f.setup()

	f.fault("baseline", func(fr *faultRecord) {})
	f.fault("a: SIGKILL the stream leader, restart it 5 s later", func(fr *faultRecord) {
		leader := f.placeLeader(fr)
		f.nc.Kill(leader)
		killed := time.Now()
		fr.note("SIGKILL %s at +%s", leader, since(fr.start))
		f.waitNewLeader(fr, leader, killed, killed.Add(5*time.Second))
		f.sleepUntil(killed.Add(5 * time.Second))
		f.nc.Restart(leader)
		fr.note("%s restarted and healthy at +%s", leader, since(fr.start))
		f.waitNewLeader(fr, "", killed, killed.Add(failoverStep))
	})
	f.fault("b: SIGKILL a node that does not lead, restart it 5 s later", func(fr *faultRecord) {
		leader := f.leader(fr)
		// A node that does not lead, with instances on it if one has.
		victim, on := "", f.connections()
		for _, n := range f.nc.Names() {
			if n != leader && (victim == "" || len(on[n]) > len(on[victim])) {
				victim = n
			}
		}
		fr.note("killed %s (not the leader; instances on it: %v)", victim, on[victim])
		f.nc.Kill(victim)
		f.sleepUntil(time.Now().Add(5 * time.Second))
		f.nc.Restart(victim)
		fr.note("%s restarted and healthy at +%s; leader now %q", victim, since(fr.start), f.nc.StreamLeader(cluster.DefaultStream))
	})
	f.fault("c: SIGSTOP the stream leader for 8 s, then SIGCONT", func(fr *faultRecord) {
		leader := f.placeLeader(fr)
		f.nc.Stop(leader)
		stopped := time.Now()
		fr.note("SIGSTOP %s at +%s", leader, since(fr.start))
		f.waitNewLeader(fr, leader, stopped, stopped.Add(8*time.Second))
		f.sleepUntil(stopped.Add(8 * time.Second))
		f.nc.Cont(leader)
		fr.note("%s continued at +%s", leader, since(fr.start))
		f.waitNewLeader(fr, "", stopped, stopped.Add(failoverStep))
	})
	f.fault("d: SIGKILL the leader, close instance c during the election, start c2 while leaderless", func(fr *faultRecord) {
		leader := f.placeLeader(fr)
		f.nc.Kill(leader)
		killed := time.Now()
		fr.note("SIGKILL %s at +%s", leader, since(fr.start))
		c := f.instances["c"]
		c.close(t)
		fr.note("instance c closed (no drain) at +%s; stream leader then %q", since(fr.start), f.nc.StreamLeader(cluster.DefaultStream))
		c2 := f.startInstance("c2")
		fr.note("instance c2 started at +%s", since(fr.start))
		// Clients that reach c2 before it is ready (its readiness probe
		// fails until the stream has a leader again): a subscriber, and a
		// publisher that stays there.
		early := f.startWatcher("w-c2-early", []string{c2.url(), f.instances["a"].url()}, failoverRooms)
		f.startPublisher("pc2", []string{c2.url(), f.instances["a"].url(), f.instances["b"].url()})
		f.waitNewLeader(fr, leader, killed, killed.Add(5*time.Second))
		f.sleepUntil(killed.Add(5 * time.Second))
		f.nc.Restart(leader)
		fr.note("%s restarted and healthy at +%s", leader, since(fr.start))
		f.waitNewLeader(fr, "", killed, killed.Add(failoverStep))
		f.poll(failoverStep, "instance c2 ready", c2.stream.Ready)
		fr.note("c2 ready at +%s", since(fr.start))
		f.poll(failoverStep, "w-c2-early subscribed", early.subscribed)
		// A client of a resumes on c2, another subscribes there afresh:
		// both see the stream's one epoch.
		f.watchers[0].move([]string{c2.url(), f.instances["a"].url()})
		f.addWatcher("w-c2", []string{c2.url(), f.instances["a"].url()}, failoverRooms)
	})
	f.fault("tail", func(fr *faultRecord) {})
	f.finish()
}

// failover is the state of one TestFailover run.
type failover struct {
	t      *testing.T
	msgIDs bool
	nc     *testutil.NATSCluster

	instances  map[string]*lcInstance
	watchers   []*watcher
	publishers []*namedPublisher
	probes     []*jsProbe
	faults     []*faultRecord
	stalled    map[string]bool // publishers not acknowledged again after a fault
	started    int             // instances started
	epoch      string          // the stream's, as the first subscription saw it
	created    string          // the stream's created time, as the first look saw it
	stopped    time.Time
	summarized bool
}

type namedPublisher struct {
	name string
	*testutil.Publisher
}

// faultRecord is one fault's window and what was seen in it.
type faultRecord struct {
	name       string
	start, end time.Time
	notes      []string
	elected    bool // a new stream leader was noted
}

func (fr *faultRecord) note(format string, args ...any) {
	fr.notes = append(fr.notes, fmt.Sprintf(format, args...))
}

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }

var failoverRooms = []string{"r0", "r1", "r2", "r3"}

func (f *failover) setup() {
	t := f.t
	t.Logf("message ids: %v", f.msgIDs)
	for _, name := range []string{"a", "b", "c"} {
		in := f.startInstance(name)
		f.poll(failoverStep, "instance "+name+" ready", in.stream.Ready)
	}
	// nats.go connects each instance to one of the three URLs at random:
	// should all three be on the same node, start c again (at most a few
	// times), so that every fault of a node hits instances on it and
	// instances elsewhere.
	for i := 0; len(f.connectedNodes()) < 2 && i < 5; i++ {
		f.instances["c"].close(t)
		in := f.startInstance("c")
		f.poll(failoverStep, "instance c ready", in.stream.Ready)
	}
	f.poll(failoverStep, "a stream leader", func() bool { return f.nc.StreamLeader(cluster.DefaultStream) != "" })
	for _, n := range f.nc.Names() {
		f.probes = append(f.probes, startJSProbe(t, n, f.nc.URL(n)))
	}
	// A new R3 stream may still answer "no responders" for a moment
	// after it has a leader: start once it takes publishes everywhere.
	f.poll(failoverStep, "a raw JetStream publish through every node acknowledged", func() bool {
		for _, pr := range f.probes {
			if !pr.acked() {
				return false
			}
		}
		return true
	})
	// Two subscribers per instance, each in three of the four rooms;
	// should their instance go, they resume on another one.
	names := []string{"a", "b", "c"}
	k := 0
	for i, name := range names {
		for j := range 2 {
			rooms := []string{failoverRooms[k%4], failoverRooms[(k+1)%4], failoverRooms[(k+2)%4]}
			other := f.instances[names[(i+1+j)%len(names)]]
			f.addWatcher(fmt.Sprintf("w%d-%s", k, name), []string{f.instances[name].url(), other.url()}, rooms)
			k++
		}
	}
	// One publisher per instance; should its instance go, it goes on
	// through the others.
	for i, name := range names {
		urls := []string{f.instances[name].url()}
		for j := 1; j < len(names); j++ {
			urls = append(urls, f.instances[names[(i+j)%len(names)]].url())
		}
		f.startPublisher("p"+name, urls)
	}
	f.poll(failoverStep, "the publishers connected", func() bool {
		for _, p := range f.publishers {
			if p.Connects() == 0 {
				return false
			}
		}
		return true
	})
}

// startInstance starts loopcast instance name over the cluster's stream
// (FileStorage, Replicas 3), like startJSNode, without waiting for it to
// be ready.
func (f *failover) startInstance(name string) *lcInstance {
	t := f.t
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = ""
	cfg.EventLoops = 2
	cfg.PublishRate = 0
	// The stream keeps twice this per room: all of the run's messages.
	cfg.HistoryMessages = 10000
	f.started++
	in := &lcInstance{name: name, natsName: fmt.Sprintf("loopcast-%s-%d", name, f.started), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("instance", name)
	st, err := cluster.NewStream(cluster.StreamOptions{
		URL: f.nc.URLs(), Name: in.natsName, Logger: log, MaxMessage: cfg.MaxMessage,
		Storage: jetstream.FileStorage, Replicas: 3,
		ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond,
		HistoryMessages: cfg.HistoryMessages, HistoryTTL: cfg.HistoryTTL, HistoryBytes: int64(cfg.HistoryMaxBytes),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Broker = st
	srv, err := server.New(cfg, log)
	if err != nil {
		st.CloseUnstarted()
		t.Fatal(err)
	}
	in.srv, in.stream = srv, st
	t.Cleanup(func() {
		in.close(t)
		if t.Failed() {
			t.Logf("instance %s log (tail):\n%s", name, lastBytes(in.logs.String(), 32<<10))
		}
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	f.instances[name] = in
	return in
}

// lcInstance is one loopcast instance over the JetStream stream.
type lcInstance struct {
	name     string
	natsName string // its NATS connection's name (connz)
	srv      *server.Server
	stream   *cluster.Stream
	logs     *syncBuffer
	once     sync.Once
	closed   bool // by close; read by the test's goroutine only
}

func (in *lcInstance) url() string { return "ws://" + in.srv.Addr().String() + "/ws" }

// close stops the instance at once (srv.Close: no drain, every socket
// dropped, like a killed pod), then its stream; bounded.
func (in *lcInstance) close(t *testing.T) {
	in.once.Do(func() {
		in.closed = true
		done := make(chan error, 1)
		go func() {
			err := in.srv.Close()
			_ = in.stream.Close(context.Background())
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("instance %s close: %v", in.name, err)
			}
		case <-time.After(failoverStep):
			t.Errorf("instance %s did not close within %s", in.name, failoverStep)
		}
	})
}

// addWatcher starts a watcher and waits until it subscribed.
func (f *failover) addWatcher(name string, urls, rooms []string) {
	w := f.startWatcher(name, urls, rooms)
	f.poll(failoverStep, name+" subscribed", w.subscribed)
	if f.epoch == "" {
		f.epoch = w.epochOf(rooms[0])
	}
}

func (f *failover) startWatcher(name string, urls, rooms []string) *watcher {
	w := startWatcher(name, urls, rooms)
	f.watchers = append(f.watchers, w)
	f.t.Cleanup(w.close)
	return w
}

// startPublisher starts a publisher that connects to the first of urls
// that answers.
func (f *failover) startPublisher(name string, urls []string) {
	p := testutil.StartPublisher(testutil.PublisherOptions{
		Name: name, URLs: urls, Rooms: failoverRooms, Interval: failoverRate,
		MsgIDs: f.msgIDs, RetryFor: failoverRetryFor,
	})
	f.publishers = append(f.publishers, &namedPublisher{name, p})
	f.t.Cleanup(p.Close)
}

// fault runs one fault, then waits for the cluster to have one leader
// and every node healthy, and for every publisher to be acknowledged
// again (bounded: the test goes on without), and publishes on for
// failoverObserve. The fault's window ends there.
func (f *failover) fault(name string, do func(*faultRecord)) {
	fr := &faultRecord{name: name, start: time.Now()}
	f.faults = append(f.faults, fr)
	f.look(fr, "before")
	do(fr)
	f.poll(failoverStep, "one stream leader and every NATS node healthy after "+name, func() bool {
		if f.nc.StreamLeader(cluster.DefaultStream) == "" {
			return false
		}
		for _, n := range f.nc.Names() {
			if !f.nc.Healthy(n) {
				return false
			}
		}
		return true
	})
	settled := time.Now()
	fr.note("cluster settled at +%s, stream leader %s", since(fr.start), f.nc.StreamLeader(cluster.DefaultStream))
	deadline := settled.Add(failoverRecover)
	for len(f.unacked(settled)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if late := f.unacked(settled); len(late) == 0 {
		fr.note("every publisher acknowledged again %s after that", since(settled))
	} else {
		fr.note("NOT acknowledged again within %s of that: %v", failoverRecover, late)
		for _, p := range late {
			f.stalled[p] = true // not waited for again
		}
	}
	f.look(fr, "after")
	time.Sleep(failoverObserve) // publishing goes on: the load between faults
	fr.end = time.Now()
}

// unacked are the publishers, except those known to be stalled, that
// got no acknowledgement for a pub sent after t.
func (f *failover) unacked(t time.Time) []string {
	var late []string
	for _, p := range f.publishers {
		if f.stalled[p.name] {
			continue
		}
		ok := false
		for _, x := range slices.Backward(p.Publishes()) {
			if len(x.Attempts) > 0 && x.Attempts[0].Sent.Before(t) {
				break
			}
			if x.Ack() != nil {
				ok = true
				break
			}
		}
		if !ok {
			late = append(late, p.name)
		}
	}
	return late
}

// look notes the stream's leader, each replica's view of the stream
// (created time, configuration, last sequence, whom it takes for the
// leader) and which NATS node each instance is connected to.
func (f *failover) look(fr *faultRecord, when string) {
	views := f.nc.StreamReplicas(cluster.DefaultStream)
	created := map[string][]string{} // created time -> nodes
	configs := map[string][]string{} // configuration JSON -> nodes
	var state []string
	for _, n := range f.nc.Names() {
		v, ok := views[n]
		if !ok {
			state = append(state, n+" -")
			continue
		}
		c := v.Created.UTC().Format(time.RFC3339Nano)
		if f.created == "" {
			f.created = c
		}
		created[c] = append(created[c], n)
		configs[string(v.Config)] = append(configs[string(v.Config)], n)
		leader := "-"
		if v.Cluster != nil && v.Cluster.Leader != "" {
			leader = v.Cluster.Leader
		}
		state = append(state, fmt.Sprintf("%s last %d leader %s", n, v.State.LastSeq, leader))
	}
	var cs []string
	for _, c := range sortedKeys(created) {
		mark := ""
		if c != f.created {
			mark = " (CHANGED)"
		}
		cs = append(cs, fmt.Sprintf("%s on %s%s", c, strings.Join(created[c], ","), mark))
	}
	var conns []string
	for _, name := range sortedKeys(f.instances) {
		conns = append(conns, fmt.Sprintf("%s@%s", name, or(f.nc.ClientServer(f.instances[name].natsName), "-")))
	}
	fr.note("%s: replicas [%s]; created %s; %d distinct configurations; instances on %s",
		when, strings.Join(state, "; "), strings.Join(cs, " | "), len(configs), strings.Join(conns, " "))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// connections are the live instances by the NATS node they are
// connected to.
func (f *failover) connections() map[string][]string {
	on := map[string][]string{}
	for _, name := range sortedKeys(f.instances) {
		if in := f.instances[name]; !in.closed {
			n := f.nc.ClientServer(in.natsName)
			on[n] = append(on[n], name)
		}
	}
	return on
}

// connectedNodes are the NATS nodes that live instances are connected
// to (polling until every instance shows up on one).
func (f *failover) connectedNodes() map[string]bool {
	nodes := map[string]bool{}
	f.poll(failoverStep, "every instance connected to a NATS node", func() bool {
		clear(nodes)
		for n, names := range f.connections() {
			if n == "" {
				return false
			}
			nodes[n] = len(names) > 0
		}
		return true
	})
	return nodes
}

// placeLeader makes the stream's leader a node that some instances are
// connected to while others are connected elsewhere, moving the leader
// if needed (nats.go picks an instance's server at random): so that a
// fault of the leader hits both kinds. When all the instances are on one
// node, the leader is another one. It returns the leader.
func (f *failover) placeLeader(fr *faultRecord) string {
	leader, on := f.nc.StreamLeader(cluster.DefaultStream), f.connections()
	elsewhere := func(node string) int {
		n := 0
		for k, v := range on {
			if k != node && k != "" {
				n += len(v)
			}
		}
		return n
	}
	if leader == "" || len(on[leader]) == 0 || elsewhere(leader) == 0 {
		best := ""
		for _, n := range f.nc.Names() {
			if len(on[n]) > 0 && elsewhere(n) > 0 && (best == "" || len(on[n]) < len(on[best])) {
				best = n
			}
		}
		if best == "" {
			// All on one node: the leader goes elsewhere, so that the
			// fault hits instances whose connection survives (issue 31).
			for _, n := range f.nc.Names() {
				if len(on[n]) == 0 && (best == "" || n == leader) {
					best = n
				}
			}
			fr.note("instances %v all on one node: the fault hits none on the leader", on)
		}
		if best != "" && best != leader {
			f.nc.MoveStreamLeader(cluster.DefaultStream, best)
			fr.note("moved the stream leader from %s to %s (stepdown) at +%s", leader, best, since(fr.start))
		}
	}
	leader = f.leader(fr)
	fr.note("instances on the leader: %v; elsewhere: %d", on[leader], elsewhere(leader))
	return leader
}

// leader is the stream's leader, noted.
func (f *failover) leader(fr *faultRecord) string {
	l := f.nc.StreamLeader(cluster.DefaultStream)
	if l == "" {
		f.t.Fatalf("%s: no stream leader", fr.name)
	}
	fr.note("stream leader %s", l)
	return l
}

// waitNewLeader polls until the stream has a leader other than old (""
// any), or until deadline, and notes when it came after the fault (or
// that it did not).
// Once a new leader was noted, it returns at once.
func (f *failover) waitNewLeader(fr *faultRecord, old string, fault, deadline time.Time) {
	if fr.elected {
		return
	}
	for time.Now().Before(deadline) {
		if l := f.nc.StreamLeader(cluster.DefaultStream); l != "" && l != old {
			fr.note("new stream leader %s at +%s (%s after the fault)", l, since(fr.start), since(fault))
			fr.elected = true
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fr.note("no new stream leader by +%s", deadline.Sub(fr.start).Round(10*time.Millisecond))
}

// sleepUntil waits for a point of the fault's timeline (a restart 5 s
// after a kill); the load runs meanwhile.
func (f *failover) sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

func (f *failover) poll(timeout time.Duration, what string, cond func() bool) {
	f.t.Helper()
	testutil.WaitFor(f.t, timeout, what, cond)
}

// finish stops publishing, waits until everything is answered and
// delivered that will be, then checks and summarises.
func (f *failover) finish() {
	for _, p := range f.publishers {
		p.StopPublishing()
	}
	f.stopped = time.Now()
	for _, pr := range f.probes {
		pr.stop()
	}
	// Every attempt answered, or older than the bound, and no retry due.
	// Bounded: what is not answered then is reported below.
	settled := func() bool {
		for _, p := range f.publishers {
			if !p.Settled(failoverAnswerBound) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(failoverRetryFor + failoverAnswerBound + failoverObserve)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Every subscriber has every acknowledged message of its rooms, and
	// the subscribers of a room agree on its last offset. Bounded: what
	// is missing then is reported below.
	deadline = time.Now().Add(failoverStep)
	for !f.delivered() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range f.publishers {
		p.Close()
	}
	for _, w := range f.watchers {
		w.close()
	}
	f.summary()
	f.check()
}

// summaryAtCleanup logs the summary of the faults so far, should the
// test stop before finish.
func (f *failover) summaryAtCleanup() {
	f.t.Cleanup(func() {
		if !f.summarized {
			if f.stopped.IsZero() {
				f.stopped = time.Now()
			}
			f.summary()
		}
	})
}

// delivered reports whether every watcher has every acknowledged
// publish of its rooms that its subscription covers, and the watchers
// of each room reached the same offset.
func (f *failover) delivered() bool {
	last := map[string]uint64{}
	for _, w := range f.watchers {
		for _, room := range w.rooms {
			last[room] = max(last[room], w.lastOf(room))
		}
	}
	for _, w := range f.watchers {
		have := w.offsets()
		for _, room := range w.rooms {
			if w.lastOf(room) != last[room] {
				return false
			}
		}
		for _, p := range f.publishers {
			for _, x := range p.Publishes() {
				a := x.Ack()
				if a == nil || !w.covers(x.Room, a.Offset) {
					continue
				}
				if !have[x.Room][a.Offset] {
					return false
				}
			}
		}
	}
	return true
}

// check asserts, for every publish, its answer and its fate.
func (f *failover) check() {
	t := f.t
	type key struct{ watcher, payload string }
	got := map[key][]delivery{}
	errs := map[string][]string{}
	report := func(kind, format string, args ...any) {
		errs[kind] = append(errs[kind], fmt.Sprintf(format, args...))
	}
	for _, w := range f.watchers {
		for _, d := range w.deliveries() {
			got[key{w.name, d.payload}] = append(got[key{w.name, d.payload}], d)
		}
		for _, fault := range w.faultList() {
			report("subscriber "+w.name, "%s", fault)
		}
		for _, room := range w.rooms {
			if e := w.epochOf(room); e != f.epoch {
				report("subscribed in another epoch", "%s: %s subscribed in epoch %s, the stream's is %s", w.name, room, e, f.epoch)
			}
		}
	}
	published := map[string]bool{}
	for _, p := range f.publishers {
		for _, fault := range p.Faults() {
			report("publisher "+p.name, "%s", fault)
		}
		for _, x := range p.Publishes() {
			published[x.Payload] = true
			for _, a := range x.Attempts {
				switch {
				case a.Kind == testutil.NoAnswer:
					report("unanswered", "%s: attempt %d (%s via %s) never answered", x.Payload, a.ID, a.Sent.Format("15:04:05.000"), a.Via)
				case a.Kind == testutil.Dropped && a.Answered.Sub(a.Sent) > failoverAnswerBound:
					report("unanswered", "%s: attempt %d (%s via %s) not answered in the %s before its connection dropped", x.Payload, a.ID, a.Sent.Format("15:04:05.000"), a.Via, a.Answered.Sub(a.Sent).Round(time.Millisecond))
				case a.Kind != testutil.Dropped && a.Answered.Sub(a.Sent) > failoverAnswerBound:
					report("late", "%s: attempt %d answered after %s: %q", x.Payload, a.ID, a.Answered.Sub(a.Sent).Round(time.Millisecond), a.Line)
				case a.Kind == testutil.Refused && a.Code != "unavailable":
					report("refused other", "%s: attempt %d: %q", x.Payload, a.ID, a.Line)
				}
			}
			ack := x.Ack()
			for _, a := range x.Attempts {
				if a.Kind == testutil.Acked && (a.Epoch != ack.Epoch || a.Offset != ack.Offset) {
					report("acks disagree", "%s: acknowledged at %s %d and at %s %d", x.Payload, ack.Epoch, ack.Offset, a.Epoch, a.Offset)
				}
			}
			switch x.Outcome() {
			case testutil.Confirmed:
				if ack.Epoch != f.epoch {
					report("ack epoch", "%s: acknowledged in epoch %s, the stream's is %s", x.Payload, ack.Epoch, f.epoch)
				}
				for _, w := range f.watchers {
					if !slices.Contains(w.rooms, x.Room) || !w.covers(x.Room, ack.Offset) {
						continue
					}
					ds := got[key{w.name, x.Payload}]
					switch {
					case len(ds) == 0:
						report("acked, not delivered", "%s (%s %d) not delivered to %s", x.Payload, ack.Epoch, ack.Offset, w.name)
					case len(ds) > 1:
						report("acked, delivered twice", "%s delivered %d times to %s", x.Payload, len(ds), w.name)
					case ds[0].epoch != ack.Epoch || ds[0].offset != ack.Offset:
						report("acked, delivered elsewhere", "%s acknowledged at %s %d, delivered to %s at %s %d", x.Payload, ack.Epoch, ack.Offset, w.name, ds[0].epoch, ds[0].offset)
					}
				}
			case testutil.Rejected:
				for _, w := range f.watchers {
					if ds := got[key{w.name, x.Payload}]; len(ds) > 0 {
						report("refused, delivered", "%s refused (%q) but delivered to %s at %s %d", x.Payload, x.Attempts[len(x.Attempts)-1].Line, w.name, ds[0].epoch, ds[0].offset)
					}
				}
			default:
				if f.msgIDs {
					report("unresolved", "%s: no attempt acknowledged, outcome unknown: %s", x.Payload, attemptsString(x.Attempts))
				}
				for _, w := range f.watchers {
					if ds := got[key{w.name, x.Payload}]; len(ds) > 1 {
						report("unresolved, delivered twice", "%s delivered %d times to %s", x.Payload, len(ds), w.name)
					}
				}
			}
		}
	}
	for k := range got {
		if !published[k.payload] {
			report("delivered, never published", "%s got %q", k.watcher, k.payload)
		}
	}
	for _, kind := range sortedKeys(errs) {
		l := errs[kind]
		t.Errorf("%s: %d, e.g.:\n  %s", kind, len(l), strings.Join(l[:min(len(l), 5)], "\n  "))
	}
}

func attemptsString(as []testutil.Attempt) string {
	var s []string
	for _, a := range as {
		s = append(s, fmt.Sprintf("%d:%s", a.ID, a.Kind))
	}
	return strings.Join(s, ",")
}

// summary logs the figures of each fault's window: publishes, answers,
// the longest time without an acknowledgement per publisher, and what
// the raw JetStream probes got.
func (f *failover) summary() {
	f.summarized = true
	var b strings.Builder
	fmt.Fprintf(&b, "TestFailover summary (message ids %v, %d pubs/s per publisher, answer bound %s)\n", f.msgIDs, time.Second/failoverRate, failoverAnswerBound)
	fmt.Fprintf(&b, "stream epoch %s, created %s\n", f.epoch, f.created)
	delivered := map[string]int{}
	for _, w := range f.watchers {
		seen := map[string]bool{}
		for _, d := range w.deliveries() {
			if !seen[d.payload] {
				seen[d.payload] = true
				delivered[d.payload]++
			}
		}
	}
	var total, acked, refused, unknown, dropped, unanswered, retried int
	for _, p := range f.publishers {
		for _, x := range p.Publishes() {
			total++
			switch x.Outcome() {
			case testutil.Confirmed:
				acked++
			case testutil.Rejected:
				refused++
			}
			if len(x.Attempts) > 1 {
				retried++
			}
			for _, a := range x.Attempts {
				switch a.Kind {
				case testutil.Unknown:
					unknown++
				case testutil.Dropped:
					if a.Answered.Sub(a.Sent) > failoverAnswerBound {
						unanswered++
					} else {
						dropped++
					}
				case testutil.NoAnswer:
					unanswered++
				}
			}
		}
	}
	fmt.Fprintf(&b, "all: %d publishes: %d acknowledged, %d refused, %d unresolved; %d retried; attempts: %d answered unknown, %d dropped with their connection, %d not answered within the bound\n",
		total, acked, refused, total-acked-refused, retried, unknown, dropped, unanswered)
	for i, fr := range f.faults {
		end := f.stopped
		if i+1 < len(f.faults) {
			end = f.faults[i+1].start
		}
		fmt.Fprintf(&b, "\n[%s] %s long\n", fr.name, end.Sub(fr.start).Round(10*time.Millisecond))
		for _, n := range fr.notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
		for _, p := range f.publishers {
			fmt.Fprintf(&b, "  %s: %s\n", p.name, windowStats(p.Publishes(), delivered, fr.start, end))
		}
		for _, pr := range f.probes {
			fmt.Fprintf(&b, "  raw JetStream publish via %s: %s\n", pr.node, pr.window(fr.start, end))
		}
	}
	for _, w := range f.watchers {
		fmt.Fprintf(&b, "subscriber %s: %d messages, %d connections, resumes %v, sub refusals %d\n", w.name, len(w.deliveries()), w.connectCount(), w.resumeList(), w.refusalCount())
	}
	f.t.Log(b.String())
}

// windowStats counts what became of the publishes first sent in
// [from, to), the refusals' reasons, what was delivered of those that
// were not acknowledged, and the longest time without an acknowledgement
// arriving in that window. delivered counts the subscribers that got a
// payload.
func windowStats(pubs []testutil.Publish, delivered map[string]int, from, to time.Time) string {
	var n, acked, refused, refusedDelivered, unresolved, unresolvedDelivered, unknown, dropped, none, late int
	var slowest time.Duration
	var ackTimes []time.Time
	reasons := map[string]int{}
	for _, x := range pubs {
		for _, a := range x.Attempts {
			if a.Kind == testutil.Acked && !a.Answered.Before(from) && a.Answered.Before(to) {
				ackTimes = append(ackTimes, a.Answered)
			}
		}
		if len(x.Attempts) == 0 || x.Attempts[0].Sent.Before(from) || !x.Attempts[0].Sent.Before(to) {
			continue
		}
		n++
		switch x.Outcome() {
		case testutil.Confirmed:
			acked++
		case testutil.Rejected:
			refused++
			if delivered[x.Payload] > 0 {
				refusedDelivered++
			}
		default:
			unresolved++
			if delivered[x.Payload] > 0 {
				unresolvedDelivered++
			}
		}
		for _, a := range x.Attempts {
			switch {
			case a.Kind == testutil.Unknown:
				unknown++
			case a.Kind == testutil.NoAnswer, a.Kind == testutil.Dropped && a.Answered.Sub(a.Sent) > failoverAnswerBound:
				none++
			case a.Kind == testutil.Dropped:
				dropped++
			case a.Kind == testutil.Refused:
				if f := strings.SplitN(a.Line, " ", 3); len(f) == 3 {
					reasons[f[2]]++
				}
			}
			if a.Kind != testutil.NoAnswer && a.Kind != testutil.Dropped {
				d := a.Answered.Sub(a.Sent)
				slowest = max(slowest, d)
				if d > failoverAnswerBound {
					late++
				}
			}
		}
	}
	sort.Slice(ackTimes, func(i, j int) bool { return ackTimes[i].Before(ackTimes[j]) })
	gap, prev := time.Duration(0), from
	for _, at := range ackTimes {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	gap = max(gap, to.Sub(prev))
	noAck := ""
	if len(ackTimes) == 0 {
		noAck = " (no acknowledgement at all)"
	}
	var rs []string
	for _, r := range sortedKeys(reasons) {
		rs = append(rs, fmt.Sprintf("%dx %q", reasons[r], r))
	}
	return fmt.Sprintf("%d publishes: %d acked, %d refused (%d of them delivered), %d unresolved (%d of them delivered); "+
		"attempts answered unknown %d, dropped with the connection %d, not answered within %s %d, answered late %d; "+
		"slowest answer %s; longest without an ack %s%s; refusals: %s",
		n, acked, refused, refusedDelivered, unresolved, unresolvedDelivered, unknown, dropped, failoverAnswerBound, none, late,
		slowest.Round(time.Millisecond), gap.Round(10*time.Millisecond), noAck, strings.Join(rs, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[…]" + s[len(s)-n:]
}

// watcher is a loopcast.v1 subscriber that records every message of its
// rooms with its epoch and offset, and resumes from the last one on
// another connection (the next URL that answers) when its connection
// drops. It notes as faults: a resume that is not recovered, an epoch
// other than the room's first, an offset that does not increase, an err.
type watcher struct {
	name  string
	rooms []string

	mu       sync.Mutex
	urls     []string
	conn     *gorilla.Conn
	state    map[string]*watchRoom
	faults   []string
	resumes  []string
	refusals []string // err answers to sub
	connects int
	closed   bool
	done     chan struct{}
}

type watchRoom struct {
	epoch       string
	start, last uint64 // offset of the first sub reply; of the last message (or reply)
	got         []delivery
	otherEpoch  int // messages in another epoch than the room's
}

type delivery struct {
	epoch   string
	offset  uint64
	payload string
}

func startWatcher(name string, urls, rooms []string) *watcher {
	w := &watcher{name: name, rooms: rooms, urls: urls, state: map[string]*watchRoom{}, done: make(chan struct{})}
	go w.run()
	return w
}

func (w *watcher) subscribed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.rooms {
		if w.state[r] == nil {
			return false
		}
	}
	return true
}

func (w *watcher) epochOf(room string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state[room].epoch
}

func (w *watcher) lastOf(room string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.state[room]; s != nil {
		return s.last
	}
	return 0
}

// covers reports whether the watcher's subscription to room covers
// offset: it was subscribed before the message was placed.
func (w *watcher) covers(room string, offset uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state[room]
	return s != nil && offset > s.start
}

func (w *watcher) offsets() map[string]map[uint64]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]map[uint64]bool{}
	for room, s := range w.state {
		m[room] = map[uint64]bool{}
		for _, d := range s.got {
			m[room][d.offset] = true
		}
	}
	return m
}

func (w *watcher) deliveries() []delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	var all []delivery
	for _, s := range w.state {
		all = append(all, s.got...)
	}
	return all
}

func (w *watcher) faultList() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := append([]string(nil), w.faults...)
	for _, room := range w.rooms {
		if s := w.state[room]; s != nil && s.otherEpoch > 0 {
			l = append(l, fmt.Sprintf("%s: %d messages in another epoch than the room's %s", room, s.otherEpoch, s.epoch))
		}
	}
	return l
}

func (w *watcher) resumeList() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.resumes...)
}

func (w *watcher) refusalCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.refusals)
}

func (w *watcher) connectCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.connects
}

// move makes the watcher resume on urls: its connection is closed, and
// the next one goes to the first of urls that answers.
func (w *watcher) move(urls []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.urls = urls
	if w.conn != nil {
		_ = w.conn.Close()
	}
}

func (w *watcher) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		if w.conn != nil {
			_ = w.conn.Close()
		}
	}
	w.mu.Unlock()
	<-w.done
}

func (w *watcher) fault(format string, args ...any) {
	w.faults = append(w.faults, fmt.Sprintf(format, args...))
}

func (w *watcher) run() {
	defer close(w.done)
	backoff := 10 * time.Millisecond
	for {
		w.mu.Lock()
		closed, urls := w.closed, w.urls
		w.mu.Unlock()
		if closed {
			return
		}
		var c *gorilla.Conn
		for _, u := range urls {
			d := gorilla.Dialer{Subprotocols: []string{"loopcast.v1"}, HandshakeTimeout: 5 * time.Second}
			var err error
			if c, _, err = d.Dial(u, nil); err == nil {
				break
			}
		}
		if c == nil {
			time.Sleep(backoff/2 + rand.N(backoff))
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		w.session(c)
		time.Sleep(rand.N(100 * time.Millisecond)) // reconnect jitter
	}
}

// session subscribes (or resumes) every room on c and reads until c
// drops.
func (w *watcher) session(c *gorilla.Conn) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		_ = c.Close()
		return
	}
	w.conn = c
	w.connects++
	var cmds []string
	for i := range w.rooms {
		cmds = append(cmds, w.subCommand(i))
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.conn = nil
		w.mu.Unlock()
		_ = c.Close()
	}()
	for _, cmd := range cmds {
		if err := c.WriteMessage(gorilla.TextMessage, []byte(cmd)); err != nil {
			return
		}
	}
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return
		}
		w.mu.Lock()
		again := w.handle(b)
		w.mu.Unlock()
		if again != "" {
			// A sub refused as unavailable: ask again, as a client does.
			time.Sleep(200 * time.Millisecond)
			if err := c.WriteMessage(gorilla.TextMessage, []byte(again)); err != nil {
				return
			}
		}
	}
}

// subCommand subscribes to room i, or resumes it; under w.mu.
func (w *watcher) subCommand(i int) string {
	room := w.rooms[i]
	if s := w.state[room]; s != nil {
		return fmt.Sprintf("sub %d %s %s %d", i+1, room, s.epoch, s.last)
	}
	return fmt.Sprintf("sub %d %s", i+1, room)
}

// handle checks one frame; under w.mu. It returns the sub command to
// send again after a refusal with unavailable, or "".
func (w *watcher) handle(b []byte) (again string) {
	line, body, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	switch {
	case len(f) == 6 && f[0] == "sub":
		room, epoch, status := f[2], f[3], f[5]
		off, _ := strconv.ParseUint(f[4], 10, 64)
		s := w.state[room]
		if s == nil {
			if status != "live" {
				w.fault("first subscription to %s answered %q", room, line)
			}
			w.state[room] = &watchRoom{epoch: epoch, start: off, last: off}
			return
		}
		w.resumes = append(w.resumes, status)
		switch {
		case status != "recovered":
			w.fault("resume of %s from %s %d answered %q", room, s.epoch, s.last, line)
		case epoch != s.epoch:
			w.fault("resume of %s from %s %d: epoch %s", room, s.epoch, s.last, epoch)
		case off < s.last:
			w.fault("resume of %s from %s %d: last replayed %d", room, s.epoch, s.last, off)
		}
	case len(f) == 4 && f[0] == "msg":
		room, epoch := f[1], f[2]
		off, _ := strconv.ParseUint(f[3], 10, 64)
		s := w.state[room]
		switch {
		case s == nil:
			w.fault("msg of %s before its subscription: %q", room, line)
			return
		case epoch != s.epoch:
			if s.otherEpoch++; s.otherEpoch == 1 {
				w.fault("%s: msg in epoch %s at %d, the room's epoch is %s (later ones not listed)", room, epoch, off, s.epoch)
			}
		case off <= s.last:
			w.fault("%s: offset %d after %d", room, off, s.last)
		}
		s.got = append(s.got, delivery{epoch, off, string(body)})
		s.last = off
	case len(f) >= 3 && f[0] == "err":
		id, err := strconv.Atoi(f[1])
		if err != nil || id < 1 || id > len(w.rooms) {
			w.fault("unexpected frame %q", b)
			return ""
		}
		w.refusals = append(w.refusals, string(line))
		if f[2] != "unavailable" && f[2] != "offset_ahead" {
			w.fault("sub of %s refused: %q", w.rooms[id-1], line)
			return ""
		}
		// Refused for now (the instance is behind the log, PROTOCOL.md):
		// subscribe again, as the clients do.
		return w.subCommand(id - 1)
	default:
		w.fault("unexpected frame %q", b)
	}
	return ""
}

// jsProbe publishes straight to the stream through one NATS node
// (synchronous JetStream publish, 2 s timeout, 5/s) and records what
// each publish got: how nats-server answers during a failover.
type jsProbe struct {
	node string
	nc   *nats.Conn

	mu      sync.Mutex
	results []probeResult
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

type probeResult struct {
	at      time.Time
	took    time.Duration
	outcome string
}

func startJSProbe(t *testing.T, node, url string) *jsProbe {
	nc, err := nats.Connect(url, nats.Name("probe-"+node), nats.IgnoreDiscoveredServers(), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	p := &jsProbe{node: node, nc: nc, quit: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(p.stop)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-tick.C:
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := js.Publish(ctx, "loopcast.room.probe.text", []byte("probe"))
			cancel()
			p.mu.Lock()
			p.results = append(p.results, probeResult{start, time.Since(start), probeOutcome(nc, err)})
			p.mu.Unlock()
		}
	}()
	return p
}

func probeOutcome(nc *nats.Conn, err error) string {
	switch {
	case err == nil:
		return "ok"
	case !nc.IsConnected():
		return "disconnected"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return "no responders"
	default:
		return err.Error()
	}
}

// acked reports whether a publish of the probe was acknowledged.
func (p *jsProbe) acked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.results {
		if r.outcome == "ok" {
			return true
		}
	}
	return false
}

func (p *jsProbe) stop() {
	p.once.Do(func() {
		close(p.quit)
		<-p.done
		p.nc.Close()
	})
}

// window summarises the probe's publishes started in [from, to).
func (p *jsProbe) window(from, to time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := map[string]int{}
	var slowOK time.Duration
	var firstBad, lastBad time.Time
	for _, r := range p.results {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		counts[r.outcome]++
		if r.outcome == "ok" {
			slowOK = max(slowOK, r.took)
		} else {
			if firstBad.IsZero() {
				firstBad = r.at
			}
			lastBad = r.at
		}
	}
	var parts []string
	for _, k := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	s := strings.Join(parts, ", ") + fmt.Sprintf("; slowest ok %s", slowOK.Round(time.Millisecond))
	if !firstBad.IsZero() {
		s += fmt.Sprintf("; failures from +%s to +%s", firstBad.Sub(from).Round(10*time.Millisecond), lastBad.Sub(from).Round(10*time.Millisecond))
	}
	return s
}
