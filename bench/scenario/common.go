// Package scenario holds the load generator's scenarios (echo, fanout, conns,
// storm, health, resume, cluster). Each takes a config, runs for a bounded
// time, and returns a result.Result; the caller prints it. All but cluster
// run against servers someone else started (fanout and resume may spread
// their clients over several instances); cluster starts its own NATS
// cluster and loopcast instances and injects faults into them.
//
// The fanout and echo scenarios read their connections through
// wsclient.Poller, one epoll loop per GOMAXPROCS, as an event-loop server
// would; the others keep one goroutine per connection with a plain socket.
// Either way the wsclient framer allocates nothing per message, so that on
// one pinned core the load generator measures the server and not itself.
// Each run records the load generator's own CPU time and warns when it used
// most of its core.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/procstat"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// Common are the settings every scenario shares.
type Common struct {
	// Addr is the server's host:port.
	Addr string
	// Server labels the result ("loopcast", "gorilla", ...).
	Server string
	// Duration is how long load is applied (connect time not included).
	Duration time.Duration
	// SourceIPs spreads client sockets over 127.0.0.2..127.0.0.(1+SourceIPs)
	// when Addr is an IPv4 loopback address; each source address has its own
	// ephemeral port range. 0 lets the kernel choose.
	SourceIPs int
	// DialConcurrency bounds handshakes in flight while connecting.
	DialConcurrency int
	// PID is the server's process id for RSS and CPU readings; 0: none.
	PID int
	// Progress receives a status line every second; nil: quiet.
	Progress io.Writer
}

func (c *Common) defaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.Server == "" {
		c.Server = "server"
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.DialConcurrency <= 0 {
		c.DialConcurrency = 128
	}
}

// ErrUnreachable is returned by Preflight when nothing accepts on the address.
var ErrUnreachable = errors.New("server unreachable")

// Preflight checks that something accepts TCP on addr, so that a run against
// a server that is down fails at once with one clear message instead of
// thousands of dial errors.
func Preflight(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.ECONNREFUSED) {
			hint = " (is the server running? start it or pass --addr)"
		}
		return fmt.Errorf("%w: %s: %v%s", ErrUnreachable, addr, err, hint)
	}
	return c.Close()
}

// sourceIPs returns the local addresses to spread connections over.
func sourceIPs(addr string, n int) []net.IP {
	if n <= 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil
	}
	n = min(n, 250)
	ips := make([]net.IP, n)
	for i := range ips {
		ips[i] = net.IPv4(127, 0, 0, byte(2+i))
	}
	return ips
}

// dialer opens connections round-robin over the source addresses.
type dialer struct {
	addr     string
	ips      []net.IP
	rbuf     int
	protocol string // offered subprotocol, "" for none
	deflate  bool   // offer permessage-deflate
	next     atomic.Uint64
	hs       *hist.Histogram // handshake latency, may be nil
}

func newDialer(c *Common, readBuf int, hs *hist.Histogram) *dialer {
	return &dialer{addr: c.Addr, ips: sourceIPs(c.Addr, c.SourceIPs), rbuf: readBuf, hs: hs}
}

func (d *dialer) dial(ctx context.Context, path string) (*wsclient.Conn, error) {
	o := wsclient.Options{ReadBuffer: d.rbuf, Protocol: d.protocol, Deflate: d.deflate}
	if len(d.ips) > 0 {
		o.LocalIP = d.ips[int(d.next.Add(1)%uint64(len(d.ips)))]
	}
	t0 := time.Now()
	c, err := wsclient.Dial(ctx, d.addr, path, o)
	if err == nil && d.hs != nil {
		d.hs.Record(int64(time.Since(t0)))
	}
	return c, err
}

// dialAll opens n connections to path with bounded concurrency. It returns
// the connections that succeeded (nil entries for failures), the failure
// count and the first error.
func (d *dialer) dialAll(ctx context.Context, n, concurrency int, path string, progress *progress) ([]*wsclient.Conn, int, error) {
	return dialSpread(ctx, []*dialer{d}, n, concurrency, path, progress)
}

