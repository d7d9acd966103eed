package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopcast/loopcast/server/internal/bus"
)

// Defaults of a Stream.
const (
	// DefaultStream is the JetStream stream loopcast keeps rooms in.
	DefaultStream = "LOOPCAST"

	// streamCheckEvery is how often the stream is looked at, to notice
	// it was recreated (a memory stream after a NATS restart): its epoch
	// changes then, and the consumer starts again from its beginning. A
	// NATS reconnect, and an acknowledgement whose sequence went
	// backwards, look at once.
	streamCheckEvery = 2 * time.Second

	// epochKey is the stream metadata entry that holds the stream's
	// epoch: random, written once by the instance that creates the
	// stream, the same on every replica and every instance, and new
	// only when the stream is new (its history is gone). A stream made
	// without it (by an older loopcast) has the epoch its creation time
	// gives, as before.
	epochKey = "loopcast.epoch"

	// streamPingInterval (with maxPingsOut) notices a NATS server that
	// froze or vanished without closing TCP within about 4-6 s, so an
	// instance connected to a frozen stream leader moves to another
	// server about when a new leader is elected (4-9 s), instead of
	// waiting the core bridge's 30 s.
	streamPingInterval = 2 * time.Second

	// streamInfoTimeout bounds one look at the stream (StreamInfo, or
	// creating it). Acknowledgements after a reconnect wait for such a
	// look, so it is short: without a stream leader it fails fast and is
	// tried again.
	streamInfoTimeout = 2 * time.Second

	// minMsgsPerSubject is the least the stream keeps per room, whatever
	// HistoryMessages: an instance whose reader is behind by more than
	// that many messages of one room never sees the rest (see
	// loopcast_cluster_log_skipped_total).
	minMsgsPerSubject = 1024
)

// ErrNoJetStream: the NATS server has no JetStream (Probe).
var ErrNoJetStream = errors.New("the NATS server has no JetStream")

// StreamOptions configure a Stream.
type StreamOptions struct {
	// URL, Name, Logger, MaxMessage, QueueBytes, ReconnectWait and
	// MaxReconnectWait are as in Options.
	URL, Name                       string
	Logger                          *slog.Logger
	MaxMessage, QueueBytes          int
	ReconnectWait, MaxReconnectWait time.Duration

	// Stream is the stream's name. Default DefaultStream.
	Stream string
	// Storage is jetstream.MemoryStorage (the default) or FileStorage.
	Storage jetstream.StorageType
	// Replicas of the stream (1 to 5; 3 on a 3-node NATS cluster keeps
	// history through the loss of a NATS node). Default 1.
	Replicas int
	// HistoryMessages, HistoryTTL and HistoryBytes are the server's
	// history limits. The stream keeps twice the messages per subject and
	// twice the bytes, and messages for HistoryTTL: so that an instance
	// that starts (or restarts) reads back everything its own history can
	// hold, and knows exactly from where its history is complete.
	HistoryMessages int
	HistoryTTL      time.Duration
	HistoryBytes    int64
}

// Stream is a log (server/internal/bus.Log) over a JetStream stream:
// every instance appends the messages its members publish, and delivers
// every message of the stream, in the stream's order, numbered by it.
// Create it with NewStream, put it in server.Config.Broker (the server
// attaches itself when it starts), and Close it after the server has
// shut down.
type Stream struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	log  *slog.Logger
	opts StreamOptions
	host atomic.Pointer[hostBox] // set by Attach

	// The stream as of the last look.
	epoch, covered, handed atomic.Uint64
	warmTo                 atomic.Uint64 // last sequence when the consumer started
	ready                  atomic.Bool

	app  *appender
	inbx *nats.Subscription
	look chan struct{} // asks run to look at the stream now

	stop     chan struct{}
	done     sync.WaitGroup
	closing  atomic.Bool
	attached atomic.Bool

	stats   streamCounters
	skipLog rateLimit // the skipped-messages warning, at most once a minute
}

type hostBox struct{ h bus.Host }

type streamCounters struct {
	appended, duplicates, refused, unknown, lateAcks atomic.Int64
	delivered, deliverErrors, epochChanges           atomic.Int64
	unanswered                                       atomic.Int64 // failed appends nobody waited for (raw mode)
	skipped                                          atomic.Int64 // messages the stream removed before this instance read them
}

