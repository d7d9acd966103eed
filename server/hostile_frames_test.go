package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopcast/loopcast/server"
)

// ---------------------------------------------------------------------
// Fragments

// oneByteFragments encodes payload as one message of len(payload)
// frames of one byte each (first op, then continuations), masked with a
// fixed key: 7 bytes of wire per payload byte.
func oneByteFragments(op byte, payload []byte, fin bool) []byte {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b := make([]byte, 0, 7*len(payload))
	for i, c := range payload {
		b0 := byte(0)
		if i == 0 {
			b0 = op
		}
		if fin && i == len(payload)-1 {
			b0 |= 0x80
		}
		b = append(b, b0, 0x81, key[0], key[1], key[2], key[3], c^key[0])
	}
	return b
}

// TestHostileFragments sends one text message as 100,000 continuation
// frames of one byte (700 KB of wire, multi-byte UTF-8 characters split
// across frames): it comes back whole. Then a stream of one-byte
// fragments past MaxMessage (64 KiB on a second server) is closed with
// 1009. The server's heap (HeapInuse peak, test clients included) grows
// by at most 4 × MaxMessage + 8 MiB.
func TestHostileFragments(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	t.Run("100k-one-byte-fragments", func(t *testing.T) {
		cfg := hostileConfig()
		srv := startServer(t, cfg)
		ctl := newControl(t, srv)
		payload := bytes.Repeat([]byte("κόσμε"), n/10) // 10 bytes each
		wire := oneByteFragments(opText, payload, true)
		heap := startHeapSampler()
		start := time.Now()
		ctl.during(func() error {
			c, err := upgradeQuiet(srv.Addr(), "/echo", 0)
			if err != nil {
				return err
			}
			defer c.conn.Close()
			if err := c.tryWriteChunks(wire, 64<<10); err != nil {
				return err
			}
			f, err := c.readFrame()
			if err != nil {
				return err
			}
			if f.op != opText || !f.fin || !bytes.Equal(f.payload, payload) {
				return fmt.Errorf("echo of %d fragments: got %v", n, f)
			}
			return nil
		})
		growth := heap.growth()
		bound := int64(4*cfg.MaxMessage) + 8<<20
		t.Logf("%d one-byte fragments (%s of wire) echoed whole as one %d-byte text frame in %s; heap peak +%s (bound %s)",
			n, mib(int64(len(wire))), len(payload), time.Since(start).Round(time.Millisecond), mib(growth), mib(bound))
		if growth > bound {
			t.Errorf("heap grew by %s, bound %s", mib(growth), mib(bound))
		}
		if st := srv.Stats(); st.MessagesIn != int64(ctl.seq)*2+1 {
			t.Errorf("MessagesIn = %d, want %d", st.MessagesIn, ctl.seq*2+1)
		}
		ctl.finish()
	})

	t.Run("one-byte-fragments-over-max", func(t *testing.T) {
		cfg := hostileConfig()
		cfg.MaxMessage = 64 << 10
		srv := startServer(t, cfg)
		ctl := newControl(t, srv)
		// Four times MaxMessage in one-byte fragments, never final.
		wire := oneByteFragments(opBinary, binaryPayload(4*cfg.MaxMessage), false)
		heap := startHeapSampler()
		var code int
		ctl.during(func() error {
			c, err := upgradeQuiet(srv.Addr(), "/echo", 0)
			if err != nil {
				return err
			}
			defer c.conn.Close()
			werr := make(chan error, 1)
			go func() { werr <- c.tryWriteChunks(wire, 64<<10) }()
			f, err := c.readFrame()
			if err != nil {
				return err
			}
			if f.op != opClose {
				return fmt.Errorf("got %v, want a close frame", f)
			}
			code = f.closeCode()
			if err := <-werr; err != nil && !isClosed(err) {
				return err
			}
			_ = c.tryWrite(frameBytes(true, opClose, closePayload(code, "")))
			_, err = waitClosed(c, ioTimeout)
			return err
		})
		growth := heap.growth()
		bound := int64(4*cfg.MaxMessage) + 8<<20
		t.Logf("one-byte fragments past max-message %d: close %d; heap peak +%s (bound %s)", cfg.MaxMessage, code, mib(growth), mib(bound))
		if code != 1009 {
			t.Errorf("close code %d, want 1009", code)
		}
		if growth > bound {
			t.Errorf("heap grew by %s, bound %s", mib(growth), mib(bound))
		}
		waitFor(t, ioTimeout, "attacker closed", func() bool { return srv.Stats().Connections == 3 })
		if got := srv.Stats().Closes["message_too_big"]; got != 1 {
			t.Errorf("message_too_big closes = %d, want 1", got)
		}
		ctl.finish()
	})
}

