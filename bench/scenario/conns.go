package scenario

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/procstat"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// ConnsConfig drives the conns scenario: open Conns idle room members as
// fast as DialConcurrency allows, hold them for Duration, and read the
// server's RSS (with PID) before and after to get memory per connection.
type ConnsConfig struct {
	Common
	Conns int    // default 10000
	Room  string // default "conns"
	// Subscriptions, when above 0, makes every client a loopcast.v1
	// connection subscribed to that many rooms (of 1000, "<Room>-<n>")
	// instead of a raw-mode member of Room.
	Subscriptions int
	// Deflate offers permessage-deflate on every client.
	Deflate bool
}

// idleReadBuffer is the read buffer of an idle client: pings and closes only.
const idleReadBuffer = 256

// Conns runs the conns scenario.
func Conns(ctx context.Context, cfg ConnsConfig) (*result.Result, error) {
	cfg.defaults()
	cfg.Conns = orDefault(cfg.Conns, 10000)
	if cfg.Room == "" {
		cfg.Room = "conns"
	}
	if err := Preflight(ctx, cfg.Addr); err != nil {
		return nil, err
	}
	r := result.New(result.Conns, cfg.Server, cfg.Addr)
	r.Params = result.Params{Conns: cfg.Conns, DurationS: cfg.Duration.Seconds(), SourceIPs: cfg.SourceIPs}

	var rssBefore int64
	if cfg.PID > 0 {
		var err error
		if rssBefore, err = procstat.RSS(cfg.PID); err != nil {
			r.Errorf("server RSS: %v", err)
		}
	} else {
		r.Warnf("no --pid: server memory not measured")
	}

	var hs hist.Histogram
	pr := startProgress(cfg.Progress, "conns")
	defer pr.close()
	u := startUsage(cfg.PID)
	d := newDialer(&cfg.Common, idleReadBuffer, &hs)
	d.deflate = cfg.Deflate
	path := "/ws/" + cfg.Room
	if cfg.Subscriptions > 0 {
		d.protocol, path = "loopcast.v1", "/ws"
		r.Params.Subscribers = cfg.Subscriptions
	}
	t0 := time.Now()
	conns, failed, err := d.dialAll(ctx, cfg.Conns, cfg.DialConcurrency, path, pr)
	setup := time.Since(t0)
	defer closeAll(conns)
	connected := cfg.Conns - failed
	r.Metrics[result.SetupSeconds] = round3(setup.Seconds())
	r.Metrics[result.Connected] = float64(connected)
	r.Metrics[result.Failed] = float64(failed)
	r.Metrics[result.HandshakesPerSec] = perSec(uint64(connected), setup)
	r.Latency[result.LatencyHandshake] = result.FromHist(&hs)
	if failed > 0 {
		r.Errorf("%d of %d connections failed: %v", failed, cfg.Conns, err)
	}
	if connected == 0 {
		return r, nil
	}

	var (
		stopping atomic.Bool
		closes   atomic.Uint64
		codes    closeCodes
		wg       sync.WaitGroup
		replies  atomic.Int64
	)
	for i, c := range conns {
		if c == nil {
			continue
		}
		for s := range cfg.Subscriptions {
			cmd := fmt.Sprintf("sub %d %s-%d", s+1, cfg.Room, (i*cfg.Subscriptions+s)%1000)
			if err := c.WriteFrame(wsclient.OpText, []byte(cmd)); err != nil {
				r.Errorf("subscribing: %v", err)
			}
		}
		wg.Add(1)
		go func(c *wsclient.Conn) {
			defer wg.Done()
			for {
				_, p, err := c.ReadMessage()
				if err == nil && len(p) > 4 && string(p[:4]) == "sub " {
					replies.Add(1)
				}
				if err != nil {
					if !stopping.Load() {
						closes.Add(1)
						codes.add(err)
					}
					return
				}
			}
		}(c)
	}
	if want := int64(connected * cfg.Subscriptions); want > 0 {
		deadline := time.Now().Add(30 * time.Second)
		for replies.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := replies.Load(); got < want {
			r.Errorf("%d of %d subscriptions answered", got, want)
		}
	}
	holdStart := time.Now()
	pr.set(func() string {
		s := fmt.Sprintf("holding %d connections, %d closed", connected, closes.Load())
		if cfg.PID > 0 {
			if rss, err := procstat.RSS(cfg.PID); err == nil {
				s += fmt.Sprintf(", server RSS %.1f MiB", float64(rss)/(1<<20))
			}
		}
		return s
	})
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
	}
	if cfg.PID > 0 && rssBefore > 0 {
		if rss, err := procstat.RSS(cfg.PID); err == nil {
			r.Metrics[result.ServerRSSBefore] = float64(rssBefore)
			r.Metrics[result.ServerRSSAfter] = float64(rss)
			r.Metrics[result.RSSPerConn] = float64((rss - rssBefore) / int64(connected))
		}
	}
	u.finish(r)
	r.ElapsedS = round3(time.Since(holdStart).Seconds())
	stopping.Store(true)
	closeAll(conns)
	wg.Wait()
	r.Metrics[result.UnexpectedCloses] = float64(closes.Load())
	if n := closes.Load(); n > 0 {
		r.Errorf("%d idle connections closed by the server within %s: %s", n, cfg.Duration, codes.String())
	}
	return r, nil
}
