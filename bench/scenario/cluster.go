package scenario

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/internal/natscluster"
)

// ClusterConfig drives the cluster scenario: a production-shaped loopcast
// cluster on one machine, under the faults AKS inflicts (issues 29, 31).
// The scenario starts everything itself: a NATS cluster with JetStream
// (NATSNodes nats-server processes, the room stream at min(3, NATSNodes)
// replicas on file storage, as deploy/ installs it) and Instances loopcast
// processes, each on its own port with every NATS URL. Conns loopcast.v1
// clients spread over the instances subscribe to RoomsPerConn rooms each:
// one room with everyone, one medium room (MediumMembers), the others small
// (SmallMembers). Publishers (PublishersPerInstance on each instance)
// publish Rate messages a second over the rooms but the broadcast one,
// and BroadcastRate to it, every pub with a msgid, one message at a time
// per room and publisher, so that its sequence is also its place in the
// room.
//
// Then, one after another, each fault of Faults, each bounded by
// FaultTimeout:
//
//	a  SIGKILL the NATS server that leads the stream, restart it NATSRestartAfter later
//	b  SIGSTOP the leader for FreezeFor, then SIGCONT (a partition that heals)
//	c  SIGKILL a loopcast instance (no drain), restart it InstanceRestartAfter later;
//	   its clients reconnect to another instance and resume
//	d  every client socket closed at once (an Application Gateway configuration
//	   update); every client reconnects to another instance and resumes
//
// Every client checks every room's messages: order, gaps, duplicates,
// epochs, resumes. Every publish is held against its answer and its fate.
// The run fails (result errors) on any delivery fault, any epoch change,
// any publish not answered within AnswerBound, any publish not
// acknowledged in the end, any resume not recovered.
type ClusterConfig struct {
	Common // Addr, PID and Duration do not apply; Server labels the result

	Instances             int     // loopcast processes; default 3
	NATSNodes             int     // nats-server processes; default 3
	Conns                 int     // subscribing clients; default 2000
	RoomsPerConn          int     // subscriptions per client; default 5
	MediumMembers         int     // members of a medium room; default 500
	SmallMembers          int     // members of a small room; default 20
	Rate                  float64 // messages/s over every room but the broadcast one; default 200
	BroadcastRate         float64 // messages/s to the room with everyone; default 5
	PublishersPerInstance int     // default 1
	Size                  int     // payload bytes; default 64

	// Faults, in order: letters of a, b, c, d (see above); "none" for
	// none. Default "abcd".
	Faults string
	// Warm is publishing before the first fault, Observe after each fault
	// healed. Defaults 10 s and 10 s.
	Warm, Observe time.Duration
	// FaultTimeout bounds each fault's healing: every publisher
	// acknowledged again, every client back, the NATS cluster healthy.
	// Default 60 s.
	FaultTimeout time.Duration
	// NATSRestartAfter (fault a, default 5 s), FreezeFor (fault b,
	// default 8 s), InstanceRestartAfter (fault c, default 2 s).
	NATSRestartAfter, FreezeFor, InstanceRestartAfter time.Duration
	// AnswerBound: a pub not answered within it is a failure (PROTOCOL.md
	// promises 5 s). Default 15 s.
	AnswerBound time.Duration
	// RetryFor: a message is retried this long after its first attempt,
	// then left unresolved (a failure). Default 60 s.
	RetryFor time.Duration
	// Backoff is the clients' first reconnect delay (full jitter,
	// doubling to 2 s). Default 50 ms.
	Backoff time.Duration

	// ServerCPUs is the taskset CPU list every server process runs on
	// ("0"); empty: not pinned.
	ServerCPUs string
	// LoopcastBin and NATSBin are the binaries; empty: built from this
	// module with go build (the run must start inside it).
	LoopcastBin, NATSBin string
	// Dir holds binaries, NATS stores and every process's log; empty: a
	// temporary directory, removed at the end unless the run failed or
	// Keep is set.
	Dir  string
	Keep bool
	// LoopcastArgs are extra flags for every loopcast instance.
	LoopcastArgs []string
	// Timeout bounds the whole run; default 10 min.
	Timeout time.Duration
}