// ---------------------------------------------------------------------
// Declared lengths

// TestHostileDeclaredLength declares absurd 64-bit payload lengths, with
// no payload after them: 2^63 and above (MSB set) is a protocol error,
// 1002; 2^63-1 is over MaxMessage, 1009, refused from the header alone.
func TestHostileDeclaredLength(t *testing.T) {
	srv := startServer(t, hostileConfig())
	ctl := newControl(t, srv)
	half := textPayload(100)
	cases := []struct {
		name  string
		path  string
		wire  []byte
		chunk int
		code  int
	}{
		{"2^63-binary", "/echo", frameSpec{fin: true, op: opBinary, declared: u64(1 << 63)}.encode(), 0, 1002},
		{"2^63-text", "/echo", frameSpec{fin: true, op: opText, declared: u64(1 << 63)}.encode(), 0, 1002},
		{"2^63-room", "/ws/control", frameSpec{fin: true, op: opBinary, declared: u64(1 << 63)}.encode(), 0, 1002},
		{"2^63-one-byte-writes", "/echo", frameSpec{fin: true, op: opBinary, declared: u64(1 << 63)}.encode(), 1, 1002},
		{"2^63-continuation", "/echo", concat(fr(false, opText, half), frameSpec{fin: true, op: opCont, declared: u64(1 << 63)}.encode()), 0, 1002},
		{"2^64-1", "/echo", frameSpec{fin: true, op: opBinary, declared: u64(^uint64(0))}.encode(), 0, 1002},
		{"2^63-ping", "/echo", frameSpec{fin: true, op: opPing, declared: u64(1 << 63)}.encode(), 0, 1002},
		{"2^63-1", "/echo", frameSpec{fin: true, op: opBinary, declared: u64(1<<63 - 1)}.encode(), 0, 1009},
		{"2^63-1-room", "/ws/control", frameSpec{fin: true, op: opBinary, declared: u64(1<<63 - 1)}.encode(), 0, 1009},
		{"2^63-1-continuation", "/echo", concat(fr(false, opBinary, half), frameSpec{fin: true, op: opCont, declared: u64(1<<63 - 1)}.encode()), 0, 1009},
	}
	want := map[int]int64{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctl.during(func() error {
				c, err := upgradeQuiet(srv.Addr(), tc.path, 0)
				if err != nil {
					return err
				}
				defer c.conn.Close()
				// The server fails the connection as soon as the length
				// is in, and may drop it when the mask bytes follow.
				if err := c.tryWriteChunks(tc.wire, tc.chunk); err != nil && !isClosed(err) {
					return err
				}
				for {
					f, err := c.readFrame()
					if err != nil {
						return err
					}
					if f.op == opBinary && tc.path != "/echo" {
						continue // a control room message
					}
					if f.op != opClose || f.closeCode() != tc.code {
						return fmt.Errorf("got %v, want close %d", f, tc.code)
					}
					break
				}
				_ = c.tryWrite(frameBytes(true, opClose, closePayload(tc.code, "")))
				_, err = waitClosed(c, ioTimeout)
				return err
			})
		})
		want[tc.code]++
	}
	waitFor(t, ioTimeout, "attackers closed", func() bool { return srv.Stats().Connections == 3 })
	st := srv.Stats()
	if st.Closes["protocol_error"] != want[1002] || st.Closes["message_too_big"] != want[1009] {
		t.Errorf("closes %v, want protocol_error %d and message_too_big %d", st.Closes, want[1002], want[1009])
	}
	ctl.finish()
}

// ---------------------------------------------------------------------
// Ping floods