// NewStream connects to NATS (retrying in the background when it is
// unreachable) and returns; the server's Start attaches it and it begins
// delivering.
func NewStream(opts StreamOptions) (*Stream, error) {
	if err := ValidateURL(opts.URL); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "loopcast"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Stream == "" {
		opts.Stream = DefaultStream
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.ReconnectWait <= 0 {
		opts.ReconnectWait = DefaultReconnectWait
	}
	if opts.MaxReconnectWait <= 0 {
		opts.MaxReconnectWait = max(DefaultMaxReconnectWait, opts.ReconnectWait)
	}
	if opts.HistoryMessages <= 0 || opts.HistoryTTL <= 0 || opts.HistoryBytes <= 0 {
		return nil, errors.New("a JetStream log needs history limits (history-messages, history-ttl, history-max-bytes)")
	}
	s := &Stream{
		log:  opts.Logger.With("component", "jetstream"),
		opts: opts,
		look: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	s.app = newAppender(s)
	nc, err := nats.Connect(opts.URL,
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// No reconnect buffer: an append made while NATS is away is
		// refused at once, and truly (nothing is sent later).
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return reconnectDelay(attempts, opts.ReconnectWait, opts.MaxReconnectWait)
		}),
		nats.PingInterval(streamPingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.ConnectHandler(func(nc *nats.Conn) {
			s.log.Info("NATS connected", "server", nc.ConnectedUrlRedacted())
			s.kick()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted())
			s.kick() // the stream may be another one now
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !s.closing.Load() {
				s.log.Warn("NATS disconnected: publishes are refused (unavailable) and the stream's messages wait until it is back", "err", err)
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats-url %s: %w", redact(opts.URL), err)
	}
	s.nc = nc
	if s.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, err
	}
	if s.inbx, err = nc.Subscribe(s.app.inbox+".*", s.app.reply); err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// kick asks run to look at the stream now.
func (s *Stream) kick() {
	select {
	case s.look <- struct{}{}:
	default:
	}
}

// Probe reports whether the NATS server has JetStream: ErrNoJetStream
// when it has not, another error when NATS is unreachable now (NewStream
// tried once; it keeps trying in the background) or did not answer
// within ctx.
func (s *Stream) Probe(ctx context.Context) error {
	if !s.nc.IsConnected() {
		return errors.New("NATS unreachable")
	}
	if _, err := s.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return ErrNoJetStream
		}
		return err
	}
	return nil
}

// CloseUnstarted closes the NATS connection of a Stream that was never
// attached (the command falls back to core NATS).
func (s *Stream) CloseUnstarted() { s.nc.Close() }

// Attach implements bus.Log: it begins delivering the stream's messages
// to h and sending appends. The stream is created when missing; while
// NATS is unreachable its goroutines keep trying.
func (s *Stream) Attach(h bus.Host) {
	if !s.attached.CompareAndSwap(false, true) {
		return
	}
	s.host.Store(&hostBox{h})
	if _, err := shareWith(s.nc, h); err != nil {
		s.log.Error("NATS: cannot subscribe to other instances' occupancy; counting this instance's members only", "err", err)
	}
	s.done.Add(3)
	go s.run(h)
	go func() {
		defer s.done.Done()
		s.app.write(s.stop)
	}()
	go s.sweep()
}

// answer hands an append's outcome to the host; a failed append that
// nobody waits for (raw mode) is counted.
func (s *Stream) answer(t bus.Ticket, room string, pos bus.Position, dup bool, err error) {
	if t.Zero() {
		if err != nil {
			s.stats.unanswered.Add(1)
		}
		return
	}
	if b := s.host.Load(); b != nil {
		b.h.Answer(t, room, pos, dup, err)
	}
}

func (s *Stream) sweep() {
	defer s.done.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.app.sweep(now)
		case <-s.stop:
			return
		}
	}
}

