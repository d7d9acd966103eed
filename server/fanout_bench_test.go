package server_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"github.com/loopcast/loopcast/server/internal/deflate"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// rawMember opens a WebSocket to path with a bare socket and returns it
// after the 101; the caller reads the server's frames itself.
func rawMember(tb testing.TB, addr, path string, extra ...string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(one); err != nil {
			tb.Fatalf("handshake: %v after %q", err, head)
		}
		head = append(head, one[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101 ") {
		tb.Fatalf("handshake: %q", head)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// maskedClientFrame encodes a masked client data frame.
func maskedClientFrame(op ws.OpCode, payload []byte) []byte {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	f := ws.NewFrame(op, true, append([]byte(nil), payload...))
	f = ws.MaskFrameWith(f, mask)
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkFanout measures publish → frames written: one op is one 64-byte
// message from a member reaching every member of the room (sender
// included) over real loopback sockets, 16 messages per write by the
// publisher. allocs/op counts the whole process: the server's steady
// state allocates nothing per message.
func BenchmarkFanout(b *testing.B) {
	for _, members := range []int{10, 100, 1000} {
		benchmarkFanout(b, fmt.Sprintf("members=%d", members), members, make([]byte, 64), false)
	}
	// Compressed: every member negotiated permessage-deflate and gets one
	// shared compressed frame per message (1 KiB of JSON, compressed once
	// per message and loop); still 0 allocs/op.
	json := bytes.Repeat([]byte(`{"symbol":"EURUSD","bid":1.0842,"ask":1.0844},`), 23)[:1024]
	for _, members := range []int{10, 1000} {
		benchmarkFanout(b, fmt.Sprintf("deflate/members=%d", members), members, json, true)
	}
}

func benchmarkFanout(b *testing.B, name string, members int, payload []byte, compressed bool) {
	b.Run(name, func(b *testing.B) {
		cfg := testConfig()
		cfg.EventLoops = 1
		srv := startServer(b, cfg)
		var ext []string
		frameLen := frameHeaderLen(len(payload)) + len(payload)
		if compressed {
			ext = []string{"Sec-WebSocket-Extensions: permessage-deflate"}
			zip, _ := deflate.NewCompressor(cfg.CompressionLevel)
			z := zip.Append(nil, payload)
			frameLen = frameHeaderLen(len(z)) + len(z)
		}
		conns := make([]net.Conn, members)
		for i := range conns {
			conns[i] = rawMember(b, srv.Addr().String(), "/ws/bench", ext...)
		}
		// Each member counts the bytes it read; the publisher keeps at most
		// 256 KiB of frames ahead of the slowest member, so a reader the
		// scheduler starves cannot push its backlog past MaxPending (1 MiB:
		// the server would rightly close it with 1013 and the run would
		// never finish).
		read := make([]atomic.Int64, members)
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			buf := make([]byte, 16<<10)
			go func() {
				defer wg.Done()
				for {
					n, err := c.Read(buf)
					read[i].Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
		slowest := func() int64 {
			least := read[0].Load()
			for i := range read[1:] {
				least = min(least, read[i+1].Load())
			}
			return least
		}
		// waitFor waits until the slowest member has read want bytes and
		// fails the benchmark instead of hanging when no member makes
		// progress for 10 s.
		waitFor := func(want int64) {
			last, since := slowest(), time.Now()
			for last < want {
				time.Sleep(20 * time.Microsecond)
				if got := slowest(); got != last {
					last, since = got, time.Now()
				} else if time.Since(since) > 10*time.Second {
					b.Fatalf("no progress for 10 s: slowest member read %d of %d bytes; server stats %+v", got, want, srv.Stats())
				}
			}
		}
		const batch = 16
		inFlight := (256 << 10) / frameLen
		msgs := bytes.Repeat(maskedClientFrame(ws.OpBinary, payload), batch)
		pub := conns[0]
		sent := 0
		publish := func(n int) {
			for sent < n {
				if sent >= inFlight {
					waitFor(int64((sent - inFlight) * frameLen))
				}
				if _, err := pub.Write(msgs); err != nil {
					b.Fatal(err)
				}
				sent += batch
			}
			waitFor(int64(sent * frameLen))
		}
		const warm = 2048 // pools, buffers and the room's history ring
		publish(warm)
		b.ReportAllocs()
		b.ResetTimer()
		publish(warm + b.N)
		b.StopTimer()
		b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "deliveries/s")
		b.ReportMetric(float64(frameLen), "wire-bytes/delivery")
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
}

// frameHeaderLen is the length of a server frame header for n bytes.
func frameHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}
