package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/wsclient"
)

// HealthConfig drives the health scenario: Conns keep-alive HTTP/1.1
// connections each sending GET Path and waiting for the answer, as fast as
// the server answers. The client is hand-written (no net/http) so that it
// costs little per request.
type HealthConfig struct {
	Common
	Conns int    // default 50
	Path  string // default "/"
}

// Health runs the health scenario.
func Health(ctx context.Context, cfg HealthConfig) (*result.Result, error) {
	cfg.defaults()
	cfg.Conns = orDefault(cfg.Conns, 50)
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if err := Preflight(ctx, cfg.Addr); err != nil {
		return nil, err
	}
	r := result.New(result.Health, cfg.Server, cfg.Addr)
	r.Params = result.Params{Conns: cfg.Conns, DurationS: cfg.Duration.Seconds(), SourceIPs: cfg.SourceIPs}

	// One request first, for a clear error if the responder is wrong.
	if status, body, err := healthOnce(ctx, cfg.Addr, cfg.Path); err != nil {
		return nil, fmt.Errorf("health: GET %s: %w", cfg.Path, err)
	} else if status != 200 {
		return nil, fmt.Errorf("health: GET %s: status %d %q, want 200", cfg.Path, status, body)
	}

	var (
		lat          hist.Histogram
		non200, errs atomic.Uint64
		reconnects   atomic.Uint64
		firstErr     atomic.Pointer[string]
		wg           sync.WaitGroup
	)
	ips := sourceIPs(cfg.Addr, cfg.SourceIPs)
	pr := startProgress(cfg.Progress, "health")
	defer pr.close()
	u := startUsage(cfg.PID)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	pr.set(func() string {
		return fmt.Sprintf("%.0f req/s  p99 %s  errors %d", perSec(lat.Count(), time.Since(start)), fmtNs(lat.Quantile(0.99)), errs.Load())
	})
	for i := 0; i < cfg.Conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			hc := &httpConn{addr: cfg.Addr, req: healthRequest(cfg.Addr, cfg.Path)}
			if len(ips) > 0 {
				hc.local = ips[i%len(ips)]
			}
			defer hc.close()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				status, err := hc.do(deadline.Add(5 * time.Second))
				if err != nil {
					if errors.Is(err, errReconnect) {
						reconnects.Add(1)
						continue
					}
					errs.Add(1)
					s := err.Error()
					firstErr.CompareAndSwap(nil, &s)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				lat.Record(int64(time.Since(t0)))
				if status != 200 {
					non200.Add(1)
				}
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	u.finish(r)
	r.ElapsedS = round3(elapsed.Seconds())
	r.Metrics[result.Requests] = float64(lat.Count())
	r.Metrics[result.RequestsPerSec] = perSec(lat.Count(), elapsed)
	r.Metrics[result.Failed] = float64(errs.Load() + non200.Load())
	r.Latency[result.LatencyRequest] = result.FromHist(&lat)
	if n := errs.Load(); n > 0 {
		r.Errorf("%d requests failed, first: %s", n, *firstErr.Load())
	}
	if n := non200.Load(); n > 0 {
		r.Errorf("%d answers were not 200", n)
	}
	if n := reconnects.Load(); n > 0 {
		r.Warnf("the server closed keep-alive connections %d times", n)
	}
	return r, nil
}

func healthRequest(addr, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: loopcast-bench\r\n\r\n")
}

// errReconnect means the server closed an idle keep-alive connection before
// answering; the request is retried on a new one.
var errReconnect = errors.New("keep-alive connection closed")

// httpConn is a minimal HTTP/1.1 keep-alive client: one request at a time,
// responses framed by Content-Length, parsed in place from a fixed buffer.
type httpConn struct {
	addr  string
	local net.IP
	req   []byte
	nc    net.Conn
	buf   [4096]byte
	r, w  int
	fresh bool // no response read yet on nc
}

func (h *httpConn) close() {
	if h.nc != nil {
		h.nc.Close()
		h.nc = nil
	}
}

// do sends the request and reads the response, returning its status.
func (h *httpConn) do(deadline time.Time) (int, error) {
	if h.nc == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		if h.local != nil {
			d.LocalAddr = &net.TCPAddr{IP: h.local}
			d.Control = wsclient.BindNoPort
		}
		nc, err := d.Dial("tcp", h.addr)
		if err != nil {
			return 0, err
		}
		h.nc, h.r, h.w, h.fresh = nc, 0, 0, true
		nc.SetDeadline(deadline)
	}
	if _, err := h.nc.Write(h.req); err != nil {
		return 0, h.fail(err)
	}
	for {
		status, n, keep, err := parseResponse(h.buf[h.r:h.w])
		if err == errIncomplete {
			if h.r > 0 {
				h.w = copy(h.buf[:], h.buf[h.r:h.w])
				h.r = 0
			}
			if h.w == len(h.buf) {
				h.close()
				return 0, errors.New("response over 4 KiB")
			}
			m, rerr := h.nc.Read(h.buf[h.w:])
			h.w += m
			if m == 0 && rerr != nil {
				return 0, h.fail(rerr)
			}
			continue
		}
		if err != nil {
			h.close()
			return 0, err
		}
		h.r += n
		if h.r == h.w {
			h.r, h.w = 0, 0
		}
		h.fresh = false
		if !keep {
			h.close()
		}
		return status, nil
	}
}

