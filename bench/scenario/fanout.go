package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/seqcheck"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// FanoutConfig drives the fanout scenario: Subscribers members and
// Publishers publishing members in one room; every member (publishers
// included) must get every message, in order per publisher.
//
// Closed loop (Rate 0): each publisher keeps at most Window messages that
// have not yet reached every member. Fixed rate: publishers send Rate
// messages per second in total, stamped with their scheduled send time.
type FanoutConfig struct {
	Common
	Subscribers int     // default 1000
	Publishers  int     // default 1
	Size        int     // bytes, at least 16; default 64
	Window      int     // closed loop: undelivered messages per publisher; default 64
	Rate        float64 // messages per second over all publishers; 0: closed loop
	Room        string  // default: a fresh random name
	// Drain bounds the wait, after the load period, for messages still on
	// their way: the wait ends when no message completed (reached every
	// member) for Drain, default 5 s, or after maxDrain. Undelivered
	// then means missing.
	Drain time.Duration
	// Pollers is the number of goroutines reading the members (each an
	// epoll loop over its share); default GOMAXPROCS.
	Pollers int
	// Addrs, when it has several servers (loopcast instances sharing
	// rooms over NATS), spreads the members round robin over them:
	// member i, publishers first, on Addrs[i % len(Addrs)], so the first
	// publisher is on Addrs[0]. Empty: Addr alone.
	Addrs []string
	// Deflate offers permessage-deflate on every member; compressed
	// messages are inflated before they are checked. JSON fills each
	// message after its stamp with market-data JSON (what compresses like
	// real feeds) instead of zeros.
	Deflate, JSON bool
}

// WireBytesPerDelivery is the metric: bytes the members read from their
// sockets per delivery (frame headers included; compressed size when
// compression was negotiated).
const WireBytesPerDelivery = "wire_bytes_per_delivery"

// maxDrain caps the wait for the last messages after the load period.
const maxDrain = time.Minute

// ring is the number of in-flight sequence numbers tracked per publisher;
// a publisher never has more undelivered messages than this.
const ring = 4096

// stallAfter ends a run in which no message completed (reached every member)
// for this long: a member that never gets a message would otherwise hold the
// window forever. Long enough for an overloaded server to drain a full
// window at 15k members (64 x 15k deliveries at 100k/s).
const stallAfter = 10 * time.Second

// pubState tracks one publisher's messages until every member has them.
type pubState struct {
	sent   atomic.Uint64      // messages sent
	done   atomic.Uint64      // messages delivered to every member (in-order prefix)
	counts [ring]atomic.Int32 // pollers whose members all have the message
	wake   chan struct{}
}

type fanout struct {
	cfg      FanoutConfig
	members  int32 // receivers: subscribers + publishers
	pubs     []*pubState
	lat      hist.Histogram // send -> each delivery
	last     hist.Histogram // send -> delivery at the last member
	warm     atomic.Int64   // members that got a warm-up message
	measured atomic.Bool    // warm-up over
	stopping atomic.Bool
	lastDone atomic.Int64 // unix nanos of the latest full delivery
	closes   atomic.Uint64
	codes    closeCodes
	badMsgs  atomic.Uint64
	// Per member (wsclient.Conn.Tag), touched only by the member's
	// poller: order checks per publisher, and whether a warm-up
	// message came.
	trackers [][]seqcheck.Tracker
	warmed   []bool
	// shares is each poller's state (member Tag % len).
	shares []*pollerShare
	totals seqcheck.Totals
}

// Fanout runs the fanout scenario: connect every member, warm up until
// each has a message, publish for the duration, drain, then report.
func Fanout(ctx context.Context, cfg FanoutConfig) (*result.Result, error) {
	cfg.fanoutDefaults()
	for _, a := range cfg.Addrs {
		if err := Preflight(ctx, a); err != nil {
			return nil, err
		}
	}
	r := result.New(result.Fanout, cfg.Server, strings.Join(cfg.Addrs, ","))
	r.Params = result.Params{Subscribers: cfg.Subscribers, Publishers: cfg.Publishers, Size: cfg.Size,
		DurationS: cfg.Duration.Seconds(), SourceIPs: cfg.SourceIPs}
	if cfg.Rate > 0 {
		r.Params.Rate = cfg.Rate
	} else {
		r.Params.Window = cfg.Window
	}

	f := &fanout{cfg: cfg, members: int32(cfg.Subscribers + cfg.Publishers)}
	for i := 0; i < cfg.Publishers; i++ {
		f.pubs = append(f.pubs, &pubState{wake: make(chan struct{}, 1)})
	}
	pr := startProgress(cfg.Progress, "fanout")
	defer pr.close()

	conns, err := f.connect(ctx, r, pr)
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, sh := range f.shares {
			sh.lat.Flush()
		}
	}()
	readers, err := f.startReaders(conns)
	if err != nil {
		return nil, err
	}
	defer readers.stop() // before closeAll: no poller reads a closed socket
	pubConns := conns[:cfg.Publishers]
	if err := f.warmUp(pubConns[0], readers, pr); err != nil {
		return nil, err
	}

	u := startUsage(cfg.PID)
	start := time.Now()
	stallErrs := f.load(ctx, pubConns, start, pr)
	elapsed := f.drain(start)
	f.stopping.Store(true)
	u.finish(r)
	readers.stop()
	var wire int64
	for _, c := range conns {
		if c != nil {
			wire += c.BytesRead
		}
	}
	for _, sh := range f.shares {
		sh.lat.Flush()
	}
	for _, c := range conns {
		c.CloseGracefully()
	}
	f.report(r, elapsed, stallErrs)
	if d := f.lat.Count(); d > 0 {
		r.Metrics[WireBytesPerDelivery] = round3(float64(wire) / float64(d))
	}
	return r, nil
}

