package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/bytebufferpool"

	"github.com/loopcast/loopcast/server/internal/bus"
)

// Defaults and limits of a Bridge.
const (
	// DefaultQueueBytes bounds the bytes Forward may queue for NATS. It
	// matches nats.go's own reconnect buffer (8 MiB): beyond it NATS is
	// slower than this instance publishes, and messages are refused
	// (counted as "backlog") rather than held without bound.
	DefaultQueueBytes = 8 << 20

	// DefaultReconnectWait is the first pause between reconnect
	// attempts; it doubles per failed round up to DefaultMaxReconnectWait,
	// with ±25% jitter so that replicas do not reconnect in lockstep.
	DefaultReconnectWait    = 250 * time.Millisecond
	DefaultMaxReconnectWait = 5 * time.Second

	// queueMessages is the capacity of the outgoing queue in messages,
	// next to QueueBytes in bytes.
	queueMessages = 1 << 14

	// inboundMessages is the capacity of the channel every room
	// subscription shares. When it is full nats.go drops messages and
	// reports a slow consumer (counted as "slow_consumer"): delivering a
	// message is a copy and a hand-off, so this takes a burst of 65,536
	// messages arriving faster than one core can copy them.
	inboundMessages = 1 << 16

	// pingInterval and maxPingsOut notice a NATS server that vanished
	// without closing TCP within about 30 s (nats.go's default is 4 min).
	pingInterval = 10 * time.Second
	maxPingsOut  = 2

	// originHeader carries a message's place in its room's forwarding
	// order on the instance that published it (bus.Position: the room's
	// epoch there in hex, a dot, a count from 1), so receivers notice a
	// message that never came. Instances that do not know it ignore it.
	originHeader = "Loopcast-Origin"

	// maxOrigins bounds how many publishing instances (room epochs) a
	// receiver tracks per room; the least recently seen is forgotten
	// first (its next message starts a new baseline).
	maxOrigins = 32
)

// Errors of Forward and Append.
var (
	// ErrBacklog: the outgoing queue is full; the message reached only
	// this instance's members.
	ErrBacklog = errors.New("NATS publish queue full (NATS is slower than this instance publishes)")
	// ErrClosed: Close was called.
	ErrClosed = errors.New("NATS bridge closed")
	// ErrTooLarge matches every *PayloadError.
	ErrTooLarge = errors.New("message over the NATS server's max_payload")
)

// PayloadError refuses a message larger than the NATS server accepts
// (its max_payload, 1 MiB by default). The message reached only this
// instance's members. Raise max_payload in the NATS configuration, or
// lower --max-message to it.
type PayloadError struct {
	Size, Max int64
}

func (e *PayloadError) Error() string {
	return fmt.Sprintf("message of %d bytes is over the NATS server's max_payload of %d bytes", e.Size, e.Max)
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *PayloadError) Is(target error) bool { return target == ErrTooLarge }

// Options configure a Bridge.
type Options struct {
	// URL is one NATS server URL or several, comma-separated
	// ("nats://nats.nats.svc:4222"). Required.
	URL string

	// Name is the connection name NATS shows in its monitoring.
	// Default "loopcast".
	Name string

	// Logger gets connection events (connect, disconnect, reconnect,
	// errors). Nil discards them.
	Logger *slog.Logger

	// MaxMessage is the server's --max-message. When it is larger than
	// the NATS server's max_payload, connecting logs a warning: such
	// messages reach only the publishing instance's members. Zero: no
	// check.
	MaxMessage int

	// QueueBytes bounds the bytes queued for NATS. Zero means
	// DefaultQueueBytes.
	QueueBytes int

	// ReconnectWait and MaxReconnectWait bound the backoff between
	// reconnect rounds. Zero means the defaults.
	ReconnectWait, MaxReconnectWait time.Duration
}

