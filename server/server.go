package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Server is a loopcast server. Create it with New, run it with Start, stop
// it with Shutdown (graceful) or Close. Its methods are safe for
// concurrent use.
type Server struct {
	gnet.BuiltinEventEngine

	cfg    Config
	log    *slog.Logger
	nloops int
	tick   time.Duration // timing wheel resolution
	start  time.Time

	eng      gnet.Engine
	addr     net.Addr
	booted   chan struct{}
	done     chan struct{} // closed when gnet.Run returned
	runErr   error
	draining atomic.Bool

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*loop] // indexed by loop idx; grows as loops appear

	rooms  rooms
	auth   *authenticator // nil: no token required
	admit  *admission
	remote atomic.Int64 // messages from other instances delivered here

	admin     *http.Server // nil without an admin listener
	adminAddr net.Addr
}

// New checks cfg and returns a Server that is not yet listening. logger
// may be nil (discard).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := cfg.EventLoops
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	s := &Server{
		cfg:    cfg,
		log:    logger,
		nloops: n,
		tick:   tickFor(cfg),
		booted: make(chan struct{}),
		done:   make(chan struct{}),
		rooms:  rooms{m: map[string]*room{}, nloops: n, broker: cfg.Broker},
	}
	var err error
	if s.auth, err = newAuthenticator(cfg); err != nil {
		return nil, err
	}
	if s.admit, err = newAdmission(cfg); err != nil {
		return nil, err
	}
	empty := []*loop{}
	s.loops.Store(&empty)
	return s, nil
}

// tickFor picks the timing wheel's resolution: a tenth of the shortest
// timeout, between 1 ms and 1 s, so deadlines fire within 10% late; and
// fine enough to spread a drain's closes over at least 20 ticks.
func tickFor(cfg Config) time.Duration {
	d := min(cfg.PingInterval, cfg.IdleTimeout, cfg.HandshakeTimeout) / 10
	if cfg.DrainDuration > 0 {
		d = min(d, cfg.DrainDuration/20)
	}
	return min(max(d, time.Millisecond), time.Second)
}

// Start listens on Config.Addr and serves in the background. It returns
// once the listener is bound (Addr is valid) or with the reason it could
// not be.
func (s *Server) Start() error {
	s.start = time.Now()
	go func() {
		defer close(s.done)
		s.runErr = gnet.Run(s, "tcp://"+s.cfg.Addr,
			gnet.WithNumEventLoop(s.nloops),
			gnet.WithMulticore(s.nloops > 1),
			gnet.WithReuseAddr(true),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{s.log}),
		)
	}()
	select {
	case <-s.booted:
		if err := s.startAdmin(); err != nil {
			_ = s.Close()
			return err
		}
		return nil
	case <-s.done:
		if s.runErr == nil {
			s.runErr = errors.New("engine stopped before it started")
		}
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, s.runErr)
	}
}

// Addr is the address the main listener is bound to (after Start).
func (s *Server) Addr() net.Addr { return s.addr }

// EventLoops is the number of gnet event loops the server runs.
func (s *Server) EventLoops() int { return s.nloops }

// Config returns the configuration the server runs with.
func (s *Server) Config() Config { return s.cfg }

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Close stops the engine at once: connections are dropped without a
// close handshake. It waits for the engine to stop.
func (s *Server) Close() error {
	select {
	case <-s.booted:
	default:
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.admin != nil {
		_ = s.admin.Shutdown(ctx)
	}
	err := s.eng.Stop(ctx)
	<-s.done
	return err
}

// Shutdown drains the server: the health responder answers 503 and new
// upgrades are refused at once; existing sessions keep working for
// Config.DrainDelay; then every WebSocket is closed with 1001 "going
// away", spread over Config.DrainDuration; then the engine stops. If ctx
// ends first the remaining connections are dropped. Returns ctx's error
// in that case.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var err error
	select {
	case <-time.After(s.cfg.DrainDelay):
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		err = s.closeWebSockets(ctx)
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// closeWebSockets sends 1001 to every WebSocket, each loop closing its
// share evenly over DrainDuration, and waits until they are gone.
func (s *Server) closeWebSockets(ctx context.Context) error {
	for _, l := range s.loopList() {
		_ = l.el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			l.goAway(s.cfg.DrainDuration)
			return nil
		}))
	}
	deadline := time.NewTicker(10 * time.Millisecond)
	defer deadline.Stop()
	for {
		var open int64
		for _, l := range s.loopList() {
			open += l.stats.websockets.Load()
		}
		if open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
		}
	}
}

