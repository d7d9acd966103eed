package scenario

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/result"
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
}

// Echo runs the echo scenario.
func Echo(ctx context.Context, cfg EchoConfig) (*result.Result, error) {
	cfg.defaults()
	cfg.Conns = orDefault(cfg.Conns, 50)
	cfg.Size = max(orDefault(cfg.Size, 64), headerSize)
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

	var (
		stopping   atomic.Bool
		mismatched atomic.Uint64
		codes      closeCodes
		closes     atomic.Uint64
		sent       atomic.Uint64
		wg         sync.WaitGroup
	)
	u := startUsage(cfg.PID)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	pr.set(func() string {
		el := time.Since(start)
		return fmt.Sprintf("%.0f msg/s  p99 %s", perSec(rtt.Count(), el), fmtNs(rtt.Quantile(0.99)))
	})
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func(c *wsclient.Conn) {
			defer wg.Done()
			err := echoLoop(c, cfg.Size, cfg.Inflight, deadline, &rtt, &sent, &mismatched)
			if err != nil && !stopping.Load() {
				closes.Add(1)
				codes.add(err)
			}
		}(c)
	}
	stopTimer := time.AfterFunc(time.Until(deadline)+5*time.Second, func() {
		// Bound the drain: echoes still missing 5 s after the end are lost.
		stopping.Store(true)
		for _, c := range conns {
			if c != nil {
				c.NetConn().SetReadDeadline(time.Now())
			}
		}
	})
	wg.Wait()
	stopTimer.Stop()
	stopping.Store(true)
	// The interval includes the drain of the last in-flight echoes, which
	// were counted too.
	elapsed := time.Since(start)
	u.finish(r)
	r.ElapsedS = round3(elapsed.Seconds())
	r.Metrics[result.MsgsPerSec] = perSec(rtt.Count(), elapsed)
	r.Metrics[result.Messages] = float64(sent.Load())
	r.Metrics[result.UnexpectedCloses] = float64(closes.Load())
	r.Latency[result.LatencyRTT] = result.FromHist(&rtt)
	if n := closes.Load(); n > 0 {
		r.Errorf("%d connections ended early: %s", n, codes.String())
	}
	if n := mismatched.Load(); n > 0 {
		r.Errorf("%d echoes differed from what was sent (opcode or size)", n)
	}
	if lost := sent.Load() - rtt.Count() - mismatched.Load(); lost > 0 && closes.Load() == 0 {
		r.Errorf("%d messages sent but not echoed within 5 s of the end", lost)
	}
	return r, nil
}

// echoLoop keeps inflight messages outstanding until deadline, then collects
// the outstanding echoes. It allocates nothing per message.
func echoLoop(c *wsclient.Conn, size, inflight int, deadline time.Time, rtt *hist.Histogram, sent, mismatched *atomic.Uint64) error {
	buf := make([]byte, size)
	var n uint64
	send := func() error {
		putHeader(buf, 0, n, time.Now().UnixNano())
		n++
		sent.Add(1)
		return c.WriteFrame(wsclient.OpBinary, buf)
	}
	for i := 0; i < inflight; i++ {
		if err := send(); err != nil {
			return err
		}
	}
	outstanding := inflight
	for outstanding > 0 {
		op, p, err := c.ReadMessage()
		if err != nil {
			return err
		}
		now := time.Now()
		_, _, ns, ok := readHeader(p)
		if op != wsclient.OpBinary || len(p) != size || !ok {
			mismatched.Add(1)
		} else {
			rtt.Record(now.UnixNano() - ns)
		}
		outstanding--
		if now.Before(deadline) {
			if err := send(); err != nil {
				return err
			}
			outstanding++
		}
	}
	return nil
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