// TestHostilePingFlood sends 100,000 pings with 125-byte payloads (13.1
// MB of wire) from a client that never reads and has a 4 KiB receive
// buffer. The pongs count toward MaxPending (64 KiB): the server closes
// the flooder with 1013 (or drops TCP when the close frame is stuck
// behind unsent pongs), counts one slow consumer, and its heap grows by
// at most MaxPending + 8 MiB. A flooder that reads its pongs (at most
// 2,000 outstanding) gets all 100,000, in order, and is never closed.
func TestHostilePingFlood(t *testing.T) {
	cfg := hostileConfig()
	cfg.MaxPending = 64 << 10
	srv := startServer(t, cfg)
	ctl := newControl(t, srv)
	n := 100_000
	if testing.Short() {
		n = 20_000
	}

	t.Run("never-reading", func(t *testing.T) {
		const size = 125
		ping := func(i int) []byte {
			p := bytes.Repeat([]byte{byte(i)}, size)
			binary.BigEndian.PutUint32(p, uint32(i))
			return p
		}
		var wire []byte
		for i := range n {
			wire = append(wire, frameBytes(true, opPing, ping(i))...)
		}
		var sent atomic.Int64
		var c *rawClient
		heap := startHeapSampler()
		ctl.during(func() error {
			var err error
			if c, err = upgradeQuiet(srv.Addr(), "/echo", 4096); err != nil {
				return err
			}
			for rest := wire; len(rest) > 0; {
				k := min(len(rest), 64<<10)
				_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
				w, err := c.conn.Write(rest[:k])
				sent.Add(int64(w))
				if err != nil {
					if isClosed(err) {
						break // closed as a slow consumer
					}
					return err
				}
				rest = rest[k:]
			}
			return nil
		})
		defer c.conn.Close()
		growth := heap.growth()
		// Now read what the server sent: pongs in order, then close
		// 1013 or the end of the connection.
		pongs, code := 0, 0
		for {
			f, err := c.readFrame()
			if err != nil {
				if !isClosed(err) {
					t.Fatalf("after %d pongs: %v", pongs, err)
				}
				break
			}
			if f.op == opClose {
				code = f.closeCode()
				break
			}
			if f.op != opPong || !bytes.Equal(f.payload, ping(pongs)) {
				t.Fatalf("frame %d: got %v, want the pong of ping %d", pongs, f, pongs)
			}
			pongs++
		}
		waitFor(t, ioTimeout, "flooder counted", func() bool { return srv.Stats().SlowConsumers == 1 })
		bound := int64(cfg.MaxPending) + 8<<20
		t.Logf("ping flood, never reading: %d pings (%s) sent before the server closed it; %d pongs read back, then close code %d (0: TCP close); heap peak +%s (bound %s)",
			sent.Load()/int64(len(wire)/n), mib(sent.Load()), pongs, code, mib(growth), mib(bound))
		if code != 0 && code != 1013 {
			t.Errorf("close code %d, want 1013", code)
		}
		if pongs >= n {
			t.Errorf("all %d pongs buffered for a client that never read", n)
		}
		if growth > bound {
			t.Errorf("heap grew by %s, bound %s", mib(growth), mib(bound))
		}
	})

	t.Run("reading", func(t *testing.T) {
		const window = 2000
		before := srv.Stats().SlowConsumers
		ctl.during(func() error {
			c, err := upgradeQuiet(srv.Addr(), "/echo", 0)
			if err != nil {
				return err
			}
			defer c.conn.Close()
			var got atomic.Int64
			rerr := make(chan error, 1)
			go func() {
				for i := range n {
					f, err := c.readFrame()
					if err != nil {
						rerr <- fmt.Errorf("pong %d: %w", i, err)
						return
					}
					if f.op != opPong || len(f.payload) != 8 || binary.BigEndian.Uint64(f.payload) != uint64(i) {
						rerr <- fmt.Errorf("pong %d: got %v", i, f)
						return
					}
					got.Add(1)
				}
				rerr <- nil
			}()
			var batch []byte
			for i := 0; i < n; {
				for int64(i)-got.Load() >= window {
					select {
					case err := <-rerr:
						return fmt.Errorf("reader stopped at %d of %d: %v", got.Load(), n, err)
					case <-time.After(100 * time.Microsecond):
					}
				}
				batch = batch[:0]
				for k := 0; k < 100 && i < n; k++ {
					batch = append(batch, frameBytes(true, opPing, binary.BigEndian.AppendUint64(nil, uint64(i)))...)
					i++
				}
				if err := c.tryWrite(batch); err != nil {
					return err
				}
			}
			if err := <-rerr; err != nil {
				return err
			}
			_ = c.tryWrite(frameBytes(true, opClose, closePayload(1000, "")))
			f, err := c.readFrame()
			if err != nil || f.op != opClose || f.closeCode() != 1000 {
				return fmt.Errorf("close: %v %v", f, err)
			}
			return nil
		})
		if got := srv.Stats().SlowConsumers; got != before {
			t.Errorf("a reading ping flooder was closed as a slow consumer")
		}
		t.Logf("ping flood, reading: %d pongs, in order", n)
	})
	waitFor(t, ioTimeout, "flooders closed", func() bool { return srv.Stats().Connections == 3 })
	ctl.finish()
}