// Bridge is a broker (server/internal/bus.Broker) over one NATS
// connection. Create it with New, put it in server.Config.Broker (the
// server attaches itself), and Close it after the server has shut down.
// Safe for concurrent use.
type Bridge struct {
	nc   *nats.Conn
	log  *slog.Logger
	opts Options

	dst        atomic.Pointer[destination]
	maxPayload atomic.Int64 // the server's max_payload; 0 until connected
	closing    atomic.Bool
	closed     chan struct{} // by nats.go's ClosedHandler

	// Outgoing: Forward queues, the writer goroutine sends.
	out    chan outMsg
	queued atomic.Int64 // bytes in out

	// Subscriptions: Subscribe and Unsubscribe record what they want,
	// the writer goroutine makes it so.
	mu      sync.Mutex
	changed map[string]bool // room -> wanted, since the writer last looked
	spare   map[string]bool
	kick    chan struct{}

	// Owned by the writer goroutine.
	subs     map[string]*nats.Subscription
	subjects map[string]*[2]string // room -> text and binary subjects

	in chan *nats.Msg // shared by every room subscription
	// Owned by the reader goroutine: where each room's messages from
	// each publishing instance stand (gap detection); forget brings it
	// the rooms the writer unsubscribed from.
	origins     map[string][]originMark
	followed    uint64 // messages with an origin so far
	forget      chan string
	stopWriter  chan struct{}
	stopReader  chan struct{}
	writerDone  chan struct{}
	readerDone  chan struct{}
	loggedFault atomic.Bool // a publish error was logged since the last (re)connect

	stats counters
}

type destination struct{ h bus.Host }

type outMsg struct {
	room   string
	op     byte
	origin bus.Position
	buf    *bytebufferpool.ByteBuffer
}

// originMark is the last message a receiver got of a room from one
// publishing instance's room epoch.
type originMark struct {
	epoch, offset uint64
	seen          uint64 // the reader's message count when last seen, for eviction
}

// New connects to NATS and returns at once: when NATS is unreachable it
// keeps trying in the background (forever, with backoff) while the
// server serves its local rooms. It fails only on a malformed URL.
func New(opts Options) (*Bridge, error) {
	if err := ValidateURL(opts.URL); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "loopcast"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
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
	b := &Bridge{
		log:        opts.Logger.With("component", "nats"),
		opts:       opts,
		closed:     make(chan struct{}),
		out:        make(chan outMsg, queueMessages),
		changed:    map[string]bool{},
		spare:      map[string]bool{},
		kick:       make(chan struct{}, 1),
		subs:       map[string]*nats.Subscription{},
		subjects:   map[string]*[2]string{},
		in:         make(chan *nats.Msg, inboundMessages),
		origins:    map[string][]originMark{},
		forget:     make(chan string, 1024),
		stopWriter: make(chan struct{}),
		stopReader: make(chan struct{}),
		writerDone: make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	nc, err := nats.Connect(opts.URL,
		nats.Name(opts.Name),
		// NATS must not hand this instance its own messages: its
		// members got them from the local fan-out already.
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(b.backoff),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.ConnectHandler(func(nc *nats.Conn) { b.connected(nc, "NATS connected") }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.stats.reconnects.Add(1)
			b.connected(nc, "NATS reconnected; subscriptions restored")
		}),
		nats.DisconnectErrHandler(b.disconnected),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }),
		nats.ErrorHandler(b.asyncError),
	)
	if err != nil {
		return nil, fmt.Errorf("nats-url %s: %w", redact(opts.URL), err)
	}
	b.nc = nc
	if nc.IsConnected() {
		b.maxPayload.Store(nc.MaxPayload())
	} else {
		b.log.Warn("NATS unreachable; serving local rooms only and retrying", "url", redact(opts.URL))
	}
	go b.write()
	go b.read()
	return b, nil
}

// ValidateURL checks a --nats-url value: comma-separated URLs with a
// nats, tls, ws or wss scheme (or host:port, which nats.go reads as nats).
func ValidateURL(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("nats-url is empty")
	}
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return fmt.Errorf("nats-url %q: want nats://host:port, comma-separated for several", redact(s))
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("nats-url %q: scheme %q, want nats, tls, ws or wss", redact(s), p.Scheme)
		}
	}
	return nil
}

