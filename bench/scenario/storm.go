package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/result"
)

// StormConfig drives the storm scenario, what an Application Gateway
// configuration update does: Conns connected clients lose their connections
// at the same instant and all reconnect at once, retrying failures with
// jittered exponential backoff (Backoff doubling up to 2 s). Repeated Rounds
// times; Duration bounds each round's recovery.
type StormConfig struct {
	Common
	Conns   int           // default 5000
	Rounds  int           // default 1
	Backoff time.Duration // first retry delay; default 50 ms
	Room    string        // default "storm"
}

const maxBackoff = 2 * time.Second

// Storm runs the storm scenario.
func Storm(ctx context.Context, cfg StormConfig) (*result.Result, error) {
	cfg.defaults()
	if cfg.Duration == 10*time.Second {
		cfg.Duration = 30 * time.Second // recovery bound, not a load period
	}
	cfg.Conns = orDefault(cfg.Conns, 5000)
	cfg.Rounds = orDefault(cfg.Rounds, 1)
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	if cfg.Room == "" {
		cfg.Room = "storm"
	}
	if err := Preflight(ctx, cfg.Addr); err != nil {
		return nil, err
	}
	r := result.New(result.Storm, cfg.Server, cfg.Addr)
	r.Params = result.Params{Conns: cfg.Conns, Rounds: cfg.Rounds, DurationS: cfg.Duration.Seconds(), SourceIPs: cfg.SourceIPs}

	var hs, back hist.Histogram
	pr := startProgress(cfg.Progress, "storm")
	defer pr.close()
	d := newDialer(&cfg.Common, idleReadBuffer, &hs)
	path := "/ws/" + cfg.Room
	t0 := time.Now()
	conns, failed, err := d.dialAll(ctx, cfg.Conns, cfg.DialConcurrency, path, pr)
	r.Metrics[result.SetupSeconds] = round3(time.Since(t0).Seconds())
	if failed > 0 {
		closeAll(conns)
		return nil, fmt.Errorf("storm: %d of %d clients failed to connect before the storm: %w", failed, cfg.Conns, err)
	}

	var (
		attempts, fails atomic.Uint64
		worstRecovery   time.Duration
		lost            int
		reconnected     atomic.Int64
		firstErr        atomic.Pointer[string]
	)
	u := startUsage(cfg.PID)
	start := time.Now()
	for round := 1; round <= cfg.Rounds && ctx.Err() == nil; round++ {
		reconnected.Store(0)
		pr.set(func() string {
			return fmt.Sprintf("round %d: %d of %d back, %d failed attempts", round, reconnected.Load(), cfg.Conns, fails.Load())
		})
		hs.Reset() // handshake latency of the storm only
		rctx, cancel := context.WithTimeout(ctx, cfg.Duration)
		drop := time.Now()
		for _, c := range conns {
			c.Close() // abrupt, as when the gateway drops the connection
		}
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), uint64(drop.UnixNano())))
				delay := cfg.Backoff
				for rctx.Err() == nil {
					attempts.Add(1)
					c, err := d.dial(rctx, path)
					if err == nil {
						conns[i] = c
						back.Record(int64(time.Since(drop)))
						reconnected.Add(1)
						return
					}
					fails.Add(1)
					s := err.Error()
					firstErr.CompareAndSwap(nil, &s)
					// Full jitter (AWS architecture blog), bounded by the round.
					sleep := time.Duration(rng.Int64N(int64(delay))) + time.Millisecond
					select {
					case <-time.After(sleep):
					case <-rctx.Done():
					}
					delay = min(delay*2, maxBackoff)
				}
				conns[i] = nil
			}(i)
		}
		wg.Wait()
		cancel()
		rec := time.Since(drop)
		n := int(reconnected.Load())
		if n < cfg.Conns {
			lost += cfg.Conns - n
			r.Errorf("round %d: %d of %d clients not back within %s", round, cfg.Conns-n, cfg.Conns, cfg.Duration)
		} else if rec > worstRecovery {
			worstRecovery = rec
		}
		// Clients that did not come back are replaced before the next round.
		for i, c := range conns {
			if c == nil && round < cfg.Rounds {
				if c, err := d.dial(ctx, path); err == nil {
					conns[i] = c
				} else {
					closeAll(conns)
					return nil, fmt.Errorf("storm: reconnecting before round %d: %w", round+1, err)
				}
			}
		}
	}
	elapsed := time.Since(start)
	u.finish(r)
	closeAll(conns)
	r.ElapsedS = round3(elapsed.Seconds())
	r.Metrics[result.RecoverySeconds] = round3(worstRecovery.Seconds())
	r.Metrics[result.Reconnected] = float64(int64(cfg.Conns*cfg.Rounds) - int64(lost))
	r.Metrics[result.Attempts] = float64(attempts.Load())
	r.Metrics[result.Failed] = float64(fails.Load())
	if worstRecovery > 0 {
		r.Metrics[result.HandshakesPerSec] = perSec(uint64(cfg.Conns), worstRecovery)
	}
	r.Latency[result.LatencyReconnect] = result.FromHist(&back)
	r.Latency[result.LatencyHandshake] = result.FromHist(&hs)
	if fails.Load() > 0 {
		r.Warnf("%d failed attempts (retried with backoff), first: %s", fails.Load(), *firstErr.Load())
	}
	return r, nil
}