// ---------------------------------------------------------------------
// Invalid UTF-8

// TestHostileInvalidUTF8 streams text with invalid UTF-8 in every
// position: a single frame, a sequence split across fragments, a bad
// byte 512 KiB into a message that never ends (the server fails it at
// that byte without waiting for the final fragment), a bad close reason,
// a room member; then 50 streamers at once. Each is closed with 1007;
// the control's room sees none of it.
func TestHostileInvalidUTF8(t *testing.T) {
	srv := startServer(t, hostileConfig())
	ctl := newControl(t, srv)
	long := func() []byte {
		var parts [][]byte
		chunk := bytes.Repeat([]byte("κόσμε"), 800) // 8,000 bytes
		for range 64 {
			parts = append(parts, fr(false, opCont, chunk))
		}
		parts[0] = fr(false, opText, chunk)
		parts = append(parts, fr(false, opCont, []byte("ok \xff then more")))
		return concat(parts...)
	}()
	cases := []struct {
		name, path string
		wire       []byte
		chunk      int
	}{
		{"single-frame-ff", "/echo", txt("abc\xffdef"), 0},
		{"overlong", "/echo", txt("\xc0\xaf"), 0},
		{"surrogate", "/echo", txt("a\xed\xa0\x80b"), 0},
		{"above-10ffff", "/echo", txt("\xf4\x90\x80\x80"), 0},
		{"truncated-at-fin", "/echo", txt("κόσμ\xce"), 0},
		{"split-across-fragments", "/echo", concat(fr(false, opText, []byte("κ\xce")), fr(true, opCont, []byte("A"))), 0},
		{"split-across-writes", "/echo", concat(fr(false, opText, []byte("\xf0\x9f")), fr(true, opCont, []byte("\x98"))), 1},
		{"bad-byte-512KiB-in-never-final", "/echo", long, 64 << 10},
		{"close-reason", "/echo", fr(true, opClose, closePayload(1000, "bye \xff")), 0},
		{"room-member", "/ws/control", txt("room \xed\xbf\xbf"), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctl.during(func() error { return expectCloseCode(srv.Addr(), tc.path, tc.wire, tc.chunk, 1007) })
		})
	}
	const streamers = 50
	t.Run("concurrent-streamers", func(t *testing.T) {
		ctl.during(func() error {
			return runAll(streamers, streamers, func(i int) error {
				return expectCloseCode(srv.Addr(), "/echo", cases[i%len(cases)].wire, 0, 1007)
			})
		})
	})
	waitFor(t, ioTimeout, "streamers closed", func() bool { return srv.Stats().Connections == 3 })
	if got, want := srv.Stats().Closes["invalid_utf8"], int64(len(cases)+streamers); got != want {
		t.Errorf("invalid_utf8 closes = %d, want %d", got, want)
	}
	ctl.finish()
}

// expectCloseCode opens a WebSocket to path, writes wire and checks the
// server closes it with code (room traffic before the close is skipped).
func expectCloseCode(addr net.Addr, path string, wire []byte, chunk, code int) error {
	c, err := upgradeQuiet(addr, path, 0)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	werr := make(chan error, 1)
	go func() { werr <- c.tryWriteChunks(wire, chunk) }()
	for {
		f, err := c.readFrame()
		if err != nil {
			return err
		}
		if f.op == opClose {
			if f.closeCode() != code {
				return fmt.Errorf("close %d (%q), want %d", f.closeCode(), f.payload[min(2, len(f.payload)):], code)
			}
			break
		}
		if path == "/echo" || f.op != opBinary {
			return fmt.Errorf("got %v, want close %d", f, code)
		}
	}
	if err := <-werr; err != nil && !isClosed(err) {
		return err
	}
	_ = c.tryWrite(frameBytes(true, opClose, closePayload(code, "")))
	_, err = waitClosed(c, ioTimeout)
	return err
}

// ---------------------------------------------------------------------
// Random bytes

