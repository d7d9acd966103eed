// Package hook calls an application's backend over HTTP on behalf of
// the event loops, which never wait: a call is queued to a bounded pool
// of workers and its answer comes back through a callback (the server
// then hands it to the loop). A full queue refuses the call at once; a
// call is bounded by a timeout. Answers may be cached per key for a TTL
// the backend sets.
package hook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults.
const (
	DefaultTimeout = 2 * time.Second
	DefaultWorkers = 64
	// queuePerWorker: calls waiting for a worker, per worker; past it a
	// call is refused at once (ErrBusy).
	queuePerWorker = 16
	// maxAnswer bounds a backend's answer body.
	maxAnswer = 64 << 10
)

// Errors of a call.
var (
	// ErrBusy: the queue is full; the call was not made.
	ErrBusy = errors.New("hook: too many calls waiting")
	// ErrStatus: the backend answered a status other than 200.
	ErrStatus = errors.New("hook: backend answered a status other than 200")
)

// Result is a call's outcome: the backend's 200 answer, or Err (a
// timeout, a connection error, another status: the backend is down or
// broken).
type Result struct {
	Body    []byte
	Err     error
	Latency time.Duration
}

// Client calls one backend URL. Safe for concurrent use.
type Client struct {
	Name    string
	url     string
	timeout time.Duration
	http    *http.Client
	queue   chan job
	stop    chan struct{}
	wg      sync.WaitGroup

	// Counters (calls by outcome) and the latency histogram's buckets.
	Allowed, Denied, Failed, Busy, CacheHits atomic.Int64
	lat                                      latency
}

type job struct {
	body []byte
	done func(Result)
}

// New starts a Client with workers goroutines (0: DefaultWorkers) and a
// timeout per call (0: DefaultTimeout).
func New(name, url string, timeout time.Duration, workers int) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if workers <= 0 {
		workers = DefaultWorkers
	}
	c := &Client{
		Name: name, url: url, timeout: timeout,
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, IdleConnTimeout: 90 * time.Second,
			ResponseHeaderTimeout: timeout,
		}},
		queue: make(chan job, workers*queuePerWorker),
		stop:  make(chan struct{}),
	}
	c.wg.Add(workers)
	for range workers {
		go c.work()
	}
	return c
}

// Call queues a call with body (JSON, kept until it is made); done gets
// the result from a worker goroutine. It returns ErrBusy at once when
// the queue is full (done is then not called).
func (c *Client) Call(body []byte, done func(Result)) error {
	select {
	case c.queue <- job{body, done}:
		return nil
	default:
		c.Busy.Add(1)
		return ErrBusy
	}
}

func (c *Client) work() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case j := <-c.queue:
			j.done(c.do(j.body))
		}
	}
}

// do makes one call.
func (c *Client) do(body []byte) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return c.failed(start, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return c.failed(start, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return c.failed(start, err)
	}
	if resp.StatusCode != http.StatusOK {
		return c.failed(start, ErrStatus)
	}
	d := time.Since(start)
	c.lat.observe(d)
	return Result{Body: b, Latency: d}
}

func (c *Client) failed(start time.Time, err error) Result {
	d := time.Since(start)
	c.lat.observe(d)
	c.Failed.Add(1)
	return Result{Err: err, Latency: d}
}

// Close stops the workers once the calls they are making end (queued
// calls are dropped).
func (c *Client) Close() {
	close(c.stop)
	c.wg.Wait()
	c.http.CloseIdleConnections()
}

// LatencyBuckets are the upper bounds (seconds) of Latency's buckets.
var LatencyBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// latency is a histogram of call durations.
type latency struct {
	buckets [len(LatencyBuckets) + 1]atomic.Int64
	sumNs   atomic.Int64
	count   atomic.Int64
}

func (l *latency) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && s > LatencyBuckets[i] {
		i++
	}
	l.buckets[i].Add(1)
	l.sumNs.Add(int64(d))
	l.count.Add(1)
}

// Latency returns the histogram: cumulative counts per bucket of
// LatencyBuckets, the sum (seconds) and the count.
func (c *Client) Latency() (cumulative map[float64]uint64, sum float64, count uint64) {
	cumulative = make(map[float64]uint64, len(LatencyBuckets))
	var acc int64
	for i, ub := range LatencyBuckets {
		acc += c.lat.buckets[i].Load()
		cumulative[ub] = uint64(acc)
	}
	return cumulative, float64(c.lat.sumNs.Load()) / 1e9, uint64(c.lat.count.Load())
}
