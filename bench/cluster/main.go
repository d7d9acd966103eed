// Command cluster measures fan-out across loopcast instances: one room
// whose members are split over several instances (--addrs, round robin)
// that share it through NATS, one publisher on the first instance, closed
// loop (at most --window messages not yet delivered to every member). It
// reports deliveries per second and delivery latency, and checks that every
// member got every message once, in order. With one address it is the
// single-instance baseline. bench/cluster/run drives it; the fanout scenario
// of cmd/loopcast-bench dials one address only, hence this small tool.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/seqcheck"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// ring is how many messages in flight the completion counters track; the
// window is at most this.
const ring = 4096

func main() {
	addrs := flag.String("addrs", "127.0.0.1:8080", "comma-separated loopcast instances; members round robin, the publisher on the first")
	subs := flag.Int("subs", 1000, "subscribers (the publisher is a member too)")
	size := flag.Int("size", 64, "message size in bytes (at least the 16-byte stamp)")
	window := flag.Int("window", 64, "messages not yet delivered to every member")
	dur := flag.Duration("duration", 10*time.Second, "load period")
	sourceIPs := flag.Int("source-ips", 16, "spread client sockets over 127.0.0.2..127.0.0.(1+n)")
	label := flag.String("label", "", "name of the run in the output line")
	flag.Parse()
	if err := run(strings.Split(*addrs, ","), *subs, max(*size, seqcheck.StampSize), min(*window, ring), *dur, *sourceIPs, *label); err != nil {
		fmt.Fprintln(os.Stderr, "cluster bench:", err)
		os.Exit(1)
	}
}

type member struct {
	c      *wsclient.Conn
	warmed bool
	seq    seqcheck.Tracker // the measured messages: gaps, reordering, duplicates
	bad    int              // messages without a stamp
}

func run(addrs []string, subs, size, window int, dur time.Duration, sourceIPs int, label string) error {
	ctx := context.Background()
	room := fmt.Sprintf("/ws/cluster-bench-%d", time.Now().UnixNano())
	n := subs + 1
	members := make([]*member, n)
	perAddr := make([]int, len(addrs))
	for i := range members {
		o := wsclient.Options{}
		if sourceIPs > 0 {
			o.LocalIP = net.IPv4(127, 0, 0, byte(2+i%sourceIPs))
		}
		c, err := wsclient.Dial(ctx, addrs[i%len(addrs)], room, o)
		if err != nil {
			return fmt.Errorf("member %d of %d: %w", i, n, err)
		}
		defer c.Close()
		members[i] = &member{c: c}
		perAddr[i%len(addrs)]++
	}

	var (
		lat, last hist.Histogram
		warm      atomic.Int64
		measuring atomic.Bool
		done      atomic.Uint64 // messages delivered to every member (prefix)
		counts    [ring]atomic.Int32
		wake      = make(chan struct{}, 1)
		lastDone  atomic.Int64
		wg        sync.WaitGroup
	)
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, p, err := m.c.ReadMessage()
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				pub, seq, sentNs, ok := seqcheck.ReadStamp(p)
				if !ok {
					m.bad++
					continue
				}
				if pub == seqcheck.WarmupPublisher {
					if !m.warmed {
						m.warmed = true
						warm.Add(1)
					}
					continue
				}
				if !measuring.Load() {
					continue
				}
				if m.seq.Observe(seq) == seqcheck.Duplicate {
					continue // already counted: not a completion
				}
				l := now - sentNs
				lat.Record(l)
				if counts[seq%ring].Add(1) == int32(n) {
					counts[seq%ring].Store(0)
					last.Record(l)
					for d := done.Load(); seq+1 > d && !done.CompareAndSwap(d, seq+1); d = done.Load() {
					}
					lastDone.Store(now)
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		}()
	}

	// Warm up until every member, on every instance, got a message: the
	// instances subscribe to the room on NATS a little after the first join.
	pub := members[0].c
	buf := make([]byte, size)
	deadline := time.Now().Add(30 * time.Second)
	for i := uint64(0); warm.Load() < int64(n); i++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: %d of %d members reached in 30 s", warm.Load(), n)
		}
		seqcheck.PutStamp(buf, seqcheck.WarmupPublisher, i, time.Now().UnixNano())
		if err := pub.WriteFrame(wsclient.OpBinary, buf); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	measuring.Store(true)

	start := time.Now()
	lastDone.Store(start.UnixNano())
	end := start.Add(dur)
	var sent uint64
	for time.Now().Before(end) {
		if sent-done.Load() >= uint64(window) {
			select {
			case <-wake:
			case <-time.After(10 * time.Second):
				return fmt.Errorf("stalled: %d messages in the window for 10 s", sent-done.Load())
			}
			continue
		}
		seqcheck.PutStamp(buf, 0, sent, time.Now().UnixNano())
		if err := pub.WriteFrame(wsclient.OpBinary, buf); err != nil {
			return err
		}
		sent++
	}
	drain := time.Now().Add(5 * time.Second)
	for done.Load() < sent && time.Now().Before(drain) {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Duration(lastDone.Load() - start.UnixNano())
	for _, m := range members {
		m.c.Close()
	}
	wg.Wait()

	var totals seqcheck.Totals
	bad := 0
	for _, m := range members {
		m.seq.Finish(0, sent)
		totals.Add(&m.seq)
		bad += m.bad
	}
	missing := totals.Missing + totals.Undelivered
	bad += int(totals.Late + totals.Duplicates)
	fmt.Printf("%-24s instances %d  members %v  published %d  deliveries %d  %.0f deliveries/s  latency p50 %s p99 %s max %s  last-member p99 %s  missing %d  out-of-order/dup %d\n",
		label, len(addrs), perAddr, sent, lat.Count(), float64(lat.Count())/elapsed.Seconds(),
		ms(lat.Quantile(0.5)), ms(lat.Quantile(0.99)), ms(lat.Max()), ms(last.Quantile(0.99)), missing, bad)
	if bad > 0 || missing > 0 {
		return fmt.Errorf("%d members' streams not clean, %d deliveries missing", bad, missing)
	}
	return nil
}

func ms(ns int64) string { return fmt.Sprintf("%.2fms", float64(ns)/1e6) }