// hostileSeed fixes the random cases; change it to explore others.
const hostileSeed = 6

// mutate applies k random byte edits (replace, insert, delete).
func mutate(r *rand.Rand, b []byte, k int) []byte {
	b = slices.Clone(b)
	for range k {
		if len(b) == 0 {
			b = append(b, byte(r.Uint32()))
			continue
		}
		i := r.IntN(len(b))
		switch r.IntN(3) {
		case 0:
			b[i] = byte(r.Uint32())
		case 1:
			b = slices.Insert(b, i, byte(r.Uint32()))
		default:
			b = slices.Delete(b, i, i+1)
		}
	}
	return b
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randHeadish returns bytes drawn from what request heads are made of, so
// lines, colons and CRLFs appear often.
func randHeadish(r *rand.Rand, n int) []byte {
	const alphabet = "GETHOSPUabcz/:?=-_ \r\n\r\n\t\x00\x7f\xff0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

// TestHostileRandomBeforeHandshake sends 200 seeded random inputs where a
// request head belongs: raw random bytes, head-like noise, mutated valid
// upgrade and health requests, valid request lines with garbage fields,
// and over 8 KiB of noise. Each connection ends with an HTTP answer (4xx
// or 5xx, or a 200/101 when the mutation left a valid request) and a
// close, or a close alone (incomplete head: handshake timeout). Every
// answer must be well formed; the counters match what the clients saw.
func TestHostileRandomBeforeHandshake(t *testing.T) {
	srv := startServer(t, hostileConfig())
	ctl := newControl(t, srv)
	const cases = 200
	r := rand.New(rand.NewPCG(hostileSeed, 1))
	inputs := make([][]byte, cases)
	for i := range inputs {
		var b []byte
		switch i % 5 {
		case 0:
			b = randBytes(r, 1+r.IntN(2048))
		case 1:
			b = randHeadish(r, 1+r.IntN(4096))
		case 2:
			valid := upgradeRequest([]string{"/ws", "/ws/r", "/echo"}[r.IntN(3)], newKey())
			if r.IntN(2) == 0 {
				valid = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
			}
			b = mutate(r, []byte(valid), 1+r.IntN(8))
		case 3:
			b = append([]byte("GET /ws HTTP/1.1\r\n"), randHeadish(r, r.IntN(512))...)
		case 4:
			b = randBytes(r, server.MaxHeadBytes+r.IntN(8<<10))
		}
		if r.IntN(2) == 0 {
			b = append(b, "\r\n\r\n"...) // complete the head, if any
		}
		inputs[i] = b
	}

	var mu sync.Mutex
	statuses := map[int]int{}
	silent := 0
	ctl.during(func() error {
		return runAll(cases, 25, func(i int) error {
			c, err := dialQuiet(srv.Addr(), 0)
			if err != nil {
				return err
			}
			defer c.conn.Close()
			werr := make(chan error, 1)
			go func() { werr <- c.tryWrite(inputs[i]) }()
			var seen []int
			for {
				_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
				if _, err := c.br.Peek(1); err != nil {
					if !isClosed(err) {
						return fmt.Errorf("input %q: want the connection closed, got %v", trim(inputs[i]), err)
					}
					break
				}
				resp, err := c.tryReadResponse(false)
				if err != nil {
					return fmt.Errorf("input %q: malformed answer: %v", trim(inputs[i]), err)
				}
				seen = append(seen, resp.status)
				if resp.status == 101 {
					break // a mutation that left a valid upgrade
				}
				if !slices.Contains([]int{200, 400, 401, 403, 404, 405, 426, 431, 505}, resp.status) {
					return fmt.Errorf("input %q: status %d", trim(inputs[i]), resp.status)
				}
			}
			if err := <-werr; err != nil && !isClosed(err) {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) == 0 {
				silent++
			}
			for _, s := range seen {
				statuses[s]++
			}
			return nil
		})
	})
	waitFor(t, ioTimeout, "random clients closed", func() bool { return srv.Stats().Connections == 3 })
	t.Logf("seed %d, %d inputs: statuses %v, %d closed without an answer", hostileSeed, cases, statuses, silent)
	st := srv.Stats()
	rejected := 0
	for s, k := range statuses {
		if s >= 400 {
			rejected += k
		}
	}
	if st.Rejected != int64(rejected) || st.Health != int64(ctl.rounds+statuses[200]) || st.Upgrades != int64(3+statuses[101]) {
		t.Errorf("Rejected %d Health %d Upgrades %d; clients saw %d rejections, %d health answers (+%d control), %d upgrades (+3 control)",
			st.Rejected, st.Health, st.Upgrades, rejected, statuses[200], ctl.rounds, statuses[101])
	}
	if statuses[400] == 0 || statuses[431] == 0 || silent == 0 {
		t.Errorf("the seed no longer exercises 400, 431 and timeouts: %v, %d silent", statuses, silent)
	}
	ctl.finish()
}

func trim(b []byte) []byte {
	if len(b) > 60 {
		return b[:60]
	}
	return b
}

// TestHostileRandomAfterHandshake sends 200 seeded random inputs on open
// WebSockets (/echo and a room): raw random bytes, valid frames with
// mutated headers, valid frames followed by noise, and noise with
// random 64-bit declared lengths. Each session ends with a valid close
// frame (1002/1007/1009 for violations; a random but valid close frame
// from the client is echoed) and a TCP close, or a TCP close alone (a
// frame left incomplete: the 1 s idle timeout). Every frame the server
// sends must be valid (the raw client checks RFC 6455's rules); the
// server never crashes.
func TestHostileRandomAfterHandshake(t *testing.T) {
	cfg := hostileConfig()
	cfg.PingInterval = 400 * time.Millisecond
	cfg.IdleTimeout = time.Second
	srv := startServer(t, cfg)
	ctl := newControl(t, srv)
	const cases = 200
	r := rand.New(rand.NewPCG(hostileSeed, 2))
	inputs := make([][]byte, cases)
	for i := range inputs {
		var b []byte
		switch i % 4 {
		case 0:
			b = randBytes(r, 1+r.IntN(4096))
		case 1:
			op := []byte{opText, opBinary, opPing, opClose, opCont}[r.IntN(5)]
			valid := frameBytes(r.IntN(4) != 0, op, textPayload(r.IntN(300)))
			b = mutate(r, valid, 1+r.IntN(3))
			if r.IntN(2) == 0 {
				b[0] = byte(r.Uint32()) // the header byte itself
			}
		case 2:
			b = concat(txt("hello"), randBytes(r, 1+r.IntN(1024)))
		case 3:
			b = frameSpec{fin: r.IntN(2) == 0, op: byte(r.IntN(16)), declared: u64(r.Uint64())}.encode()
			b = append(b, randBytes(r, r.IntN(64))...)
		}
		inputs[i] = b
	}
	var mu sync.Mutex
	codes := map[int]int{}
	ctl.during(func() error {
		return runAll(cases, 50, func(i int) error {
			path := "/echo"
			if i%3 == 0 {
				path = "/ws/random"
			}
			c, err := upgradeQuiet(srv.Addr(), path, 0)
			if err != nil {
				return err
			}
			defer c.conn.Close()
			if err := c.tryWrite(inputs[i]); err != nil && !isClosed(err) {
				return err
			}
			code := 0 // TCP close without a close frame
			for {
				f, err := c.readFrame()
				if err != nil {
					if isClosed(err) {
						break
					}
					return fmt.Errorf("input % x: %v", trim(inputs[i]), err)
				}
				if f.op == opClose {
					code = f.closeCode()
					_ = c.tryWrite(frameBytes(true, opClose, closePayload(1000, "")))
					if _, err := waitClosed(c, ioTimeout); err != nil {
						return err
					}
					break
				}
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
			return nil
		})
	})
	waitFor(t, ioTimeout, "random sessions closed", func() bool { return srv.Stats().Connections == 3 })
	keys := slices.Sorted(maps.Keys(codes))
	var summary []string
	for _, k := range keys {
		summary = append(summary, fmt.Sprintf("%d×%d", codes[k], k))
	}
	t.Logf("seed %d, %d inputs: close codes %s (0: TCP close)", hostileSeed, cases, strings.Join(summary, " "))
	st := srv.Stats()
	if codes[1002] == 0 || st.Closes["protocol_error"] < int64(codes[1002]) {
		t.Errorf("protocol_error closes %d, clients saw %d", st.Closes["protocol_error"], codes[1002])
	}
	if st.Closes["message_too_big"] < int64(codes[1009]) || st.Closes["invalid_utf8"] < int64(codes[1007]) {
		t.Errorf("closes %v; clients saw %v", st.Closes, codes)
	}
	ctl.finish()
}