// redact hides passwords and tokens in URLs for logs.
func redact(s string) string {
	parts := strings.Split(s, ",")
	for i, u := range parts {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil && p.User != nil {
			parts[i] = p.Redacted()
			if _, has := p.User.Password(); !has {
				p.User = url.User("xxxxx") // a token
				parts[i] = p.String()
			}
		}
	}
	return strings.Join(parts, ",")
}

// Attach implements bus.Broker: it names where messages from other
// instances go. Until it is called they are dropped (counted as
// "unattached"): the server does not exist yet, so no member could get
// them.
func (b *Bridge) Attach(h bus.Host) {
	b.dst.Store(&destination{h})
	if _, err := shareWith(b.nc, h); err != nil {
		b.log.Error("NATS: cannot subscribe to other instances' occupancy; counting this instance's members only", "err", err)
	}
}

// Subscribe implements server.Broker: it records that room has members
// here and returns; the subscription is made by the writer goroutine.
func (b *Bridge) Subscribe(room string) { b.want(room, true) }

// Unsubscribe implements server.Broker, like Subscribe.
func (b *Bridge) Unsubscribe(room string) { b.want(room, false) }

func (b *Bridge) want(room string, on bool) {
	b.mu.Lock()
	b.changed[room] = on
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Forward implements bus.Broker: it copies payload and queues it for
// NATS without blocking, with origin in its header. It refuses a message
// over the NATS server's max_payload (*PayloadError), or when the queue
// is full (ErrBacklog). Each refusal is counted; receivers see it as a
// gap in origin.
func (b *Bridge) Forward(room string, op byte, payload []byte, origin bus.Position) error {
	if b.closing.Load() {
		b.stats.errors[errClosed].Add(1)
		return ErrClosed
	}
	n := int64(len(payload))
	if mp := b.maxPayload.Load(); mp > 0 && n > mp {
		b.stats.errors[errTooLarge].Add(1)
		return &PayloadError{Size: n, Max: mp}
	}
	if b.queued.Add(n) > int64(b.opts.QueueBytes) {
		b.queued.Add(-n)
		b.stats.errors[errBacklog].Add(1)
		return ErrBacklog
	}
	buf := bytebufferpool.Get()
	buf.B = append(buf.B[:0], payload...)
	select {
	case b.out <- outMsg{room: room, op: op, origin: origin, buf: buf}:
		return nil
	default:
		b.queued.Add(-n)
		bytebufferpool.Put(buf)
		b.stats.errors[errBacklog].Add(1)
		return ErrBacklog
	}
}

// write is the writer goroutine: it sends queued messages and makes the
// subscriptions match the rooms that have members. nats.go may block it
// on a full socket; the event loops never wait for it.
func (b *Bridge) write() {
	defer close(b.writerDone)
	for {
		select {
		case m := <-b.out:
			b.send(m)
		case <-b.kick:
			b.reconcile()
		case <-b.stopWriter:
			for {
				select {
				case m := <-b.out:
					b.send(m)
				default:
					return
				}
			}
		}
	}
}

func (b *Bridge) send(m outMsg) {
	n := int64(len(m.buf.B))
	msg := &nats.Msg{Subject: b.subject(m.room, m.op), Data: m.buf.B}
	if m.origin != (bus.Position{}) {
		// Only when the header fits beside the message in max_payload: a
		// message of max_payload itself goes without, and receivers
		// start their count of its room again.
		v := formatOrigin(m.origin)
		if mp := b.maxPayload.Load(); mp == 0 || int64(n)+headerLen(originHeader, v) <= mp {
			msg.Header = nats.Header{originHeader: []string{v}}
		}
	}
	err := b.nc.PublishMsg(msg) // copies
	bytebufferpool.Put(m.buf)
	b.queued.Add(-n)
	switch {
	case err == nil:
		b.stats.published.Add(1)
	case errors.Is(err, nats.ErrMaxPayload):
		// Before the first connect the size was not known to Forward.
		b.stats.errors[errTooLarge].Add(1)
	default:
		b.stats.errors[errPublish].Add(1)
		if b.loggedFault.CompareAndSwap(false, true) {
			b.log.Warn("NATS publish failed; messages reach only this instance's members until NATS is back", "err", err)
		}
	}
}

// subject returns the cached subject of room's messages with opcode op.
func (b *Bridge) subject(room string, op byte) string {
	s := b.subjects[room]
	if s == nil {
		if len(b.subjects) >= 1<<16 { // rooms published to without members here
			clear(b.subjects)
		}
		s = &[2]string{subject(room, bus.Text), subject(room, bus.Binary)}
		b.subjects[room] = s
	}
	if op == bus.Text {
		return s[0]
	}
	return s[1]
}

// reconcile subscribes to rooms that gained members and unsubscribes from
// rooms that lost them. A room that came and went since the last look
// is left as it is.
func (b *Bridge) reconcile() {
	b.mu.Lock()
	changed := b.changed
	b.changed, b.spare = b.spare, nil
	b.mu.Unlock()
	for room, want := range changed {
		sub := b.subs[room]
		switch {
		case want && sub == nil:
			s, err := b.nc.ChanSubscribe(filter(room), b.in)
			if err != nil {
				b.stats.errors[errSubscribe].Add(1)
				b.log.Warn("NATS subscribe failed; the room gets only this instance's messages", "room", room, "err", err)
				continue
			}
			b.subs[room] = s
		case !want && sub != nil:
			_ = sub.Unsubscribe() // fails only when the connection is closed
			delete(b.subs, room)
			delete(b.subjects, room)
			select {
			case b.forget <- room: // the reader drops its origins of room
			default:
			}
		}
	}
	clear(changed)
	b.spare = changed
	b.stats.subscriptions.Store(int64(len(b.subs)))
}

// read is the reader goroutine: messages of every subscribed room, in
// the order NATS delivered them, to the server's members.
func (b *Bridge) read() {
	defer close(b.readerDone)
	for {
		select {
		case m := <-b.in:
			b.deliver(m)
		case room := <-b.forget:
			delete(b.origins, room)
		case <-b.stopReader:
			return
		}
	}
}

func (b *Bridge) deliver(m *nats.Msg) {
	b.stats.received.Add(1)
	room, op, ok := parseSubject(m.Subject)
	if !ok {
		b.stats.errors[errDeliver].Add(1)
		return
	}
	d := b.dst.Load()
	if d == nil {
		b.stats.errors[errUnattached].Add(1)
		return
	}
	if o, ok := parseOrigin(m.Header.Get(originHeader)); !ok {
		// No place in its origin's order (too big for the header, or an
		// older instance): it may have taken a count, so room's counts
		// start again from the next message of each origin.
		delete(b.origins, room)
	} else {
		if missed := b.follow(room, o); missed > 0 {
			// Messages of this publisher never came (its queue was full,
			// NATS dropped them, a reconnect): the room starts a new epoch
			// here before this message, so loopcast.v1 clients are told.
			b.stats.gaps.Add(1)
			b.stats.missed.Add(int64(missed))
			d.h.Lost(room)
		}
	}
	if _, err := d.h.Deliver(room, op, m.Data, bus.Position{}); err != nil {
		// A larger --max-message elsewhere, or the server stopping.
		b.stats.errors[errDeliver].Add(1)
	}
}

// backoff is the pause before reconnect round attempts (1, 2, ...).
func (b *Bridge) backoff(attempts int) time.Duration {
	return reconnectDelay(attempts, b.opts.ReconnectWait, b.opts.MaxReconnectWait)
}

// reconnectDelay is the pause before reconnect round attempts (1, 2,
// ...): first doubling up to most, with ±25% jitter so that replicas do
// not reconnect in lockstep. The Bridge and the Stream share it.
func reconnectDelay(attempts int, first, most time.Duration) time.Duration {
	d := first << min(max(attempts-1, 0), 16)
	d = min(d, most)
	return d - d/4 + rand.N(d/2+1)
}

func (b *Bridge) connected(nc *nats.Conn, msg string) {
	mp := nc.MaxPayload()
	b.maxPayload.Store(mp)
	b.loggedFault.Store(false)
	b.log.Info(msg, "server", nc.ConnectedUrlRedacted(), "max_payload", mp, "subscriptions", b.stats.subscriptions.Load())
	if b.opts.MaxMessage > 0 && int64(b.opts.MaxMessage) > mp {
		b.log.Warn("max-message is over the NATS server's max_payload: larger messages reach only the publishing instance's members (counted as too_large); raise max_payload in NATS or lower --max-message",
			"max_message", b.opts.MaxMessage, "max_payload", mp)
	}
}

func (b *Bridge) disconnected(nc *nats.Conn, err error) {
	if b.closing.Load() {
		return
	}
	b.stats.disconnects.Add(1)
	b.log.Warn("NATS disconnected; serving local rooms only (messages between instances are lost until it is back), reconnecting", "err", err)
}

func (b *Bridge) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		b.stats.errors[errSlowConsumer].Add(1)
	} else {
		b.stats.errors[errAsync].Add(1)
	}
	subj := ""
	if sub != nil {
		subj = sub.Subject
	}
	b.log.Warn("NATS error", "subject", subj, "err", err)
}