func (h *httpConn) fail(err error) error {
	reused := !h.fresh
	h.close()
	if reused && (errors.Is(err, io.EOF) || isResetErr(err)) {
		return errReconnect
	}
	return err
}

var errIncomplete = errors.New("incomplete response")

// parseResponse parses one HTTP/1.1 response at the start of b: its status,
// total length, and whether the connection stays open. Bodies are framed by
// Content-Length or chunked (nbio chunks even a two-byte answer); trailers
// are not supported.
func parseResponse(b []byte) (status, n int, keepAlive bool, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, 0, false, errIncomplete
	}
	head := b[:end]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return 0, 0, false, fmt.Errorf("not an HTTP response: %q", line)
	}
	status, err = strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	keepAlive = string(f[0]) == "HTTP/1.1"
	clen := -1
	chunked := false
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, val, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			clen, err = strconv.Atoi(string(val))
			if err != nil || clen < 0 {
				return 0, 0, false, fmt.Errorf("bad Content-Length %q", val)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(val, []byte("chunked")) {
				return 0, 0, false, fmt.Errorf("Transfer-Encoding %q not supported by the health client", val)
			}
			chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(val, []byte("close")) {
				keepAlive = false
			} else if bytes.EqualFold(val, []byte("keep-alive")) {
				keepAlive = true
			}
		}
	}
	if chunked {
		n, err := chunkedLength(b[end+4:])
		if err != nil {
			return 0, 0, false, err
		}
		return status, end + 4 + n, keepAlive, nil
	}
	if clen < 0 {
		if status == 204 || status == 304 || status/100 == 1 {
			clen = 0
		} else {
			return 0, 0, false, errors.New("response without Content-Length")
		}
	}
	total := end + 4 + clen
	if len(b) < total {
		return 0, 0, false, errIncomplete
	}
	return status, total, keepAlive, nil
}

// chunkedLength returns the length of the chunked body at the start of b.
func chunkedLength(b []byte) (int, error) {
	off := 0
	for {
		i := bytes.Index(b[off:], []byte("\r\n"))
		if i < 0 {
			return 0, errIncomplete
		}
		sizeField, _, _ := bytes.Cut(b[off:off+i], []byte(";"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sizeField)), 16, 32)
		if err != nil || size < 0 {
			return 0, fmt.Errorf("bad chunk size %q", sizeField)
		}
		off += i + 2
		if size == 0 {
			// Last chunk: no trailers, just the final CRLF.
			if len(b) < off+2 {
				return 0, errIncomplete
			}
			if !bytes.HasPrefix(b[off:], []byte("\r\n")) {
				return 0, errors.New("chunk trailers not supported")
			}
			return off + 2, nil
		}
		off += int(size) + 2
		if len(b) < off {
			return 0, errIncomplete
		}
	}
}

// healthOnce makes one request on a fresh connection.
func healthOnce(ctx context.Context, addr, path string) (int, string, error) {
	hc := &httpConn{addr: addr, req: healthRequest(addr, path)}
	defer hc.close()
	dl := time.Now().Add(5 * time.Second)
	status, err := hc.do(dl)
	if err != nil {
		return 0, "", err
	}
	return status, "", nil
}