// config is the stream's configuration from the options, for creating
// it: its epoch is new and random.
func (s *Stream) config() jetstream.StreamConfig {
	o := s.opts
	cfg := jetstream.StreamConfig{
		Name:              o.Stream,
		Description:       "loopcast rooms: the log every instance delivers in order and resumes from",
		Subjects:          []string{SubjectPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           o.Storage,
		Replicas:          o.Replicas,
		MaxMsgsPerSubject: int64(max(2*o.HistoryMessages, minMsgsPerSubject)),
		MaxAge:            o.HistoryTTL,
		MaxBytes:          2 * o.HistoryBytes,
		AllowDirect:       true,
		// The window retries with the same key are de-duplicated in
		// (Nats-Msg-Id): JetStream's default, within the history.
		Duplicates: min(DedupeWindow, o.HistoryTTL),
		Metadata:   map[string]string{epochKey: fmt.Sprintf("%016x", randomEpoch())},
	}
	if o.MaxMessage > 0 {
		cfg.MaxMsgSize = int32(min(o.MaxMessage+1024, 1<<31-1))
	}
	return cfg
}

// DedupeWindow is how long the stream remembers a publication's key
// (its duplicate window), at most HistoryTTL.
const DedupeWindow = 2 * time.Minute

func randomEpoch() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// streamEpoch is the stream's identity: its epochKey metadata, or, for a
// stream without it, its creation time.
func streamEpoch(info *jetstream.StreamInfo) uint64 {
	if v, ok := info.Config.Metadata[epochKey]; ok {
		if e, err := strconv.ParseUint(v, 16, 64); err == nil && e != 0 {
			return e
		}
	}
	return uint64(info.Created.UnixNano()) | 1
}

// run keeps one ordered consumer over the stream, from its first
// message, and starts it again (a new epoch) when the stream was
// recreated. It looks every streamCheckEvery, and at once after a NATS
// reconnect or when an acknowledgement asks (see appender).
func (s *Stream) run(h bus.Host) {
	defer s.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.stop; cancel() }()
	var cc jetstream.ConsumeContext
	defer func() {
		if cc != nil {
			cc.Stop()
		}
	}()
	backoff := s.opts.ReconnectWait
	tick := time.NewTicker(streamCheckEvery)
	defer tick.Stop()
	failing := false
	for {
		gen := s.nc.Stats().Reconnects
		info, err := s.ensure(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				failing = true
				s.log.Warn("JetStream stream unavailable; retrying (logged once until it is back)", "stream", s.opts.Stream, "err", err)
			} else {
				s.log.Debug("JetStream stream still unavailable", "stream", s.opts.Stream, "err", err)
			}
			wait := backoff
			if s.app.holding() {
				wait = s.opts.ReconnectWait // acknowledgements wait for this look: try again soon
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-s.look:
			}
			backoff = min(2*backoff, s.opts.MaxReconnectWait)
			continue
		}
		if failing {
			failing = false
			s.log.Info("JetStream stream available again", "stream", s.opts.Stream)
		}
		backoff = s.opts.ReconnectWait
		epoch := streamEpoch(info)
		changed := cc != nil && epoch != s.epoch.Load()
		if cc == nil || changed {
			if changed {
				cc.Stop()
				cc = nil
				s.stats.epochChanges.Add(1)
				s.log.Warn("JetStream stream was recreated: its history is gone, offsets start again (resumes get epoch_changed)", "stream", s.opts.Stream)
			}
			if cc, err = s.consume(ctx, h, info, epoch); err != nil {
				s.log.Warn("JetStream consumer failed; retrying", "err", err)
				cc = nil
				continue
			}
		}
		s.app.verified(gen, changed)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.look:
		}
	}
}

// ensure returns the stream's info, creating the stream when missing.
func (s *Stream) ensure(ctx context.Context) (*jetstream.StreamInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, streamInfoTimeout)
	defer cancel()
	st, err := s.js.Stream(cctx, s.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg := s.config()
		if st, err = s.js.CreateStream(cctx, cfg); err == nil {
			s.log.Info("JetStream stream created", "stream", s.opts.Stream, "storage", s.opts.Storage.String(), "replicas", s.opts.Replicas,
				"max_msgs_per_subject", cfg.MaxMsgsPerSubject, "max_age", cfg.MaxAge, "max_bytes", cfg.MaxBytes, "epoch", cfg.Metadata[epochKey])
		}
	}
	if err != nil {
		return nil, err
	}
	return st.Info(cctx)
}