// fanoutDefaults fills in what the caller left zero.
func (cfg *FanoutConfig) fanoutDefaults() {
	cfg.defaults()
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{cfg.Addr}
	}
	cfg.Addr = cfg.Addrs[0]
	cfg.Subscribers = orDefault(cfg.Subscribers, 1000)
	cfg.Publishers = min(orDefault(cfg.Publishers, 1), seqcheck.WarmupPublisher-1)
	cfg.Size = max(orDefault(cfg.Size, 64), seqcheck.StampSize)
	cfg.Window = min(orDefault(cfg.Window, 64), ring)
	if cfg.Drain <= 0 {
		cfg.Drain = 5 * time.Second
	}
	if cfg.Room == "" {
		var b [4]byte
		rand.Read(b[:])
		cfg.Room = "bench-" + hex.EncodeToString(b[:])
	}
}

// connect opens every member (publishers first). Every member must be
// there, or "every member gets every message" cannot be checked.
func (f *fanout) connect(ctx context.Context, r *result.Result, pr *progress) ([]*wsclient.Conn, error) {
	var hs hist.Histogram
	ds := make([]*dialer, len(f.cfg.Addrs))
	for i, a := range f.cfg.Addrs {
		c := f.cfg.Common
		c.Addr = a
		ds[i] = newDialer(&c, 0, &hs)
		ds[i].deflate = f.cfg.Deflate
	}
	t0 := time.Now()
	conns, failed, err := dialSpread(ctx, ds, int(f.members), f.cfg.DialConcurrency, "/ws/"+f.cfg.Room, pr)
	r.Metrics[result.SetupSeconds] = round3(time.Since(t0).Seconds())
	r.Latency[result.LatencyHandshake] = result.FromHist(&hs)
	if failed > 0 {
		return conns, fmt.Errorf("fanout: %d of %d members failed to connect: %w", failed, f.members, err)
	}
	return conns, nil
}

// startReaders hands the members to pollers, each with its share of the
// members' counters, and starts them.
func (f *fanout) startReaders(conns []*wsclient.Conn) (*pollerSet, error) {
	f.trackers = make([][]seqcheck.Tracker, len(conns))
	f.warmed = make([]bool, len(conns))
	readers, err := newPollerSet(conns, f.cfg.Pollers, f.receive, f.ended)
	if err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	for range readers.len() {
		f.shares = append(f.shares, &pollerShare{lat: hist.NewLocal(&f.lat), counts: make([][ring]int32, len(f.pubs))})
	}
	for i := range conns {
		f.trackers[i] = make([]seqcheck.Tracker, len(f.pubs))
		f.shares[i%readers.len()].members++
	}
	readers.start(func(err error) {
		f.codes.add(err)
		f.closes.Add(1)
	})
	return readers, nil
}

