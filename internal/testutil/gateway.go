package testutil

import (
	"bufio"
	"io"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
)

// Gateway is a TCP proxy in front of one or more backends, like
// Application Gateway in front of pods: each accepted connection goes to
// the next backend in turn, and DropAll cuts every proxied connection at
// once, as a gateway configuration update does. A request whose target
// carries client=<id> goes to a different backend than that client's
// previous connection (when there are several): every reconnect lands on
// another pod.
type Gateway struct {
	ln       net.Listener
	backends []string
	next     atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	last  map[string]int // client id -> backend index of its last connection
	moved int            // connections sent to another backend than the client's last
	drops int
	wg    sync.WaitGroup
}

var clientParam = regexp.MustCompile(`[?&]client=([^ &]+)`)

// Moved counts the reconnects sent to another backend than the client's
// previous connection.
func (g *Gateway) Moved() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.moved
}

// StartGateway listens on 127.0.0.1 and proxies to backends; it stops at
// cleanup.
func StartGateway(t testing.TB, backends ...string) *Gateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}, last: map[string]int{}}
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
		g.wg.Add(1)
		go g.route(client)
	}
}

// route reads the request line, picks the backend and pipes both ways.
func (g *Gateway) route(client net.Conn) {
	defer g.wg.Done()
	br := bufio.NewReader(client)
	line, err := br.ReadSlice('\n')
	if err != nil {
		_ = client.Close()
		return
	}
	i := int(g.next.Add(1)-1) % len(g.backends)
	if m := clientParam.FindSubmatch(line); m != nil && len(g.backends) > 1 {
		id := string(m[1])
		g.mu.Lock()
		if prev, ok := g.last[id]; ok {
			if i == prev {
				i = (i + 1) % len(g.backends)
			}
			g.moved++
		}
		g.last[id] = i
		g.mu.Unlock()
	}
	server, err := net.Dial("tcp", g.backends[i])
	if err != nil {
		_ = client.Close()
		return
	}
	if _, err := server.Write(line); err != nil {
		_ = client.Close()
		_ = server.Close()
		return
	}
	g.mu.Lock()
	g.conns[client], g.conns[server] = struct{}{}, struct{}{}
	g.mu.Unlock()
	g.wg.Add(2)
	go g.pipe(server, readerConn{client, br})
	go g.pipe(client, server)
}

// readerConn reads what the bufio.Reader buffered first.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// pipe copies from src to dst; when either side ends, both close.
func (g *Gateway) pipe(dst, src net.Conn) {
	defer g.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	g.mu.Lock()
	delete(g.conns, dst)
	if rc, ok := src.(readerConn); ok {
		delete(g.conns, rc.Conn)
	} else {
		delete(g.conns, src)
	}
	g.mu.Unlock()
}
