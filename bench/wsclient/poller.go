package wsclient

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller reads many connections on one goroutine with its own epoll
// instance, the way an event-loop server does, instead of one goroutine
// per connection woken through Go's netpoller. On the load generator's
// one core this is what lets it read several million frames per second:
// per readable socket it costs one epoll event and one read, however
// many frames the read brings, and no goroutine switch.
//
// Add connections, then Run; OnMessage and OnClose run on Run's
// goroutine. Writes to a polled Conn (WriteFrame, from any goroutine)
// go to its socket directly. Stop ends Run; the caller closes the
// connections afterwards.
type Poller struct {
	// OnMessage gets every data message with the time the read that
	// brought it returned (UnixNano: one clock read per read, not per
	// message). payload is valid only during the call.
	OnMessage func(c *Conn, op byte, payload []byte, now int64)
	// OnClose gets the end of a connection: a *CloseError for a close
	// frame (already answered), io.EOF or a socket error. The Conn is
	// no longer polled but not closed.
	OnClose func(c *Conn, err error)

	epfd  int
	conns []*Conn // by epoll event data
	live  int
	stop  atomic.Bool
}

// pollWait bounds each epoll_wait. Besides making Stop take effect, it
// bounds how late a timer of another goroutine (a fixed-rate publisher)
// can run while the poller sits in the system call.
const pollWait = time.Millisecond

// NewPoller returns a Poller with an epoll instance of its own.
func NewPoller(onMessage func(c *Conn, op byte, payload []byte, now int64), onClose func(c *Conn, err error)) (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &Poller{OnMessage: onMessage, OnClose: onClose, epfd: fd}, nil
}

// Add takes c over: its socket leaves Go's netpoller (the descriptor is
// duplicated and the net.Conn closed) and joins the Poller's epoll set.
// Frames already buffered by c are delivered when Run starts. Call it
// before Run, from the goroutine that will call Run.
func (p *Poller) Add(c *Conn) error {
	if err := c.detach(); err != nil {
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(len(p.conns))}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	p.conns = append(p.conns, c)
	p.live++
	return nil
}

// Stop makes Run return (within pollWait). Safe from any goroutine.
func (p *Poller) Stop() { p.stop.Store(true) }

// Run reads until Stop or until every connection ended, then releases the
// epoll instance. It allocates nothing per message.
func (p *Poller) Run() error {
	defer unix.Close(p.epfd)
	now := time.Now().UnixNano()
	for _, c := range p.conns {
		if c.w > c.r { // frames that came with the handshake response
			p.consume(c, now)
		}
	}
	events := make([]unix.EpollEvent, 512)
	for p.live > 0 && !p.stop.Load() {
		// Let goroutines this poller woke (a publisher whose window
		// opened) run before the system call, which holds the P.
		runtime.Gosched()
		n, err := unix.EpollWait(p.epfd, events, int(pollWait/time.Millisecond))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		now := time.Now().UnixNano()
		for i := range events[:n] {
			hup := events[i].Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
			p.readable(p.conns[events[i].Fd], now, hup)
		}
	}
	return nil
}

// readable reads what c's socket has and hands out the complete frames.
// epoll is edge-triggered: it reads until a read comes back short of the
// buffer (the socket is drained; more data raises a new edge). When the
// event also reports the peer's close (hup: EPOLLRDHUP, EPOLLHUP or
// EPOLLERR), a short read does not end it: the last data and the FIN can
// come in one edge, and no other edge follows, so it reads on until the
// read that reports the end.
func (p *Poller) readable(c *Conn, now int64, hup bool) {
	for {
		if c.w == len(c.rbuf) {
			c.makeRoom(len(c.rbuf) + 1)
		}
		b := c.rbuf[c.w:]
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case errno == unix.EAGAIN:
			return
		case errno == unix.EINTR:
			continue
		case errno != 0:
			p.end(c, errno)
			return
		case n == 0:
			p.end(c, io.EOF)
			return
		}
		c.w += int(n)
		c.BytesRead += int64(n)
		if !p.consume(c, now) || (int(n) < len(b) && !hup) {
			return
		}
	}
}

// consume hands out every complete frame in c's buffer; false when the
// connection ended.
func (p *Poller) consume(c *Conn, now int64) bool {
	for {
		// Fast path: a whole unfragmented text or binary frame under
		// 126 bytes, the fan-out case.
		if b := c.rbuf[c.r:c.w]; len(b) >= 2 && (b[0] == 0x82 || b[0] == 0x81) && b[1] < 126 && c.fragOp == 0 {
			if end := 2 + int(b[1]); end <= len(b) {
				c.r += end
				if c.r == c.w {
					c.r, c.w = 0, 0
				}
				p.OnMessage(c, b[0]&0x0f, b[2:end], now)
				continue
			}
		}
		h, payload, need, err := c.bufferedFrame()
		if err == nil && need > 0 {
			c.makeRoom(need)
			return true
		}
		var (
			op  byte
			msg []byte
			ok  bool
		)
		if err == nil {
			op, msg, ok, err = c.onFrame(h, payload)
		}
		if err != nil {
			p.end(c, err)
			return false
		}
		if ok {
			p.OnMessage(c, op, msg, now)
		}
	}
}

// end stops polling c and reports why.
func (p *Poller) end(c *Conn, err error) {
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	p.live--
	if p.OnClose != nil {
		p.OnClose(c, err)
	}
}

// detach replaces c's net.Conn by a duplicate of its descriptor, owned by
// c: closing the net.Conn takes the socket out of Go's netpoller, and the
// duplicate (same open file, so still non-blocking) keeps it open.
func (c *Conn) detach() error {
	if c.polled {
		return errors.New("wsclient: connection already polled")
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return errors.New("wsclient: connection has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var dupErr error
	if err := rc.Control(func(fd uintptr) {
		c.fd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if dupErr != nil {
		return fmt.Errorf("dup: %w", dupErr)
	}
	c.polled = true
	c.nc.Close()
	c.nc = nil
	return nil
}

// writeTimeout bounds how long a write to a polled socket waits for room.
const writeTimeout = 5 * time.Second

// writeFd writes all of b to the polled socket, waiting for room when it
// is full. Called with wmu held.
func (c *Conn) writeFd(b []byte) error {
	deadline := time.Now().Add(writeTimeout)
	for len(b) > 0 {
		if c.closed.Load() {
			return net.ErrClosed
		}
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch errno {
		case 0:
			b = b[n:]
		case unix.EAGAIN:
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("write: socket full for %s", writeTimeout)
			}
			fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(fds, int(min(left, 100*time.Millisecond)/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
		case unix.EINTR:
		default:
			return errno
		}
	}
	return nil
}

// closeFd closes the polled socket once, never under a write in progress
// (the descriptor number could be reused by then).
func (c *Conn) closeFd() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	return unix.Close(c.fd)
}