// warmUp sends marker messages from pub until every member has one (the
// server may register members a little after the 101), then starts the
// measurement.
func (f *fanout) warmUp(pub *wsclient.Conn, readers *pollerSet, pr *progress) error {
	pr.set(func() string { return fmt.Sprintf("warm-up: %d of %d members reached", f.warm.Load(), f.members) })
	warm := make([]byte, f.cfg.Size)
	warmDeadline := time.Now().Add(30 * time.Second)
	for i := uint64(0); f.warm.Load() < int64(f.members); i++ {
		if time.Now().After(warmDeadline) || f.closes.Load() > 0 {
			f.stopping.Store(true)
			readers.stop()
			return fmt.Errorf("fanout: warm-up: only %d of %d members got a message within 30 s (closes: %s)",
				f.warm.Load(), f.members, f.codes.String())
		}
		seqcheck.PutStamp(warm, seqcheck.WarmupPublisher, i, time.Now().UnixNano())
		if err := pub.WriteFrame(wsclient.OpBinary, warm); err != nil {
			return fmt.Errorf("fanout: warm-up: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let warm-up messages drain
	f.measured.Store(true)
	return nil
}

// load runs every publisher from start for the duration and returns each
// one's error (a stalled window).
func (f *fanout) load(ctx context.Context, pubConns []*wsclient.Conn, start time.Time, pr *progress) []error {
	f.lastDone.Store(start.UnixNano())
	deadline := start.Add(f.cfg.Duration)
	pr.set(func() string {
		el := time.Since(start)
		return fmt.Sprintf("%.0f deliveries/s  %.0f published/s  p99 %s  closes %d",
			perSec(f.lat.Count(), el), perSec(f.sent(), el), fmtNs(f.lat.Quantile(0.99)), f.closes.Load())
	})
	var pubWG sync.WaitGroup
	stallErrs := make([]error, len(pubConns))
	for i, c := range pubConns {
		pubWG.Add(1)
		go func(i int, c *wsclient.Conn) {
			defer pubWG.Done()
			stallErrs[i] = f.publish(ctx, i, c, start, deadline)
		}(i, c)
	}
	pubWG.Wait()
	return stallErrs
}

// drain waits until every message reached every member, as long as
// messages keep completing (a slow server drains a full window of a large
// room for several seconds), or gives up. It returns the measured time:
// from start to the last completion.
func (f *fanout) drain(start time.Time) time.Duration {
	drainStart := time.Now()
	for !f.allDone() && f.closes.Load() == 0 && time.Since(drainStart) < maxDrain {
		lastCompletion := time.Unix(0, max(f.lastDone.Load(), drainStart.UnixNano()))
		if time.Since(lastCompletion) >= f.cfg.Drain {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Duration(f.lastDone.Load() - start.UnixNano())
	if elapsed < f.cfg.Duration/2 {
		elapsed = time.Since(start)
	}
	return elapsed
}

// sent is the number of measured messages published so far.
func (f *fanout) sent() uint64 {
	var sent uint64
	for _, p := range f.pubs {
		sent += p.sent.Load()
	}
	return sent
}

// report checks every member's streams and fills in r.
func (f *fanout) report(r *result.Result, elapsed time.Duration, stallErrs []error) {
	for i := range f.trackers {
		for j := range f.trackers[i] {
			f.trackers[i][j].Finish(0, f.pubs[j].sent.Load())
			f.totals.Add(&f.trackers[i][j])
		}
	}
	sent := f.sent()
	r.ElapsedS = round3(elapsed.Seconds())
	r.Metrics[result.Messages] = float64(sent)
	r.Metrics[result.Deliveries] = float64(f.lat.Count())
	r.Metrics[result.DeliveriesPerSec] = perSec(f.lat.Count(), elapsed)
	r.Metrics[result.PublishedPerSec] = perSec(sent, elapsed)
	r.Metrics[result.Gaps] = float64(f.totals.Gaps)
	r.Metrics[result.Missing] = float64(f.totals.Missing)
	r.Metrics[result.Reordered] = float64(f.totals.Late)
	r.Metrics[result.Duplicates] = float64(f.totals.Duplicates)
	r.Metrics[result.Undelivered] = float64(f.totals.Undelivered)
	r.Metrics[result.UnexpectedCloses] = float64(f.closes.Load())
	r.Latency[result.LatencyDelivery] = result.FromHist(&f.lat)
	r.Latency[result.LatencyLast] = result.FromHist(&f.last)
	for i, err := range stallErrs {
		if err != nil {
			r.Errorf("publisher %d: %v", i, err)
		}
	}
	if n := f.closes.Load(); n > 0 {
		r.Errorf("%d members closed during the run: %s", n, f.codes.String())
	}
	if t := f.totals; t.DirtyStreams > 0 {
		r.Errorf("%d of %d member streams not clean: %d gaps (%d messages missing), %d reordered, %d duplicates",
			t.DirtyStreams, t.Streams, t.Gaps, t.Missing, t.Late, t.Duplicates)
	}
	if t := f.totals; t.Undelivered > 0 {
		r.Errorf("%d deliveries still missing after the load ended (no message completed for %s, or %s passed), at %d of %d members (lost, or the server stalled)",
			t.Undelivered, f.cfg.Drain, maxDrain, t.ShortStreams, t.Streams)
	}
	if n := f.badMsgs.Load(); n > 0 {
		r.Errorf("%d messages with a wrong opcode, size or publisher", n)
	}
}

func (f *fanout) allDone() bool {
	for _, p := range f.pubs {
		if p.done.Load() < p.sent.Load() {
			return false
		}
	}
	return true
}

// publish sends until deadline: closed loop within the window, or at the
// fixed rate.
func (f *fanout) publish(ctx context.Context, id int, c *wsclient.Conn, start, deadline time.Time) error {
	p := f.pubs[id]
	buf := make([]byte, f.cfg.Size)
	if f.cfg.JSON {
		fillJSON(buf[seqcheck.StampSize:], uint64(id))
	}
	limit := uint64(f.cfg.Window)
	var interval time.Duration
	if f.cfg.Rate > 0 {
		limit = ring
		interval = time.Duration(float64(time.Second) * float64(len(f.pubs)) / f.cfg.Rate)
		// Stagger publishers over one interval.
		start = start.Add(interval * time.Duration(id) / time.Duration(len(f.pubs)))
	}
	stall := time.NewTimer(stallAfter)
	defer stall.Stop()
	next := start
	var n uint64
	for {
		now := time.Now()
		if !now.Before(deadline) || ctx.Err() != nil || f.closes.Load() > 0 {
			return nil
		}
		if n-p.done.Load() >= limit {
			// Window full: wait for deliveries.
			stall.Reset(stallAfter)
			select {
			case <-p.wake:
				continue
			case <-stall.C:
				if n-p.done.Load() >= limit {
					return fmt.Errorf("stalled: no message reached every member for %s (%d in the window)", stallAfter, n-p.done.Load())
				}
				continue
			case <-ctx.Done():
				return nil
			}
		}
		ts := now
		if interval > 0 {
			if next.After(now) {
				time.Sleep(next.Sub(now))
				continue
			}
			ts = next // scheduled time: latency includes our own lateness
			next = next.Add(interval)
		}
		seqcheck.PutStamp(buf, uint16(id), n, ts.UnixNano())
		// Count before writing: a fast echo may be delivered before Write returns.
		p.sent.Store(n + 1)
		if err := c.WriteFrame(wsclient.OpBinary, buf); err != nil {
			p.sent.Store(n)
			return nil // the reader records the close
		}
		n++
	}
}

// receive checks one message of member c.Tag (on its poller).
func (f *fanout) receive(c *wsclient.Conn, op byte, p []byte, now int64) {
	pub, n, ns, ok := seqcheck.ReadStamp(p)
	if !ok || op != wsclient.OpBinary || len(p) != f.cfg.Size {
		f.badMsgs.Add(1)
		return
	}
	if pub == seqcheck.WarmupPublisher {
		if !f.warmed[c.Tag] {
			f.warmed[c.Tag] = true
			f.warm.Add(1)
		}
		return
	}
	trackers := f.trackers[c.Tag]
	if int(pub) >= len(trackers) || !f.measured.Load() {
		f.badMsgs.Add(1)
		return
	}
	kind := trackers[pub].Observe(n)
	lat := now - ns
	share := f.shares[c.Tag%len(f.shares)]
	share.lat.Record(lat)
	if kind == seqcheck.Duplicate {
		return
	}
	ps := f.pubs[pub]
	// Counted per poller without atomics; the poller whose members
	// all have the message counts once in the shared slot.
	local := &share.counts[pub][n%ring]
	if *local++; *local < share.members {
		return
	}
	*local = 0
	slot := &ps.counts[n%ring]
	if slot.Add(1) == int32(len(f.shares)) {
		slot.Store(0)
		f.last.Record(lat)
		for {
			d := ps.done.Load()
			if n+1 <= d || ps.done.CompareAndSwap(d, n+1) {
				break
			}
		}
		f.lastDone.Store(now)
		select {
		case ps.wake <- struct{}{}:
		default:
		}
	}
}

// pollerShare is what one poller's members record without atomics.
type pollerShare struct {
	members int32         // members read by this poller
	counts  [][ring]int32 // per publisher: members here that have the message
	lat     *hist.Local   // into fanout.lat
}

// ended records a member's connection ending before the run is over.
func (f *fanout) ended(c *wsclient.Conn, err error) {
	if !f.stopping.Load() {
		f.closes.Add(1)
		f.codes.add(err)
	}
}

// fillJSON fills b with market-data JSON, the same for every message of
// a publisher: quotes with varying digits, as a feed sends them.
func fillJSON(b []byte, seed uint64) {
	var out []byte
	x := seed*2654435761 + 1
	for i := 0; len(out) < len(b); i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out = fmt.Appendf(out, `{"symbol":"%s","bid":%d.%04d,"ask":%d.%04d,"volume":%d},`,
			[]string{"EURUSD", "GBPUSD", "USDJPY", "AUDUSD"}[i%4], 1+x%3, x%10000, 1+x%3, (x>>16)%10000, (x>>32)%100000)
	}
	copy(b, out)
}