// dialSpread is dialAll over several servers: connection i goes to
// ds[i % len(ds)].
func dialSpread(ctx context.Context, ds []*dialer, n, concurrency int, path string, progress *progress) ([]*wsclient.Conn, int, error) {
	conns := make([]*wsclient.Conn, n)
	var (
		mu       sync.Mutex
		failed   int
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for w := 0; w < min(concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := ds[i%len(ds)].dial(ctx, path)
				if err != nil {
					mu.Lock()
					failed++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
				if progress != nil {
					progress.connected.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return conns, failed, firstErr
}

func closeAll(conns []*wsclient.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// progress prints a status line every second.
type progress struct {
	w         io.Writer
	name      string
	start     time.Time
	connected atomic.Int64
	line      atomic.Pointer[func() string]
	stop      chan struct{}
	done      chan struct{}
	tty       bool
}

func startProgress(w io.Writer, name string) *progress {
	p := &progress{w: w, name: name, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	if w == nil {
		close(p.done)
		return p
	}
	go p.loop()
	return p
}

// set replaces the status function.
func (p *progress) set(f func() string) { p.line.Store(&f) }

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			if p.tty {
				fmt.Fprintln(p.w)
			}
			return
		case <-t.C:
			s := fmt.Sprintf("connected %d", p.connected.Load())
			if f := p.line.Load(); f != nil {
				s = (*f)()
			}
			end := "\n"
			if p.tty {
				end = "\033[K\r"
			}
			fmt.Fprintf(p.w, "[%s %4.0fs] %s%s", p.name, time.Since(p.start).Seconds(), s, end)
		}
	}
}

func (p *progress) close() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.stop)
	<-p.done
}

// usage measures the CPU both processes used over a run.
type usage struct {
	pid        int
	wall0      time.Time
	self0, srv time.Duration
	srvOK      bool
}

func startUsage(pid int) *usage {
	u := &usage{pid: pid, wall0: time.Now(), self0: procstat.SelfCPU()}
	if pid > 0 {
		if d, err := procstat.CPU(pid); err == nil {
			u.srv, u.srvOK = d, true
		}
	}
	return u
}

// finish records CPU use and warns when the load generator used most of the
// CPU it had: then the numbers measure it, not the server.
func (u *usage) finish(r *result.Result) {
	wall := time.Since(u.wall0)
	self := procstat.SelfCPU() - u.self0
	r.Metrics[result.ClientCPUSeconds] = round3(self.Seconds())
	if u.srvOK {
		if d, err := procstat.CPU(u.pid); err == nil {
			r.Metrics[result.ServerCPUSeconds] = round3((d - u.srv).Seconds())
		}
		if rss, err := procstat.RSS(u.pid); err == nil {
			r.Metrics[result.ServerRSSPeak] = float64(rss)
		}
	}
	cores := float64(runtime.GOMAXPROCS(0))
	if frac := self.Seconds() / (wall.Seconds() * cores); wall > time.Second && frac > 0.9 {
		r.Warnf("load generator used %.0f%% of its %g CPU(s): the result may be bounded by the client", frac*100, cores)
	}
	r.Params.GOMAXPROCS = runtime.GOMAXPROCS(0)
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

func perSec(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(int64(float64(n)/d.Seconds()*10+0.5)) / 10
}

// closeCodes counts how connections ended, for the error line.
type closeCodes struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *closeCodes) add(err error) {
	var ce *wsclient.CloseError
	key := "network error"
	switch {
	case errors.As(err, &ce):
		key = fmt.Sprintf("close %d", ce.Code)
	case errors.Is(err, io.EOF):
		key = "EOF"
	case err != nil:
		key = err.Error()
		if len(key) > 80 {
			key = key[:80]
		}
	}
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	c.mu.Unlock()
}

func (c *closeCodes) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ""
	for k, v := range c.n {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%s ×%d", k, v)
	}
	return s
}

func isResetErr(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// pollerSet reads connections through wsclient.Pollers, one goroutine
// each: connection i gets Tag i and is read by poller i % len.
type pollerSet struct {
	pollers []*wsclient.Poller
	wg      sync.WaitGroup
}

// newPollerSet makes n pollers (0: GOMAXPROCS; never more than there are
// connections) and hands them conns. Nothing is read until start.
func newPollerSet(conns []*wsclient.Conn, n int, onMessage func(*wsclient.Conn, byte, []byte, int64), onClose func(*wsclient.Conn, error)) (*pollerSet, error) {
	s := &pollerSet{pollers: make([]*wsclient.Poller, max(1, min(len(conns), orDefault(n, runtime.GOMAXPROCS(0)))))}
	for i := range s.pollers {
		p, err := wsclient.NewPoller(onMessage, onClose)
		if err != nil {
			return nil, err
		}
		s.pollers[i] = p
	}
	for i, c := range conns {
		c.Tag = i
		if err := s.pollers[i%len(s.pollers)].Add(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// len is the number of pollers.
func (s *pollerSet) len() int { return len(s.pollers) }

// start runs the pollers; onErr gets a poller's own failure (epoll).
func (s *pollerSet) start(onErr func(error)) {
	for _, p := range s.pollers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := p.Run(); err != nil {
				onErr(err)
			}
		}()
	}
}

// stop ends the pollers and waits for them; the connections stay open.
// Safe to call more than once.
func (s *pollerSet) stop() {
	for _, p := range s.pollers {
		p.Stop()
	}
	s.wg.Wait()
}