// Close stops the bridge after the server has shut down: it sends what is
// queued, drains the connection (unsubscribes, flushes) and closes it.
// If ctx ends first the connection is closed at once.
func (b *Bridge) Close(ctx context.Context) error {
	if !b.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(b.stopWriter)
	<-b.writerDone
	var err error
	if derr := b.nc.Drain(); derr == nil {
		select {
		case <-b.closed:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	b.nc.Close()
	<-b.closed
	close(b.stopReader)
	<-b.readerDone
	return err
}

// follow records that room's message at origin o arrived and returns how
// many messages of the same origin were missed before it (0: none, or
// the first seen of that origin). Reader goroutine only.
func (b *Bridge) follow(room string, o bus.Position) uint64 {
	b.followed++
	marks := b.origins[room]
	for i := range marks {
		m := &marks[i]
		if m.epoch != o.Epoch {
			continue
		}
		var missed uint64
		if o.Offset > m.offset+1 {
			missed = o.Offset - m.offset - 1
		}
		m.offset, m.seen = o.Offset, b.followed // a count that went back: a new baseline
		return missed
	}
	if len(marks) >= maxOrigins {
		oldest := 0
		for i := range marks {
			if marks[i].seen < marks[oldest].seen {
				oldest = i
			}
		}
		marks = append(marks[:oldest], marks[oldest+1:]...)
	}
	b.origins[room] = append(marks, originMark{epoch: o.Epoch, offset: o.Offset, seen: b.followed})
	return 0
}

// formatOrigin writes o as the origin header's value: the epoch in 16
// hex digits, a dot, the count.
func formatOrigin(o bus.Position) string {
	return fmt.Sprintf("%016x.%d", o.Epoch, o.Offset)
}

// parseOrigin reverses formatOrigin; ok is false for a missing or
// malformed value (an older instance, or none).
func parseOrigin(v string) (bus.Position, bool) {
	e, n, found := strings.Cut(v, ".")
	if !found || len(e) != 16 {
		return bus.Position{}, false
	}
	epoch, err1 := strconv.ParseUint(e, 16, 64)
	off, err2 := strconv.ParseUint(n, 10, 64)
	if err1 != nil || err2 != nil || off == 0 {
		return bus.Position{}, false
	}
	return bus.Position{Epoch: epoch, Offset: off}, true
}

// headerLen is what a NATS header block with one field takes of
// max_payload: "NATS/1.0\r\n", "key: value\r\n", "\r\n".
func headerLen(key, value string) int64 {
	return int64(len("NATS/1.0\r\n") + len(key) + 2 + len(value) + 2 + 2)
}