// consume starts an ordered consumer from the stream's first message:
// the instance's history warms up from it before it is ready. Before the
// first message of epoch, the host restarts its rooms in it.
//
// Known limit: after a NATS outage longer than the stream keeps messages
// (HistoryTTL), nats.go's ordered consumer resumes from the first
// sequence still there; the messages discarded meanwhile are not seen as
// a gap here, so this instance's history may claim to be complete where
// it is not. Resumes from before the outage would then be replayed with
// a hole. The outage has to outlast the history for this to happen.
func (s *Stream) consume(ctx context.Context, h bus.Host, info *jetstream.StreamInfo, epoch uint64) (jetstream.ConsumeContext, error) {
	st, err := s.js.Stream(ctx, s.opts.Stream)
	if err != nil {
		return nil, err
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	covered := last
	if info.State.Msgs > 0 && first > 0 {
		covered = first - 1
	}
	s.epoch.Store(epoch)
	s.covered.Store(covered)
	s.handed.Store(covered)
	s.warmTo.Store(last)
	s.ready.Store(last <= covered)
	h.Restart(epoch, covered)
	if last > covered {
		s.log.Info("warming up history from the JetStream stream", "stream", s.opts.Stream, "from", covered+1, "to", last)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{SubjectPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	firstSeen, last := false, uint64(0)
	return cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			s.stats.deliverErrors.Add(1)
			return
		}
		seq := md.Sequence.Stream
		switch {
		case !firstSeen:
			firstSeen = true
			if seq > s.covered.Load()+1 {
				// What came before seq left the stream meanwhile.
				s.covered.Store(seq - 1)
			}
		case seq > last+1:
			// The consumer reads every subject of the stream, so a hole
			// in its sequence is messages the stream's limits removed
			// before this instance read them.
			s.stats.skipped.Add(int64(seq - last - 1))
			s.covered.Store(max(s.covered.Load(), seq-1))
			h.Skipped(seq - 1)
			if s.skipLog.Allow() {
				s.log.Warn("the JetStream stream dropped messages before this instance read them (its limits per room, age or bytes passed them): loopcast.v1 sessions are closed to resume, and told what they missed",
					"from", last+1, "to", seq-1)
			}
		}
		last = seq
		room, op, ok := parseSubject(m.Subject())
		if !ok {
			s.stats.deliverErrors.Add(1)
		} else if _, err := h.Deliver(room, op, m.Data(), bus.Position{Epoch: epoch, Offset: seq}); err != nil {
			s.stats.deliverErrors.Add(1)
		} else {
			s.stats.delivered.Add(1)
		}
		s.handed.Store(seq)
		if !s.ready.Load() && seq >= s.warmTo.Load() {
			s.ready.Store(true)
			s.log.Info("history warmed up from the JetStream stream", "stream", s.opts.Stream, "last", seq)
		}
	})
}

// Append implements bus.Log: payload is copied and queued for the
// stream without blocking; the answer comes through the host within
// bus.AckTimeout. An error refuses the message now: nothing was sent.
func (s *Stream) Append(room string, op byte, payload []byte, key string, t bus.Ticket) error {
	err := s.app.add(appendMsg{room: room, op: op, data: payload, key: key, ticket: t})
	if err != nil {
		s.stats.refused.Add(1)
	}
	return err
}

// Epoch, Covered, Handed and Ready implement bus.Log.
func (s *Stream) Epoch() uint64   { return s.epoch.Load() }
func (s *Stream) Covered() uint64 { return s.covered.Load() }
func (s *Stream) Handed() uint64  { return s.handed.Load() }
func (s *Stream) Ready() bool     { return s.ready.Load() }

// Close stops delivering and appending, answers the appends still
// waiting, and closes the connection.
func (s *Stream) Close(context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	s.done.Wait()
	s.app.drain()
	s.nc.Close()
	return nil
}

// StreamStatus is the Stream's state, shown by GET /rooms under
// "cluster".
type StreamStatus struct {
	Mode      string `json:"mode"`     // "jetstream"
	Delivery  string `json:"delivery"` // what a reconnecting client gets
	Connected bool   `json:"connected"`
	Stream    string `json:"stream"`
	Storage   string `json:"storage"`
	Replicas  int    `json:"replicas"`
	Epoch     string `json:"epoch"`
	Covered   uint64 `json:"covered"` // history complete after this stream sequence
	Handed    uint64 `json:"handed"`  // last stream sequence delivered
	Ready     bool   `json:"ready"`   // warmed up
	Delivered int64  `json:"delivered"`
	// Appends: acknowledged (duplicates among them), refused (not
	// published), unknown (not acknowledged in time), late (acknowledged
	// after being answered unknown); pending now, the oldest's age, and
	// whether the stream answers.
	Appended          int64   `json:"appended"`
	Duplicates        int64   `json:"duplicates"`
	Refused           int64   `json:"refused"`
	Unknown           int64   `json:"unknown"`
	Late              int64   `json:"late_acks"`
	Pending           int     `json:"pending"`
	OldestPendingSecs float64 `json:"oldest_pending_seconds"`
	Answering         bool    `json:"answering"`
}

