package server_test

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFanoutMixedMembersUnderLoad: two publishers flood a room whose
// members are healthy readers, slow readers and members that never read.
// Healthy members must get every message, each publisher's in order, all
// in the same total order; never-reading members must be closed with
// 1013 (or, as they never read it, the connection's end) and counted;
// slow readers get a gap-free prefix, then either the rest or 1013. Nobody
// ever sees a silent gap.
func TestFanoutMixedMembersUnderLoad(t *testing.T) {
	cfg := testConfig()
	// Publishers keep at most 2 batches (50 KiB) in flight to the
	// healthy members, so a healthy member never has more than 75 KiB
	// unsent, however the machine schedules it; never-reading members
	// pass 256 KiB and are closed.
	cfg.MaxPending = 256 << 10
	srv := startServer(t, cfg)
	addr := srv.Addr()
	const (
		publishers = 2
		perPub     = 2500
		size       = 1024
		batch      = 25
		healthy    = 6
		never      = 4
		slow       = 4
	)
	total := publishers * perPub
	pubs := make([]*rawClient, publishers)
	for i := range pubs {
		pubs[i] = dialWS(t, addr, "/ws/mixed")
	}
	readers := make([]*rawClient, healthy)
	for i := range readers {
		readers[i] = dialWS(t, addr, "/ws/mixed")
	}
	nevers := make([]*rawClient, never)
	for i := range nevers {
		nevers[i] = dialWS(t, addr, "/ws/mixed", dialOpts{rcvBuf: 4096})
	}
	slows := make([]*rawClient, slow)
	for i := range slows {
		slows[i] = dialWS(t, addr, "/ws/mixed", dialOpts{rcvBuf: 4096})
	}
	members := publishers + healthy + never + slow
	waitFor(t, ioTimeout, "members joined", func() bool { return srv.Stats().WebSockets == int64(members) })

	// outcome of one member: the messages it got, in order, and how it ended.
	type outcome struct {
		got       []uint64 // publisher<<32 | seq
		closeCode int
		err       error
	}
	read := func(c *rawClient, want int, pause time.Duration, progress *atomic.Int64) outcome {
		var o outcome
		for len(o.got) < want {
			f, err := c.readFrame()
			if err != nil {
				o.err = err
				return o
			}
			if f.op == opClose {
				o.closeCode = f.closeCode()
				return o
			}
			if f.op != opBinary || len(f.payload) != size {
				o.err = fmt.Errorf("unexpected frame %v", f)
				return o
			}
			o.got = append(o.got, binary.BigEndian.Uint64(f.payload))
			if progress != nil {
				progress.Add(1)
			}
			if pause > 0 {
				time.Sleep(pause)
			}
		}
		return o
	}
	var wg sync.WaitGroup
	results := make([]outcome, publishers+healthy+slow)
	received := make([]atomic.Int64, publishers+healthy) // healthy members' progress
	var sent atomic.Int64
	for i, c := range append(append(append([]*rawClient{}, pubs...), readers...), slows...) {
		pause := time.Duration(0)
		var progress *atomic.Int64
		if i >= publishers+healthy {
			pause = 2 * time.Millisecond
		} else {
			progress = &received[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = read(c, total, pause, progress)
		}()
	}
	for p, c := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, size)
			for k := 0; k < perPub; k += batch {
				// Closed loop: wait while any healthy member is more
				// than two batches behind everything sent.
				deadline := time.Now().Add(ioTimeout)
				for behind := true; behind; {
					behind = false
					for i := range received {
						if received[i].Load() < sent.Load()-2*batch {
							behind = true
						}
					}
					if behind {
						if time.Now().After(deadline) {
							t.Errorf("publisher %d: healthy members stalled", p)
							return
						}
						time.Sleep(100 * time.Microsecond)
					}
				}
				var wire []byte
				for j := k; j < k+batch; j++ {
					binary.BigEndian.PutUint64(msg, uint64(p)<<32|uint64(j))
					wire = append(wire, frameBytes(true, opBinary, msg)...)
				}
				if err := c.tryWrite(wire); err != nil {
					t.Errorf("publisher %d: %v", p, err)
					return
				}
				sent.Add(batch)
			}
		}()
	}
	wg.Wait()

	// checkPrefix verifies per-publisher order without gaps.
	checkPrefix := func(who string, got []uint64) {
		next := make([]uint64, publishers)
		for _, v := range got {
			p, seq := v>>32, v&0xffffffff
			if seq != next[p] {
				t.Fatalf("%s: publisher %d message %d when %d was due (gap or reorder)", who, p, seq, next[p])
			}
			next[p]++
		}
	}
	for i := range publishers + healthy {
		o := results[i]
		if o.err != nil || len(o.got) != total {
			t.Fatalf("healthy member %d: %d of %d messages, close %d, err %v", i, len(o.got), total, o.closeCode, o.err)
		}
		checkPrefix(fmt.Sprintf("healthy member %d", i), o.got)
		if i > 0 && fmt.Sprint(o.got) != fmt.Sprint(results[0].got) {
			t.Fatalf("healthy member %d saw another order than member 0", i)
		}
	}
	slowClosed := 0
	for i := range slow {
		o := results[publishers+healthy+i]
		checkPrefix(fmt.Sprintf("slow member %d", i), o.got)
		switch {
		case o.closeCode == 1013:
			slowClosed++
		case o.err == nil && len(o.got) == total:
		default:
			t.Fatalf("slow member %d: %d messages then close %d / err %v: want all, or 1013", i, len(o.got), o.closeCode, o.err)
		}
	}
	for i, c := range nevers {
		// Whatever reached its socket before the close is a gap-free
		// prefix, then 1013, or the end of the connection: a member that
		// never reads cannot get a close frame queued behind max-pending
		// of unsent data, so after the close grace period the server drops
		// it (counted below as a slow consumer all the same).
		o := read(c, total, 0, nil)
		checkPrefix(fmt.Sprintf("never-reading member %d", i), o.got)
		if o.closeCode != 1013 && !isClosed(o.err) {
			t.Fatalf("never-reading member %d: %d messages, close %d, err %v; want 1013 or the connection's end", i, len(o.got), o.closeCode, o.err)
		}
	}
	st := srv.Stats()
	t.Logf("%d slow readers closed, %d slow consumers counted, %d deliveries", slowClosed, st.SlowConsumers, st.Deliveries)
	if st.SlowConsumers != int64(never+slowClosed) {
		t.Fatalf("SlowConsumers = %d, want %d never-reading + %d slow", st.SlowConsumers, never, slowClosed)
	}
}
