package scenario

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/seqcheck"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// EchoConfig drives the echo scenario: Conns connections to /echo, each
// keeping Inflight binary messages of Size bytes in flight; every echo is
// timed (the send time rides in the payload) and answered by a new message.
type EchoConfig struct {
	Common
	Conns    int // default 50
	Size     int // bytes, at least 16; default 64
	Inflight int // messages in flight per connection; default 1
	Pollers  int // goroutines reading the connections (epoll loops); default GOMAXPROCS
}

// Echo runs the echo scenario.
func Echo(ctx context.Context, cfg EchoConfig) (*result.Result, error) {
	cfg.defaults()
	cfg.Conns = orDefault(cfg.Conns, 50)
	cfg.Size = max(orDefault(cfg.Size, 64), seqcheck.StampSize)
	cfg.Inflight = orDefault(cfg.Inflight, 1)
	if err := Preflight(ctx, cfg.Addr); err != nil {
		return nil, err
	}
	r := result.New(result.Echo, cfg.Server, cfg.Addr)
	r.Params = result.Params{Conns: cfg.Conns, Size: cfg.Size, Inflight: cfg.Inflight,
		DurationS: cfg.Duration.Seconds(), SourceIPs: cfg.SourceIPs}

	var rtt, hs hist.Histogram
	pr := startProgress(cfg.Progress, "echo")
	defer pr.close()
	d := newDialer(&cfg.Common, 0, &hs)
	t0 := time.Now()
	conns, failed, err := d.dialAll(ctx, cfg.Conns, cfg.DialConcurrency, "/echo", pr)
	defer closeAll(conns)
	r.Metrics[result.SetupSeconds] = round3(time.Since(t0).Seconds())
	r.Latency[result.LatencyHandshake] = result.FromHist(&hs)
	if failed > 0 {
		if failed == cfg.Conns {
			return nil, fmt.Errorf("echo: no connection opened: %w", err)
		}
		r.Errorf("%d of %d connections failed: %v", failed, cfg.Conns, err)
	}

	var live []*wsclient.Conn
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}
	e := &echo{size: cfg.Size, inflight: cfg.Inflight, conns: make([]echoConn, len(live))}
	readers, err := newPollerSet(live, cfg.Pollers, e.receive, e.ended)
	if err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	for range readers.len() {
		e.rtts = append(e.rtts, hist.NewLocal(&rtt))
	}
	for i := range live {
		e.conns[i].buf = make([]byte, cfg.Size)
	}

	u := startUsage(cfg.PID)
	start := time.Now()
	e.deadline = start.Add(cfg.Duration).UnixNano()
	pr.set(func() string {
		el := time.Since(start)
		return fmt.Sprintf("%.0f msg/s  p99 %s", perSec(rtt.Count(), el), fmtNs(rtt.Quantile(0.99)))
	})
	for _, c := range live {
		for range cfg.Inflight {
			e.outstanding.Add(1)
			if err := e.send(c); err != nil {
				e.ended(c, err)
				break
			}
		}
	}
	readers.start(func(err error) {
		e.closes.Add(1)
		e.codes.add(err)
	})
	// Run until every echo came back after the deadline; echoes still
	// missing 5 s after it are lost.
	drainEnd := time.Unix(0, e.deadline).Add(5 * time.Second)
	for time.Now().Before(drainEnd) && !(time.Now().UnixNano() >= e.deadline && e.outstanding.Load() == 0) {
		time.Sleep(2 * time.Millisecond)
	}
	e.stopping.Store(true)
	readers.stop()
	for _, l := range e.rtts {
		l.Flush()
	}
	// The interval includes the drain of the last in-flight echoes, which
	// were counted too.
	elapsed := time.Since(start)
	u.finish(r)
	r.ElapsedS = round3(elapsed.Seconds())
	r.Metrics[result.MsgsPerSec] = perSec(rtt.Count(), elapsed)
	r.Metrics[result.Messages] = float64(e.sent.Load())
	r.Metrics[result.UnexpectedCloses] = float64(e.closes.Load())
	r.Latency[result.LatencyRTT] = result.FromHist(&rtt)
	if n := e.closes.Load(); n > 0 {
		r.Errorf("%d connections ended early: %s", n, e.codes.String())
	}
	if n := e.mismatched.Load(); n > 0 {
		r.Errorf("%d echoes differed from what was sent (opcode or size)", n)
	}
	if lost := e.sent.Load() - rtt.Count() - e.mismatched.Load(); lost > 0 && e.closes.Load() == 0 {
		r.Errorf("%d messages sent but not echoed within 5 s of the end", lost)
	}
	return r, nil
}

// echo is the state of an echo run shared by its pollers.
type echo struct {
	size, inflight int
	deadline       int64 // UnixNano: no new message after it
	conns          []echoConn
	rtts           []*hist.Local // one per poller (Tag % len)
	outstanding    atomic.Int64  // messages sent and not yet echoed, on live connections
	sent           atomic.Uint64
	mismatched     atomic.Uint64
	closes         atomic.Uint64
	codes          closeCodes
	stopping       atomic.Bool
}

// echoConn is one connection's state, touched by its poller (and by the
// first sends before the pollers start).
type echoConn struct {
	buf         []byte
	n           uint64 // messages sent
	outstanding int
	ended       bool
}

// send writes c's next message, stamped with its send time.
func (e *echo) send(c *wsclient.Conn) error {
	ec := &e.conns[c.Tag]
	seqcheck.PutStamp(ec.buf, 0, ec.n, time.Now().UnixNano())
	ec.n++
	ec.outstanding++
	e.sent.Add(1)
	return c.WriteFrame(wsclient.OpBinary, ec.buf)
}

// receive times an echo and, before the deadline, answers it with the
// next message. It allocates nothing.
func (e *echo) receive(c *wsclient.Conn, op byte, p []byte, now int64) {
	ec := &e.conns[c.Tag]
	if _, _, ns, ok := seqcheck.ReadStamp(p); op != wsclient.OpBinary || len(p) != e.size || !ok {
		e.mismatched.Add(1)
	} else {
		e.rtts[c.Tag%len(e.rtts)].Record(now - ns)
	}
	ec.outstanding--
	if now < e.deadline {
		if err := e.send(c); err != nil {
			e.ended(c, err)
		}
		return
	}
	e.outstanding.Add(-1)
}

// ended records a connection that ended (or failed a write) early; its
// outstanding messages are not waited for.
func (e *echo) ended(c *wsclient.Conn, err error) {
	ec := &e.conns[c.Tag]
	if ec.ended {
		return
	}
	ec.ended = true
	if !e.stopping.Load() {
		e.closes.Add(1)
		e.codes.add(err)
	}
	e.outstanding.Add(-int64(ec.outstanding))
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

func fmtNs(ns int64) string {
	return time.Duration(ns).Round(time.Microsecond).String()
}