// ClusterStatus implements bus.Status.
func (s *Stream) ClusterStatus() any {
	n, age := s.app.oldest(time.Now())
	return StreamStatus{
		Mode: "jetstream", Delivery: "resume on any instance: messages are in one JetStream stream, in one order",
		Connected: s.nc.IsConnected(), Stream: s.opts.Stream, Storage: s.opts.Storage.String(), Replicas: s.opts.Replicas,
		Epoch: fmt.Sprintf("%016x", s.epoch.Load()), Covered: s.covered.Load(), Handed: s.handed.Load(), Ready: s.ready.Load(),
		Delivered: s.stats.delivered.Load(),
		Appended:  s.stats.appended.Load(), Duplicates: s.stats.duplicates.Load(), Refused: s.stats.refused.Load(),
		Unknown: s.stats.unknown.Load(), Late: s.stats.lateAcks.Load(), Pending: n, OldestPendingSecs: age.Seconds(),
		Answering: !s.app.quiet.Load(),
	}
}

var (
	descStreamConnected = prometheus.NewDesc("loopcast_cluster_connected", "1 while the NATS connection is up.", nil, nil)
	descStreamReady     = prometheus.NewDesc("loopcast_cluster_log_ready", "1 once history warmed up from the JetStream stream.", nil, nil)
	descStreamHanded    = prometheus.NewDesc("loopcast_cluster_log_position", "Last JetStream stream sequence delivered here.", nil, nil)
	descStreamAppends   = prometheus.NewDesc("loopcast_cluster_log_appends_total", "Appends to the JetStream stream from here by outcome: acked (duplicates among them), duplicate, refused (not published), unknown (not acknowledged within the deadline), late (acknowledged after being answered unknown).", []string{"outcome"}, nil)
	descStreamPending   = prometheus.NewDesc("loopcast_cluster_log_pending_appends", "Appends sent to JetStream and not yet answered.", nil, nil)
	descStreamOldest    = prometheus.NewDesc("loopcast_cluster_log_oldest_pending_seconds", "Age of the oldest append not yet answered (0 when none); every append is answered within the acknowledgement deadline.", nil, nil)
	descStreamAnswering = prometheus.NewDesc("loopcast_cluster_log_answering", "0 while JetStream is not acknowledging appends (appends are refused then, one probe at a time), 1 otherwise.", nil, nil)
	descStreamDelivered = prometheus.NewDesc("loopcast_cluster_log_delivered_total", "Messages of the JetStream stream delivered here.", nil, nil)
	descStreamErrors    = prometheus.NewDesc("loopcast_cluster_log_errors_total", "Stream messages not delivered here (deliver), and failed appends of raw-mode members, which have no answer (unanswered).", []string{"kind"}, nil)
	descStreamEpochs    = prometheus.NewDesc("loopcast_cluster_log_epoch_changes_total", "Times the stream was found recreated (history lost).", nil, nil)
	descStreamSkipped   = prometheus.NewDesc("loopcast_cluster_log_skipped_total", "Messages the stream removed (its limits) before this instance read them; each hole closes the loopcast.v1 sessions here so they resume.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Stream) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(s, ch) }

// Collect implements prometheus.Collector.
func (s *Stream) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	c := func(d *prometheus.Desc, v int64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	n, age := s.app.oldest(time.Now())
	g(descStreamConnected, b(s.nc.IsConnected()))
	g(descStreamReady, b(s.ready.Load()))
	g(descStreamHanded, float64(s.handed.Load()))
	c(descStreamAppends, s.stats.appended.Load(), "acked")
	c(descStreamAppends, s.stats.duplicates.Load(), "duplicate")
	c(descStreamAppends, s.stats.refused.Load(), "refused")
	c(descStreamAppends, s.stats.unknown.Load(), "unknown")
	c(descStreamAppends, s.stats.lateAcks.Load(), "late")
	g(descStreamPending, float64(n))
	g(descStreamOldest, age.Seconds())
	g(descStreamAnswering, b(!s.app.quiet.Load()))
	c(descStreamDelivered, s.stats.delivered.Load())
	c(descStreamErrors, s.stats.deliverErrors.Load(), "deliver")
	c(descStreamErrors, s.stats.unanswered.Load(), "unanswered")
	c(descStreamEpochs, s.stats.epochChanges.Load())
	c(descStreamSkipped, s.stats.skipped.Load())
}

// rateLimit lets an event through at most once a minute.
type rateLimit struct{ next atomic.Int64 }

// Allow reports whether the event may happen now.
func (r *rateLimit) Allow() bool {
	now := time.Now().UnixNano()
	n := r.next.Load()
	return now >= n && r.next.CompareAndSwap(n, now+int64(time.Minute))
}