func (s *Server) loopList() []*loop { return *s.loops.Load() }

// loopFor returns the state of gnet loop el, creating it on first use.
// Called on el's goroutine; the lock is taken once per loop lifetime.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	for _, l := range s.loopList() {
		if l.el == el {
			return l
		}
	}
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	old := s.loopList()
	l := newLoop(s, len(old), el)
	if l.idx >= s.nloops {
		panic("loopcast: more gnet event loops than configured")
	}
	next := append(append(make([]*loop, 0, len(old)+1), old...), l)
	s.loops.Store(&next)
	return l
}

func (s *Server) ticksNow() int64 { return int64(time.Since(s.start) / s.tick) }

// OnBoot records the engine and the bound address.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	fd, err := eng.Dup()
	if err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			s.addr = sockaddrToTCP(sa)
		}
		_ = unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func sockaddrToTCP(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// OnTick asks every loop to advance its timing wheel. It runs on gnet's
// ticker goroutine, so the work is handed to the loops.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	for _, l := range s.loopList() {
		if l.tickQueued.CompareAndSwap(false, true) {
			if err := l.el.Execute(context.Background(), l.tickTask); err != nil {
				l.tickQueued.Store(false)
			}
		}
	}
	return s.tick, gnet.None
}

// OnOpen gives a new connection its state and its handshake deadline.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	l := s.loopFor(c.EventLoop())
	l.now = s.ticksNow() // a busy loop's last tick may be long past
	cs := &conn{gc: c, fd: c.Fd(), loop: l, since: l.now, wslot: -1}
	c.SetContext(cs)
	l.stats.conns.Add(1)
	l.stats.accepted.Add(1)
	l.wheel.add(cs, l.now+l.handshakeTicks)
	return nil, gnet.None
}

// OnClose releases a connection's state and counts why it closed.
func (s *Server) OnClose(c gnet.Conn, _ error) gnet.Action {
	cs, ok := c.Context().(*conn)
	if !ok || cs.state == stateClosed {
		return gnet.None
	}
	l := cs.loop
	r := cs.reason
	if !cs.hasReason {
		r = closeHTTP
		if cs.state == stateOpen {
			r = closeGone
		}
	}
	l.stats.closes[r].Add(1)
	if cs.state == stateOpen || cs.state == stateClosing {
		l.stats.websockets.Add(-1)
		s.admit.release(cs.ip)
	}
	if cs.room != nil {
		s.rooms.leave(cs) // gone: its unwritten room frames with it
	}
	cs.dropMessage()
	if cs.cork != nil {
		l.putCork(cs.cork)
		cs.cork = nil
	}
	l.wheel.remove(cs)
	cs.state = stateClosed
	l.stats.conns.Add(-1)
	return gnet.None
}

// OnTraffic serves whatever the connection's state expects.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	cs := c.Context().(*conn)
	// Timestamps taken below (request start, last activity) must not
	// lag: on a busy loop the tick that advances now may be queued
	// behind this read. One monotonic clock read per read event.
	cs.loop.now = s.ticksNow()
	for {
		switch cs.state {
		case stateHTTP:
			if a := cs.serveHTTP(); a != gnet.None || cs.state == stateHTTP {
				return a
			}
			// Upgraded: frames may follow the head in the same read.
		case stateOpen, stateClosing:
			a := cs.serveFrames()
			cs.loop.flushLater()
			return a
		default: // lingering or closed: drop input
			_, _ = c.Discard(-1)
			return gnet.None
		}
	}
}

// gnetLogger sends gnet's own log lines to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Info(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
