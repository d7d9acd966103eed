package testutil

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Gateway is a TCP proxy in front of one or more backends, like
// Application Gateway in front of pods: each accepted connection goes to
// the next backend in turn, and DropAll cuts every proxied connection at
// once, as a gateway configuration update does.
type Gateway struct {
	ln       net.Listener
	backends []string
	next     atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	drops int
	wg    sync.WaitGroup
}

// StartGateway listens on 127.0.0.1 and proxies to backends; it stops at
// cleanup.
func StartGateway(t testing.TB, backends ...string) *Gateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		g.DropAll()
		g.wg.Wait()
	})
	return g
}

// Addr is the gateway's address.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Drops counts DropAll calls.
func (g *Gateway) Drops() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.drops
}

// DropAll closes every proxied connection, both sides, at once.
func (g *Gateway) DropAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		_ = c.Close()
	}
	clear(g.conns)
	g.drops++
}

func (g *Gateway) accept() {
	defer g.wg.Done()
	for {
		client, err := g.ln.Accept()
		if err != nil {
			return
		}
		backend := g.backends[int(g.next.Add(1)-1)%len(g.backends)]
		server, err := net.Dial("tcp", backend)
		if err != nil {
			_ = client.Close()
			continue
		}
		g.mu.Lock()
		g.conns[client], g.conns[server] = struct{}{}, struct{}{}
		g.mu.Unlock()
		g.wg.Add(2)
		go g.pipe(client, server)
		go g.pipe(server, client)
	}
}

// pipe copies from src to dst; when either side ends, both close.
func (g *Gateway) pipe(dst, src net.Conn) {
	defer g.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	g.mu.Lock()
	delete(g.conns, dst)
	delete(g.conns, src)
	g.mu.Unlock()
}