// Metric names of the cluster scenario (Result.Metrics and Fault.Metrics).
const (
	AckGapMax            = "ack_gap_max_s"           // longest time a publisher went without an acknowledgement
	AckGapPrefix         = "ack_gap_s."              // + publisher: its longest time without one
	AttemptsAcked        = "attempts_acked"          // pub frames answered with a position
	AttemptsUnknown      = "attempts_unknown"        // answered err unknown
	AttemptsRefused      = "attempts_refused"        // answered another err (unavailable)
	AttemptsDropped      = "attempts_dropped"        // connection lost before the answer
	AttemptsOverdue      = "attempts_unanswered"     // not answered within AnswerBound
	SlowestAnswer        = "answer_max_s"            // longest wait of a pub for its answer
	MessagesUnknown      = "msgs_unknown"            // messages with an attempt answered unknown
	UnknownAcked         = "unknown_then_acked"      // of those, acknowledged on a retry
	UnknownOnce          = "unknown_delivered_once"  // of those, delivered exactly once everywhere, at the acknowledged offset
	MessagesRefusedFirst = "msgs_refused_new_msgid"  // messages republished with a new msgid after a refusal
	Unresolved           = "msgs_unresolved"         // never acknowledged
	RefusedDelivered     = "refused_but_delivered"   // a refused attempt's message delivered twice
	Misplaced            = "misplaced"               // delivered at another offset than acknowledged
	EpochChanges         = "epoch_changes"           // msg in another epoch, or resume answered epoch_changed
	ResumesRecovered     = "resumes_recovered"       // sub with a position answered recovered
	ResumesNotRecovered  = "resumes_not_recovered"   // answered epoch_changed or history_passed
	ResumeRefused        = "resume_errors"           // a resume answered err (offset_ahead …), retried
	Reconnects           = "reconnects"              // client connections made again
	HealSeconds          = "heal_s"                  // injection to every publisher acknowledged and every client back
	LeaderElectedSeconds = "leader_elected_s"        // injection to a new stream leader
	PublishedMessages    = "msgs_published"          // messages (not attempts)
	ProtocolFaults       = "protocol_faults"         // frames the clients could not make sense of
	DeliveredUnpublished = "delivered_not_published" // a message nobody published (or delivered before its subscription)
)

// clusterRun is one run of the cluster scenario.
type clusterRun struct {
	cfg     ClusterConfig
	r       *result.Result
	fleet   *fleet
	dialers []*dialer // one per instance, loopcast.v1
	hs      hist.Histogram
	rooms   []*clRoom
	byName  map[string]*clRoom
	subs    []*subscriber
	pubs    []*publisher
	pr      *progress

	subWG     sync.WaitGroup
	subCancel context.CancelFunc

	start    time.Time // publishing started
	pubEnd   time.Time // publishing stopped (the tail began)
	phasesMu sync.Mutex
	phases   []*phase
	phase    atomic.Int32 // index of the current phase, for attempts
	cur      atomic.Pointer[phase]
	stopping atomic.Bool // the end: closes are no faults

	ready atomic.Int64 // subscribers with every subscription answered on their connection

	mu       sync.Mutex
	epochs   map[string]int // every epoch seen first by a client-room or an ack
	refusals map[string]int // err codes answered, by code
	oddities []string       // protocol faults, the first few
	oddCount atomic.Int64
	examples map[string]bool // delivery faults noted (under mu)
}

