package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopcast/loopcast/server"
)

// Defaults of a Stream.
const (
	// DefaultStream is the JetStream stream loopcast keeps rooms in.
	DefaultStream = "LOOPCAST"

	// appendQueue is the capacity of the queue of messages waiting to be
	// appended, next to StreamOptions.QueueBytes.
	appendQueue = 1 << 14

	// maxAsyncPending bounds the appends JetStream has not acknowledged.
	maxAsyncPending = 4096

	// streamCheckEvery is how often the stream is looked at, to notice
	// it was recreated (a memory stream after a NATS restart): its epoch
	// changes then, and the consumer starts again from its beginning.
	streamCheckEvery = 2 * time.Second
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

// LogDeliverer takes the stream's messages and the answers to appends;
// *server.Server is one.
type LogDeliverer interface {
	DeliverLogged(room string, t server.MessageType, payload []byte, epoch, offset uint64) (int, error)
	Appended(ref server.PublishRef, room string, epoch, offset uint64, err error)
}

// Stream is a server.Log over a JetStream stream: every instance appends
// the messages its members publish, and delivers every message of the
// stream, in the stream's order, numbered by it. Create it with
// NewStream, put it in server.Config.Broker, Start it with the server,
// and Close it after the server has shut down.
type Stream struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	log  *slog.Logger
	opts StreamOptions

	// The stream as of the last look.
	epoch, covered, handed atomic.Uint64
	warmTo                 atomic.Uint64 // last sequence when the consumer started
	ready                  atomic.Bool
	created                time.Time // owned by run

	out    chan appendMsg
	queued atomic.Int64
	acks   chan pendingAck

	stop    chan struct{}
	done    sync.WaitGroup
	closing atomic.Bool

	stats streamCounters
}

type appendMsg struct {
	room string
	op   server.MessageType
	data []byte
	ref  server.PublishRef
}

type pendingAck struct {
	f    jetstream.PubAckFuture
	room string
	ref  server.PublishRef
}

type streamCounters struct {
	appended, delivered, appendErrors, epochChanges, deliverErrors atomic.Int64
}

// NewStream connects to NATS (retrying in the background when it is
// unreachable) and returns; Start begins delivering.
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
		out:  make(chan appendMsg, appendQueue),
		acks: make(chan pendingAck, maxAsyncPending),
		stop: make(chan struct{}),
	}
	nc, err := nats.Connect(opts.URL,
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return reconnectDelay(attempts, opts.ReconnectWait, opts.MaxReconnectWait)
		}),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.ConnectHandler(func(nc *nats.Conn) { s.log.Info("NATS connected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { s.log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }),
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
	if s.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxAsyncPending)); err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
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

// Close closes the NATS connection of a Stream that was never started
// (the command falls back to core NATS).
func (s *Stream) CloseUnstarted() { s.nc.Close() }

// Start begins delivering the stream's messages to d (the server) and
// appending what Append queues. The stream is created when missing; while
// NATS is unreachable Start's goroutines keep trying.
func (s *Stream) Start(d LogDeliverer) {
	s.done.Add(3)
	go s.run(d)
	go s.write(d)
	go s.acknowledge(d)
}

// config is the stream's configuration from the options.
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
		MaxMsgsPerSubject: int64(2 * o.HistoryMessages),
		MaxAge:            o.HistoryTTL,
		MaxBytes:          2 * o.HistoryBytes,
		AllowDirect:       true,
	}
	if o.MaxMessage > 0 {
		cfg.MaxMsgSize = int32(min(o.MaxMessage+1024, 1<<31-1))
	}
	return cfg
}

// run keeps one ordered consumer over the stream, from its first message,
// and starts it again (a new epoch) when the stream was recreated.
func (s *Stream) run(d LogDeliverer) {
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
	for {
		info, err := s.ensure(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("JetStream stream unavailable; retrying", "stream", s.opts.Stream, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.opts.MaxReconnectWait)
			continue
		}
		backoff = s.opts.ReconnectWait
		if cc == nil || !info.Created.Equal(s.created) {
			if cc != nil {
				cc.Stop()
				s.stats.epochChanges.Add(1)
				s.log.Warn("JetStream stream was recreated: its history is gone, offsets start again (resumes get epoch_changed)", "stream", s.opts.Stream)
			}
			if cc, err = s.consume(ctx, d, info); err != nil {
				s.log.Warn("JetStream consumer failed; retrying", "err", err)
				cc = nil
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ensure returns the stream's info, creating the stream when missing.
func (s *Stream) ensure(ctx context.Context) (*jetstream.StreamInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(cctx, s.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if st, err = s.js.CreateStream(cctx, s.config()); err == nil {
			s.log.Info("JetStream stream created", "stream", s.opts.Stream, "storage", s.opts.Storage.String(), "replicas", s.opts.Replicas,
				"max_msgs_per_subject", 2*s.opts.HistoryMessages, "max_age", s.opts.HistoryTTL, "max_bytes", 2*s.opts.HistoryBytes)
		}
	}
	if err != nil {
		return nil, err
	}
	return st.Info(cctx)
}

// consume starts an ordered consumer from the stream's first message:
// the instance's history warms up from it before it is ready.
//
// Known limit: after a NATS outage longer than the stream keeps messages
// (HistoryTTL), nats.go's ordered consumer resumes from the first
// sequence still there; the messages discarded meanwhile are not seen as
// a gap here, so this instance's history may claim to be complete where
// it is not. Resumes from before the outage would then be replayed with
// a hole. The outage has to outlast the history for this to happen.
func (s *Stream) consume(ctx context.Context, d LogDeliverer, info *jetstream.StreamInfo) (jetstream.ConsumeContext, error) {
	st, err := s.js.Stream(ctx, s.opts.Stream)
	if err != nil {
		return nil, err
	}
	s.created = info.Created
	first, last := info.State.FirstSeq, info.State.LastSeq
	covered := last
	if info.State.Msgs > 0 && first > 0 {
		covered = first - 1
	}
	s.epoch.Store(uint64(info.Created.UnixNano()) | 1)
	s.covered.Store(covered)
	s.handed.Store(covered)
	s.warmTo.Store(last)
	s.ready.Store(last <= covered)
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
	firstSeen := false
	epoch := s.epoch.Load()
	return cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			s.stats.deliverErrors.Add(1)
			return
		}
		seq := md.Sequence.Stream
		if !firstSeen {
			firstSeen = true
			if seq > s.covered.Load()+1 {
				// What came before seq left the stream meanwhile.
				s.covered.Store(seq - 1)
			}
		}
		room, op, ok := parseSubject(m.Subject())
		if !ok {
			s.stats.deliverErrors.Add(1)
		} else if _, err := d.DeliverLogged(room, op, m.Data(), epoch, seq); err != nil {
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

// write appends queued messages; JetStream's acknowledgements go to
// acknowledge, in order.
func (s *Stream) write(d LogDeliverer) {
	defer s.done.Done()
	defer close(s.acks)
	for {
		select {
		case m := <-s.out:
			s.queued.Add(-int64(len(m.data)))
			f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subject(m.room, m.op), Data: m.data})
			if err != nil {
				s.stats.appendErrors.Add(1)
				d.Appended(m.ref, m.room, 0, 0, err)
				continue
			}
			s.acks <- pendingAck{f, m.room, m.ref}
		case <-s.stop:
			return
		}
	}
}

func (s *Stream) acknowledge(d LogDeliverer) {
	defer s.done.Done()
	for p := range s.acks {
		select {
		case a := <-p.f.Ok():
			s.stats.appended.Add(1)
			d.Appended(p.ref, p.room, s.epoch.Load(), a.Sequence, nil)
		case err := <-p.f.Err():
			s.stats.appendErrors.Add(1)
			d.Appended(p.ref, p.room, 0, 0, err)
		case <-s.stop:
			return
		}
	}
}

// Append implements server.Log: payload is copied and queued for the
// stream without blocking.
func (s *Stream) Append(room string, t server.MessageType, payload []byte, ref server.PublishRef) error {
	if s.closing.Load() {
		return ErrClosed
	}
	if !s.nc.IsConnected() {
		s.stats.appendErrors.Add(1)
		return errors.New("NATS disconnected")
	}
	n := int64(len(payload))
	if s.queued.Add(n) > int64(s.opts.QueueBytes) {
		s.queued.Add(-n)
		s.stats.appendErrors.Add(1)
		return ErrBacklog
	}
	m := appendMsg{room: room, op: t, data: append([]byte(nil), payload...), ref: ref}
	select {
	case s.out <- m:
		return nil
	default:
		s.queued.Add(-n)
		s.stats.appendErrors.Add(1)
		return ErrBacklog
	}
}

// AppendWait implements server.Log.
func (s *Stream) AppendWait(ctx context.Context, room string, t server.MessageType, payload []byte) (uint64, uint64, error) {
	a, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: subject(room, t), Data: payload})
	if err != nil {
		s.stats.appendErrors.Add(1)
		return 0, 0, err
	}
	s.stats.appended.Add(1)
	return s.epoch.Load(), a.Sequence, nil
}

// Epoch, Covered, Handed and Ready implement server.Log.
func (s *Stream) Epoch() uint64   { return s.epoch.Load() }
func (s *Stream) Covered() uint64 { return s.covered.Load() }
func (s *Stream) Handed() uint64  { return s.handed.Load() }
func (s *Stream) Ready() bool     { return s.ready.Load() }

// Subscribe and Unsubscribe implement server.Broker; with a log every
// instance reads the whole stream, so they do nothing.
func (s *Stream) Subscribe(string)   {}
func (s *Stream) Unsubscribe(string) {}

// Publish implements server.Broker (not called for a Log): Append
// without an answer.
func (s *Stream) Publish(room string, t server.MessageType, payload []byte) error {
	return s.Append(room, t, payload, server.PublishRef{})
}

// Close stops delivering and appending and closes the connection.
func (s *Stream) Close(context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	s.done.Wait()
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
	Appended  int64  `json:"appended"`
	Delivered int64  `json:"delivered"`
	Errors    int64  `json:"append_errors"`
}

// ClusterStatus implements server.BrokerStatus.
func (s *Stream) ClusterStatus() any {
	return StreamStatus{
		Mode: "jetstream", Delivery: "resume on any instance: messages are in one JetStream stream, in one order",
		Connected: s.nc.IsConnected(), Stream: s.opts.Stream, Storage: s.opts.Storage.String(), Replicas: s.opts.Replicas,
		Epoch: fmt.Sprintf("%016x", s.epoch.Load()), Covered: s.covered.Load(), Handed: s.handed.Load(), Ready: s.ready.Load(),
		Appended: s.stats.appended.Load(), Delivered: s.stats.delivered.Load(), Errors: s.stats.appendErrors.Load(),
	}
}

var (
	descStreamReady     = prometheus.NewDesc("loopcast_cluster_log_ready", "1 once history warmed up from the JetStream stream.", nil, nil)
	descStreamHanded    = prometheus.NewDesc("loopcast_cluster_log_position", "Last JetStream stream sequence delivered here.", nil, nil)
	descStreamAppended  = prometheus.NewDesc("loopcast_cluster_log_appended_total", "Messages appended to the JetStream stream from here.", nil, nil)
	descStreamDelivered = prometheus.NewDesc("loopcast_cluster_log_delivered_total", "Messages of the JetStream stream delivered here.", nil, nil)
	descStreamErrors    = prometheus.NewDesc("loopcast_cluster_log_errors_total", "Appends refused or failed, and stream messages not delivered.", []string{"kind"}, nil)
	descStreamEpochs    = prometheus.NewDesc("loopcast_cluster_log_epoch_changes_total", "Times the stream was found recreated (history lost).", nil, nil)
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
	ready := 0.0
	if s.ready.Load() {
		ready = 1
	}
	g(descStreamReady, ready)
	g(descStreamHanded, float64(s.handed.Load()))
	c(descStreamAppended, s.stats.appended.Load())
	c(descStreamDelivered, s.stats.delivered.Load())
	c(descStreamErrors, s.stats.appendErrors.Load(), "append")
	c(descStreamErrors, s.stats.deliverErrors.Load(), "deliver")
	c(descStreamEpochs, s.stats.epochChanges.Load())
}