// Cluster runs the cluster scenario. The result's errors say what failed;
// an error return means it could not run (a build, a process that would
// not start).
func Cluster(ctx context.Context, cfg ClusterConfig) (_ *result.Result, err error) {
	if err := cfg.clusterDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	s := &clusterRun{cfg: cfg, byName: map[string]*clRoom{}, epochs: map[string]int{}, refusals: map[string]int{}}
	s.r = result.New(result.Cluster, cfg.Server, "")
	s.pr = startProgress(cfg.Progress, "cluster")
	defer s.pr.close()

	f, err := startFleet(ctx, &s.cfg, s.pr)
	if f != nil {
		defer func() {
			if dir := f.stop(err != nil || !s.r.OK()); dir != "" && err != nil {
				err = fmt.Errorf("%w (logs in %s)", err, dir)
			} else if dir != "" {
				s.r.Warnf("work directory kept: %s (every process's log, NATS stores, /metrics at the end)", dir)
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	s.fleet = f
	s.r.Addr = strings.Join(f.addrs(), ",")
	s.layout()
	s.r.Params = result.Params{Conns: cfg.Conns, Publishers: len(s.pubs), Rate: cfg.Rate + cfg.BroadcastRate, Size: cfg.Size,
		SourceIPs: cfg.SourceIPs, Instances: cfg.Instances, NATSNodes: cfg.NATSNodes, Rooms: len(s.rooms), RoomsPerConn: cfg.RoomsPerConn}

	t0 := time.Now()
	if err = s.connect(ctx); err != nil {
		s.endClients()
		return nil, err
	}
	s.r.Metrics[result.SetupSeconds] = round3(time.Since(t0).Seconds())

	u := startUsage(0)
	cpu := f.startCPU()
	s.start = time.Now()
	warm := newPhase("warm: publishing before the first fault", s.start)
	s.phases = []*phase{warm}
	s.cur.Store(warm)
	pctx, stopPub := context.WithCancel(ctx)
	var pubWG sync.WaitGroup
	for _, p := range s.pubs {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			p.run(pctx)
		}()
	}
	s.pr.set(s.progressLine)

	s.sleep(ctx, cfg.Warm)
	for _, letter := range cfg.Faults {
		if ctx.Err() != nil {
			break
		}
		s.inject(ctx, clusterFaults[letter])
		s.sleep(ctx, cfg.Observe)
	}
	s.finish(ctx, stopPub, &pubWG)
	u.finish(s.r)
	cpu.finish(s.r)
	s.report()
	if ctx.Err() != nil {
		s.r.Errorf("the run was cut short: %v", ctx.Err())
	}
	return s.r, nil
}

// clusterDefaults fills in what the caller left zero and checks the rest.
func (cfg *ClusterConfig) clusterDefaults() error {
	cfg.defaults()
	cfg.Instances = orDefault(cfg.Instances, 3)
	cfg.NATSNodes = orDefault(cfg.NATSNodes, 3)
	cfg.Conns = orDefault(cfg.Conns, 2000)
	cfg.RoomsPerConn = orDefault(cfg.RoomsPerConn, 5)
	cfg.MediumMembers = orDefault(cfg.MediumMembers, 500)
	cfg.SmallMembers = orDefault(cfg.SmallMembers, 20)
	cfg.PublishersPerInstance = orDefault(cfg.PublishersPerInstance, 1)
	cfg.Size = max(orDefault(cfg.Size, 64), 32)
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.BroadcastRate <= 0 {
		cfg.BroadcastRate = 5
	}
	switch cfg.Faults {
	case "":
		cfg.Faults = "abcd"
	case "none":
		cfg.Faults = ""
	}
	for _, l := range cfg.Faults {
		if clusterFaults[l] == nil {
			return fmt.Errorf("cluster: fault %q: want letters of abcd, or none", l)
		}
	}
	if strings.ContainsAny(cfg.Faults, "ab") && cfg.NATSNodes < 3 {
		return errors.New("cluster: faults a and b need 3 NATS nodes (a stream leader to lose and a majority left)")
	}
	durs := []*time.Duration{&cfg.Warm, &cfg.Observe, &cfg.FaultTimeout, &cfg.NATSRestartAfter, &cfg.FreezeFor,
		&cfg.InstanceRestartAfter, &cfg.AnswerBound, &cfg.RetryFor, &cfg.Backoff, &cfg.Timeout}
	defs := []time.Duration{10 * time.Second, 10 * time.Second, time.Minute, 5 * time.Second, 8 * time.Second,
		2 * time.Second, 15 * time.Second, time.Minute, 50 * time.Millisecond, 10 * time.Minute}
	for i, d := range durs {
		if *d <= 0 {
			*d = defs[i]
		}
	}
	if cfg.RoomsPerConn > 1+cfg.Conns {
		return fmt.Errorf("cluster: %d rooms per client with %d clients", cfg.RoomsPerConn, cfg.Conns)
	}
	return nil
}

// sleep waits d, or until ctx ends.
func (s *clusterRun) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// progressLine is the status line while publishing.
func (s *clusterRun) progressLine() string {
	ph := s.current()
	var acked, unknown, refused int64
	for _, p := range s.pubs {
		acked += p.nAcked.Load()
		unknown += p.nUnknown.Load()
		refused += p.nRefused.Load()
	}
	return fmt.Sprintf("%s | clients ready %d/%d | acked %d unknown %d refused %d | deliveries %d gaps %d dups %d",
		faultKeyOf(ph.name), s.ready.Load(), len(s.subs), acked, unknown, refused,
		s.total(func(p *phase) int64 { return p.deliveries.Load() }),
		s.total(func(p *phase) int64 { return p.missing.Load() }),
		s.total(func(p *phase) int64 { return p.duplicates.Load() }))
}

// closeClients closes every client connection (the end of the run).
func (s *clusterRun) closeClients() {
	s.stopping.Store(true)
	for _, c := range s.subs {
		c.closeConn()
	}
	for _, p := range s.pubs {
		p.closeConn()
	}
}

// endClients closes every subscriber and waits for their goroutines.
func (s *clusterRun) endClients() {
	s.closeClients()
	if s.subCancel != nil {
		s.subCancel()
	}
	s.subWG.Wait()
}

// oddity records a frame a client could not make sense of.
func (s *clusterRun) oddity(format string, args ...any) {
	s.oddCount.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.oddities) < 20 {
		s.oddities = append(s.oddities, fmt.Sprintf(format, args...))
	}
}

// sawEpoch counts an epoch as first seen by a client-room or an ack.
func (s *clusterRun) sawEpoch(e string) {
	s.mu.Lock()
	s.epochs[e]++
	s.mu.Unlock()
}

// refusal counts an err answer by code.
func (s *clusterRun) refusal(code string) {
	s.mu.Lock()
	s.refusals[code]++
	s.mu.Unlock()
}

// logf prints a line for people on the progress writer, if any.
func (s *clusterRun) logf(format string, args ...any) {
	if w := s.cfg.Progress; w != nil {
		fmt.Fprintf(w, "[cluster %4.0fs] %s\n", time.Since(s.pr.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// connect starts every subscriber (DialConcurrency handshakes in flight)
// and waits until each one's subscriptions were all answered.
func (s *clusterRun) connect(ctx context.Context) error {
	for _, in := range s.fleet.inst {
		c := s.cfg.Common
		c.Addr = in.addr
		d := newDialer(&c, 0, &s.hs)
		d.protocol = "loopcast.v1"
		s.dialers = append(s.dialers, d)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.subCancel = cancel
	gate := make(chan struct{}, s.cfg.DialConcurrency)
	for _, c := range s.subs {
		s.subWG.Add(1)
		go func() {
			defer s.subWG.Done()
			c.run(sctx, gate, s.dialers)
		}()
	}
	s.pr.set(func() string { return fmt.Sprintf("clients subscribed %d of %d", s.ready.Load(), len(s.subs)) })
	err := natscluster.Poll(ctx, clusterSetupTimeout, "every client subscribed", func() bool { return s.ready.Load() == int64(len(s.subs)) })
	if err != nil {
		return fmt.Errorf("cluster: %w (%d of %d)", err, s.ready.Load(), len(s.subs))
	}
	return nil
}

// clusterSetupTimeout bounds the first connection and subscription of
// every client.
const clusterSetupTimeout = 2 * time.Minute

// finish stops publishing, waits until every publish was answered (or
// abandoned) and the last deliveries arrived, then ends every client.
func (s *clusterRun) finish(ctx context.Context, stopPub context.CancelFunc, pubWG *sync.WaitGroup) {
	for _, p := range s.pubs {
		p.stop()
	}
	s.pubEnd = time.Now()
	tail := s.enter("tail: publishing stopped; every answer and delivery awaited")
	err := natscluster.Poll(ctx, s.cfg.RetryFor+s.cfg.AnswerBound, "every publish acknowledged or abandoned", func() bool {
		for _, p := range s.pubs {
			if !p.settled() {
				return false
			}
		}
		return true
	})
	if err != nil {
		s.note(tail, "%v", err)
	}
	// Then until no message arrived for quietFor (bounded).
	last, since := tail.deliveries.Load(), time.Now()
	_ = natscluster.Poll(ctx, 30*time.Second, "deliveries to end", func() bool {
		if n := tail.deliveries.Load(); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= quietFor
	})
	stopPub()
	pubWG.Wait()
	s.endClients()
	s.fleet.saveMetrics()
	s.phasesMu.Lock()
	tail.end = time.Now()
	s.phasesMu.Unlock()
}

// quietFor: the run ends once no message arrived for this long after
// every publish was settled.
const quietFor = 2 * time.Second
