// Package client is loopcast's Go client for backend services: one
// loopcast.v1 WebSocket (PROTOCOL.md), many rooms, reconnect with
// exponential backoff and full jitter, resume of every room from its last
// message after each reconnect (the loss reported when the server cannot
// replay it, never silently), and publish with acknowledgement. It frames
// with github.com/coder/websocket, not the server's internals.
//
//	c := client.Dial("ws://loopcast:8080/ws", client.Options{})
//	defer c.Close()
//	c.Subscribe("orders", client.Handler{OnMessage: func(m client.Message) { … }})
//	ack, err := c.Publish(ctx, "orders", []byte(`{"id":1}`), false)
//	stop := c.WatchOccupancy("orders", func(n int64) { … }) // connections in the room, every instance
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Defaults of Options.
const (
	DefaultBackoffInitial = 250 * time.Millisecond
	DefaultBackoffMax     = 15 * time.Second
	DefaultMaxQueued      = 100
	// DefaultAckTimeout covers a NATS stream leader's election (4-9 s
	// measured, TestFailover) and the retries after it.
	DefaultAckTimeout = 30 * time.Second
	// maxMessage is the largest message the client reads (the server's
	// default --max-message plus a line).
	maxMessage = 1<<20 + 512
)

// Options configure a Client; zero values take the defaults.
type Options struct {
	// BackoffInitial and BackoffMax bound the wait before reconnecting:
	// the nth attempt waits a random time up to min(BackoffMax,
	// BackoffInitial·2ⁿ) (full jitter). A 503 Retry-After is a floor.
	BackoffInitial, BackoffMax time.Duration
	// Token, when set, is called before every connect; its JWT goes in
	// an Authorization: Bearer header.
	Token func(context.Context) (string, error)
	// MaxQueued bounds the publishes waiting for a connection; one more
	// fails at once with ErrQueueFull.
	MaxQueued int
	// AckTimeout bounds a publish: its acknowledgement, retries
	// included (see Client.Publish).
	AckTimeout time.Duration
	// OnState, when set, is told every change of State (from the
	// client's goroutine; do not block).
	OnState func(State)
	// HTTPClient dials (nil: http.DefaultClient).
	HTTPClient *http.Client
	// OnServerSubscription, when set, gives the Handler of a room the
	// server subscribed the connection to without being asked (the
	// token's subs claim, or the admin API): from the client's reader
	// goroutine. The client resumes the token's rooms after a reconnect
	// (?since=); a room the admin API added lasts for its connection.
	OnServerSubscription func(room string) Handler
}

// State is where the connection is.
type State string

const (
	Connecting   State = "connecting"
	Open         State = "open"
	Reconnecting State = "reconnecting"
	Closed       State = "closed"
)

// Message is one room message; Data is the client's (a copy).
type Message struct {
	Room   string
	Epoch  string
	Offset uint64
	Data   []byte
	Binary bool
}

// Lost says messages of Room were missed and could not be replayed
// (Reason: "epoch_changed" or "history_passed"); live messages continue
// after Epoch and Offset.
type Lost struct {
	Room, Reason, Epoch string
	Offset              uint64
}

// Handler receives a subscription's events, from the client's reader
// goroutine, one at a time.
type Handler struct {
	OnMessage func(Message)
	OnLost    func(Lost)
	// OnError gets the server's refusal of the subscription (*Error);
	// the subscription is then gone.
	OnError func(error)
}

// Ack is where the room's order placed a published message.
type Ack struct {
	Room, Epoch string
	Offset      uint64
}

// Error is a refusal from the server: a code of PROTOCOL.md.
type Error struct {
	Code, Reason string
}

func (e *Error) Error() string { return "loopcast: " + e.Code + ": " + e.Reason }

// Errors of Publish.
var (
	ErrQueueFull    = errors.New("loopcast: too many publishes waiting for a connection")
	ErrDisconnected = errors.New("loopcast: disconnected before the acknowledgement (the message may or may not have been published)")
	ErrClosed       = errors.New("loopcast: client closed")
)

// Client is one loopcast.v1 connection, kept up in the background.
type Client struct {
	url  string
	opts Options

	mu    sync.Mutex
	state State
	conn  *websocket.Conn
	subs  map[string]*Subscription
	// watches are the rooms whose occupancy is watched, with their
	// callbacks: watched again after every reconnect.
	watches map[string]func(int64)
	// presence are the presence rooms watched, with the users each
	// knows: watched again after every reconnect.
	presence map[string]*presenceWatch
	pending  map[uint32]chan pubResult
	// msgPrefix and msgSeq make Publish's message ids.
	msgPrefix string
	msgSeq    uint64
	nextID    uint32
	waiting   int           // publishes waiting for a connection
	up        chan struct{} // closed while open; replaced at each disconnect
	closed    bool

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Subscription is one room of a Client.
type Subscription struct {
	c      *Client
	room   string
	h      Handler
	server bool // the server subscribed it ("sub 0 …"): resumed with ?since=
	// confirmed: the server subscribed it on the current connection. A
	// server subscription not confirmed by the time of the next reconnect
	// (the admin API's, which lasts for one connection) is dropped.
	confirmed bool
	epoch     string // of the last message; "" before any
	offset    uint64
	id        uint32
}

// pubResult answers a command waiting for its reply: a publish's
// acknowledgement, an occupancy's count (or a presence list's total and
// users), or a refusal.
type pubResult struct {
	ack   Ack
	count int64
	users []PresenceUser
	err   error
}

// Dial starts a Client on url (ws:// or wss://…/ws) and returns at once;
// it connects, and reconnects, in the background until Close.
func Dial(url string, opts Options) *Client {
	if opts.BackoffInitial <= 0 {
		opts.BackoffInitial = DefaultBackoffInitial
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = DefaultBackoffMax
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = DefaultMaxQueued
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{url: url, opts: opts, state: Connecting, subs: map[string]*Subscription{}, watches: map[string]func(int64){}, presence: map[string]*presenceWatch{}, pending: map[uint32]chan pubResult{},
		up: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		msgPrefix: "g" + strconv.FormatUint(rand.Uint64(), 36)}
	go c.run()
	return c
}

// State is the connection's state now.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Client) setState(s State) {
	c.mu.Lock()
	changed := c.state != s
	c.state = s
	c.mu.Unlock()
	if changed && c.opts.OnState != nil {
		c.opts.OnState(s)
	}
}

// Subscribe subscribes to room (again after every reconnect, resuming);
// a second Subscribe of the same room returns the first.
func (c *Client) Subscribe(room string, h Handler) *Subscription {
	c.mu.Lock()
	if s := c.subs[room]; s != nil {
		c.mu.Unlock()
		return s
	}
	s := &Subscription{c: c, room: room, h: h}
	c.subs[room] = s
	conn := c.conn
	var cmd []byte
	if conn != nil {
		cmd = c.subCommandLocked(s)
	}
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Write(c.ctx, websocket.MessageText, cmd) // a failure drops the connection: resubscribed then
	}
	return s
}

// Unsubscribe ends s.
func (s *Subscription) Unsubscribe() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs[s.room] != s {
		return
	}
	delete(c.subs, s.room)
	if conn := c.conn; conn != nil {
		c.nextID++
		cmd := fmt.Appendf(nil, "unsub %d %s", c.nextID, s.room)
		c.mu.Unlock()
		_ = conn.Write(c.ctx, websocket.MessageText, cmd)
		c.mu.Lock()
	}
}

// Publish sends data to room (text, or binary when binary is set) and
// waits for the acknowledgement: where the room's order placed it. While
// disconnected it waits for the connection (at most MaxQueued publishes
// wait; then ErrQueueFull).
//
// It publishes exactly once: each call gets a message id (PROTOCOL.md's
// msgid), and when the outcome is not known — the server answered
// "unknown" (a NATS failover) or the connection dropped before the
// answer — it sends the message again with the same id, after a short
// backoff, on the same or the next connection, until it is acknowledged
// (the server then answers with the first attempt's place, never
// publishing it twice) or AckTimeout or ctx ends. Errors: *Error (the
// server's refusal: nothing was published, except Code "unknown", which
// is returned only when time ran out with the outcome still unknown),
// ErrDisconnected (time ran out after a drop: may or may not be
// published), ErrQueueFull, ErrClosed, or ctx's.
func (c *Client) Publish(ctx context.Context, room string, data []byte, binary bool) (Ack, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.AckTimeout)
	defer cancel()
	key := c.newMsgID()
	var uncertain error // the last attempt whose outcome is unknown
	for delay := retryPublishFirst; ; delay = min(2*delay, retryPublishMax) {
		ack, err := c.publishOnce(ctx, room, data, binary, key)
		var e *Error
		switch {
		case err == nil:
			return ack, nil
		case errors.Is(err, ErrDisconnected), errors.As(err, &e) && e.Code == "unknown":
			uncertain = err
		case uncertain != nil && errors.As(err, &e) && e.Code == "unavailable":
			// Only this retry was refused; the earlier attempt may
			// still be in: keep trying with the same id.
		case uncertain != nil && ctx.Err() != nil:
			return Ack{}, uncertain
		default:
			return ack, err
		}
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(delay)) + 1)):
		case <-ctx.Done():
			return Ack{}, uncertain
		}
	}
}

// Retries of a publish whose outcome is unknown: a random wait up to
// retryPublishFirst, doubling up to retryPublishMax.
const (
	retryPublishFirst = 100 * time.Millisecond
	retryPublishMax   = 2 * time.Second
)

// newMsgID is a message id no other publish of any client repeats: a
// random prefix per client, a count per publish.
func (c *Client) newMsgID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgSeq++
	return c.msgPrefix + "-" + strconv.FormatUint(c.msgSeq, 36)
}

// publishOnce is one attempt of Publish with message id key.
func (c *Client) publishOnce(ctx context.Context, room string, data []byte, binary bool, key string) (Ack, error) {
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	r, err := c.request(ctx, typ, func(id uint32) []byte {
		return append(fmt.Appendf(nil, "pub %d %s %s\n", id, room, key), data...)
	})
	return r.ack, err
}

func (c *Client) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Close stops the client for good and waits for its goroutine.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}
	c.cancel()
	<-c.done
	c.setState(Closed)
	return nil
}

// run connects and reconnects until Close.
func (c *Client) run() {
	defer close(c.done)
	attempt := 0
	for c.ctx.Err() == nil {
		opened, floor, fatal := c.session()
		if fatal != nil || c.ctx.Err() != nil {
			return
		}
		c.setState(Reconnecting)
		if opened {
			attempt = 0 // a session that opened starts the backoff again
		}
		ceiling := min(c.opts.BackoffMax, c.opts.BackoffInitial<<min(attempt, 20))
		wait := max(time.Duration(rand.Int64N(int64(ceiling)+1)), floor)
		attempt++
		select {
		case <-time.After(wait):
		case <-c.ctx.Done():
			return
		}
	}
}

// session dials, serves one connection until it drops, and reports
// whether it opened, a floor for the next wait (Retry-After) or a fatal
// error.
func (c *Client) session() (bool, time.Duration, error) {
	hdr := http.Header{}
	if c.opts.Token != nil {
		tok, err := c.opts.Token(c.ctx)
		if err != nil {
			return false, 0, nil
		}
		hdr.Set("Authorization", "Bearer "+tok)
	}
	conn, resp, err := websocket.Dial(c.ctx, c.dialURL(), &websocket.DialOptions{HTTPClient: c.opts.HTTPClient, HTTPHeader: hdr, Subprotocols: []string{"loopcast.v1"}})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				return false, time.Duration(s) * time.Second, nil
			}
		}
		return false, 0, nil
	}
	if conn.Subprotocol() != "loopcast.v1" {
		_ = conn.Close(websocket.StatusPolicyViolation, "loopcast.v1 expected")
		return false, 0, fmt.Errorf("loopcast: %s does not speak loopcast.v1", redactURL(c.url))
	}
	conn.SetReadLimit(maxMessage)
	c.mu.Lock()
	c.conn = conn
	var cmds [][]byte
	for _, s := range c.subs {
		if !s.server {
			cmds = append(cmds, c.subCommandLocked(s))
		}
	}
	for room := range c.watches {
		c.nextID++
		cmds = append(cmds, fmt.Appendf(nil, "watch %d %s occupancy", c.nextID, room))
	}
	for room := range c.presence {
		c.nextID++
		cmds = append(cmds, fmt.Appendf(nil, "watch %d %s presence", c.nextID, room))
	}
	close(c.up)
	c.mu.Unlock()
	c.setState(Open)
	for _, cmd := range cmds {
		_ = conn.Write(c.ctx, websocket.MessageText, cmd)
	}

	for {
		typ, b, err := conn.Read(c.ctx)
		if err != nil {
			break
		}
		c.handle(b, typ == websocket.MessageBinary)
	}
	c.mu.Lock()
	c.conn = nil
	c.up = make(chan struct{})
	for id, ch := range c.pending {
		ch <- pubResult{err: ErrDisconnected}
		delete(c.pending, id)
	}
	c.mu.Unlock()
	_ = conn.CloseNow()
	return true, 0, nil
}

// dialURL is the URL to dial: with ?since= for the rooms the server
// subscribed, where they stand, so that it resumes them.
func (c *Client) dialURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var since []string
	for room, s := range c.subs {
		if !s.server {
			continue
		}
		if !s.confirmed {
			delete(c.subs, room) // not given again on the last connection: gone
			continue
		}
		s.confirmed = false // until the server subscribes it again
		if s.epoch != "" {
			since = append(since, fmt.Sprintf("%s:%s:%d", room, s.epoch, s.offset))
		}
	}
	if len(since) == 0 {
		return c.url
	}
	slices.Sort(since)
	sep := "?"
	if strings.Contains(c.url, "?") {
		sep = "&"
	}
	return c.url + sep + "since=" + strings.Join(since, ",")
}

// subCommandLocked is s's sub command (resuming from its last message),
// with a new id; c.mu held.
func (c *Client) subCommandLocked(s *Subscription) []byte {
	c.nextID++
	s.id = c.nextID
	cmd := fmt.Appendf(nil, "sub %d %s", s.id, s.room)
	if s.epoch != "" {
		cmd = fmt.Appendf(cmd, " %s %d", s.epoch, s.offset)
	}
	return cmd
}

// handle takes one frame from the server.
func (c *Client) handle(b []byte, binary bool) {
	line, body, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return
	}
	switch f[0] {
	case "msg":
		if len(f) != 4 {
			return
		}
		off, _ := strconv.ParseUint(f[3], 10, 64)
		c.mu.Lock()
		s := c.subs[f[1]]
		if s == nil || (s.epoch == f[2] && off <= s.offset) {
			c.mu.Unlock()
			return // not subscribed, or seen already
		}
		var lost *Lost
		if s.epoch != "" && s.epoch != f[2] {
			lost = &Lost{Room: s.room, Reason: "epoch_changed", Epoch: f[2], Offset: off}
		}
		s.epoch, s.offset = f[2], off
		h := s.h
		c.mu.Unlock()
		if lost != nil && h.OnLost != nil {
			h.OnLost(*lost)
		}
		if h.OnMessage != nil {
			h.OnMessage(Message{Room: f[1], Epoch: f[2], Offset: off, Data: bytes.Clone(body), Binary: binary})
		}
	case "sub":
		if len(f) != 6 {
			return
		}
		off, _ := strconv.ParseUint(f[4], 10, 64)
		c.mu.Lock()
		s := c.subs[f[2]]
		if f[1] == "0" && (s == nil || s.server) {
			// The server subscribed the connection (the token's subs
			// claim, the admin API), or resumed such a room.
			if s == nil {
				var h Handler
				if fn := c.opts.OnServerSubscription; fn != nil {
					c.mu.Unlock()
					h = fn(f[2])
					c.mu.Lock()
				}
				s = &Subscription{c: c, room: f[2], h: h, server: true}
				c.subs[f[2]] = s
			}
			s.confirmed = true
		} else if s == nil || strconv.Itoa(int(s.id)) != f[1] {
			c.mu.Unlock()
			return
		}
		resumed, status := s.epoch != "", f[5]
		if status != "recovered" || !resumed {
			s.epoch, s.offset = f[3], off
		}
		h := s.h
		c.mu.Unlock()
		if resumed && status != "recovered" && h.OnLost != nil {
			h.OnLost(Lost{Room: f[2], Reason: status, Epoch: f[3], Offset: off})
		}
	case "unsub":
		// "unsub 0 <room>": the server ended the subscription (the admin
		// API); the client's own unsub replies need nothing.
		if len(f) != 3 || f[1] != "0" {
			return
		}
		c.mu.Lock()
		s := c.subs[f[2]]
		delete(c.subs, f[2])
		c.mu.Unlock()
		if s != nil && s.h.OnError != nil {
			s.h.OnError(&Error{Code: "unsubscribed", Reason: "the server ended the subscription"})
		}
	case "pub":
		if len(f) != 5 {
			return
		}
		id, _ := strconv.ParseUint(f[1], 10, 32)
		off, _ := strconv.ParseUint(f[4], 10, 64)
		c.deliver(uint32(id), pubResult{ack: Ack{Room: f[2], Epoch: f[3], Offset: off}})
	case "occupancy":
		if len(f) != 4 {
			return
		}
		id, _ := strconv.ParseUint(f[1], 10, 32)
		n, _ := strconv.ParseInt(f[3], 10, 64)
		c.deliver(uint32(id), pubResult{count: n})
	case "presence":
		if len(f) != 5 {
			return
		}
		id, _ := strconv.ParseUint(f[1], 10, 32)
		n, _ := strconv.ParseInt(f[3], 10, 64)
		var users []PresenceUser
		if json.Unmarshal(body, &users) != nil {
			return
		}
		c.deliver(uint32(id), pubResult{count: n, users: users})
	case "pres":
		if len(f) != 2 {
			return
		}
		var ev struct {
			Join  []PresenceUser `json:"join"`
			Leave []string       `json:"leave"`
		}
		if json.Unmarshal(body, &ev) == nil {
			c.presenceChanged(f[1], false, nil, ev.Join, ev.Leave)
		}
	case "watch", "occ":
		if f[0] == "watch" && len(f) == 6 && f[3] == "presence" {
			var users []PresenceUser
			if json.Unmarshal(body, &users) == nil {
				c.presenceChanged(f[2], true, users, nil, nil)
			}
			return
		}
		// "watch <id> <room> occupancy <count>" (the reply) and
		// "occ <room> <count>" (a change) both tell the count.
		room, count := "", ""
		switch {
		case f[0] == "watch" && len(f) == 5:
			room, count = f[2], f[4]
		case f[0] == "occ" && len(f) == 3:
			room, count = f[1], f[2]
		default:
			return
		}
		n, _ := strconv.ParseInt(count, 10, 64)
		c.mu.Lock()
		fn := c.watches[room]
		c.mu.Unlock()
		if fn != nil {
			fn(n)
		}
	case "err":
		if len(f) < 3 {
			return
		}
		id, _ := strconv.ParseUint(f[1], 10, 32)
		e := &Error{Code: f[2], Reason: strings.Join(f[3:], " ")}
		if c.deliver(uint32(id), pubResult{err: e}) {
			return
		}
		c.mu.Lock()
		var h Handler
		var again *Subscription
		for room, s := range c.subs {
			if s.id != uint32(id) || s.server {
				// "err 0" names no room: it cannot be pinned on one of
				// the server's subscriptions (which all have id 0).
				continue
			}
			if e.Code == "offset_ahead" || e.Code == "unavailable" {
				// The instance has not caught up with the cluster log
				// yet (a failover): subscribe again shortly, same
				// position.
				again = s
				continue
			}
			delete(c.subs, room)
			h = s.h
		}
		conn := c.conn
		c.mu.Unlock()
		if again != nil {
			time.AfterFunc(resubscribeAfter, func() { c.resubscribe(again, conn) })
			return
		}
		if h.OnError != nil {
			h.OnError(e)
		}
	}
}

// Occupancy asks how many connections are subscribed to room, on every
// instance (PROTOCOL.md "occupancy"). It waits for a connection like
// Publish (ErrQueueFull, ErrClosed); a refusal is an *Error.
func (c *Client) Occupancy(ctx context.Context, room string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.AckTimeout)
	defer cancel()
	r, err := c.request(ctx, websocket.MessageText, func(id uint32) []byte { return fmt.Appendf(nil, "occupancy %d %s", id, room) })
	return r.count, err
}

// WatchOccupancy calls fn with room's occupancy on every instance: once
// when the server answers the watch, then whenever it changes (at most
// once a second), again after each reconnect. fn runs on the client's
// reader goroutine: do not block. A second watch of the same room
// replaces fn. The returned stop ends the watch.
func (c *Client) WatchOccupancy(room string, fn func(count int64)) (stop func()) {
	c.mu.Lock()
	_, had := c.watches[room]
	c.watches[room] = fn
	c.mu.Unlock()
	return c.watch(room, "occupancy", had, func() bool {
		if _, ok := c.watches[room]; !ok {
			return false
		}
		delete(c.watches, room)
		return true
	})
}

// watch sends "watch <id> <room> <what>" unless the room was watched
// already, and returns the stop function: forget (with c.mu held)
// reports whether the watch was still there, and removes it; then
// "unwatch" is sent.
func (c *Client) watch(room, what string, had bool, forget func() bool) (stop func()) {
	send := func(op string) {
		c.mu.Lock()
		conn := c.conn
		c.nextID++
		cmd := fmt.Appendf(nil, "%s %d %s %s", op, c.nextID, room, what)
		c.mu.Unlock()
		if conn != nil {
			_ = conn.Write(c.ctx, websocket.MessageText, cmd)
		}
	}
	if !had {
		send("watch")
	}
	return func() {
		c.mu.Lock()
		ok := forget()
		c.mu.Unlock()
		if ok {
			send("unwatch")
		}
	}
}

// request sends the command frame(id), of type typ, once connected (at
// most MaxQueued wait for a connection) and waits for its reply
// (deliver).
func (c *Client) request(ctx context.Context, typ websocket.MessageType, frame func(id uint32) []byte) (pubResult, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return pubResult{}, ErrClosed
	}
	for c.conn == nil {
		if c.waiting >= c.opts.MaxQueued {
			c.mu.Unlock()
			return pubResult{}, ErrQueueFull
		}
		c.waiting++
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			c.mu.Lock()
			c.waiting--
			c.mu.Unlock()
			return pubResult{}, ctx.Err()
		case <-c.ctx.Done():
			return pubResult{}, ErrClosed
		}
		c.mu.Lock()
		c.waiting--
		if c.closed {
			c.mu.Unlock()
			return pubResult{}, ErrClosed
		}
	}
	c.nextID++
	id := c.nextID
	ch := make(chan pubResult, 1)
	c.pending[id] = ch
	conn := c.conn
	c.mu.Unlock()
	if err := conn.Write(ctx, typ, frame(id)); err != nil {
		c.forget(id)
		return pubResult{}, ErrDisconnected
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		c.forget(id)
		return pubResult{}, ctx.Err()
	}
}

// PresenceUser is one user of a presence room: its token's sub and info
// claims.
type PresenceUser struct {
	User string          `json:"user"`
	Info json.RawMessage `json:"info,omitempty"`
}

// PresenceChange is what a presence watch reports: the room's users as
// the client knows them now (sorted by user), and who joined and left
// since the previous report (the first report lists everyone as joined;
// after a reconnect, the changes missed meanwhile).
type PresenceChange struct {
	Room   string
	Users  []PresenceUser
	Joined []PresenceUser
	Left   []string
}

// presenceWatch is a watched presence room's users, as last reported.
type presenceWatch struct {
	fn    func(PresenceChange)
	users map[string]PresenceUser
}

// Presence lists room's users on every instance (PROTOCOL.md
// "presence"): total of them, users sorted by user, at most the
// server's --presence-max-list. Errors as for Occupancy (presence_off
// for a room that lists no users).
func (c *Client) Presence(ctx context.Context, room string) (total int, users []PresenceUser, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.AckTimeout)
	defer cancel()
	r, err := c.request(ctx, websocket.MessageText, func(id uint32) []byte { return fmt.Appendf(nil, "presence %d %s", id, room) })
	return int(r.count), r.users, err
}

// WatchPresence calls fn with room's users when the watch is answered,
// whenever users join or leave (at most once a second), and after each
// reconnect (with what changed meanwhile). fn runs on the client's
// reader goroutine: do not block. The returned stop ends the watch.
func (c *Client) WatchPresence(room string, fn func(PresenceChange)) (stop func()) {
	c.mu.Lock()
	_, had := c.presence[room]
	w := &presenceWatch{fn: fn, users: map[string]PresenceUser{}}
	if old := c.presence[room]; old != nil {
		w.users = old.users
	}
	c.presence[room] = w
	c.mu.Unlock()
	return c.watch(room, "presence", had, func() bool {
		if c.presence[room] != w {
			return false
		}
		delete(c.presence, room)
		return true
	})
}

// presenceChanged applies a watch reply (isList: list holds the users
// now) or a pres frame (joins, leaves) to room's watch and reports it.
func (c *Client) presenceChanged(room string, isList bool, list, joins []PresenceUser, leaves []string) {
	c.mu.Lock()
	w := c.presence[room]
	if w == nil {
		c.mu.Unlock()
		return
	}
	ch := PresenceChange{Room: room}
	if isList {
		// A watch's answer: the changes since what the client knew.
		now := map[string]PresenceUser{}
		for _, u := range list {
			now[u.User] = u
			if _, ok := w.users[u.User]; !ok {
				ch.Joined = append(ch.Joined, u)
			}
		}
		for u := range w.users {
			if _, ok := now[u]; !ok {
				ch.Left = append(ch.Left, u)
			}
		}
		w.users = now
	} else {
		for _, u := range joins {
			w.users[u.User] = u
		}
		for _, u := range leaves {
			delete(w.users, u)
		}
		ch.Joined, ch.Left = joins, leaves
	}
	for _, u := range w.users {
		ch.Users = append(ch.Users, u)
	}
	fn := w.fn
	c.mu.Unlock()
	slices.SortFunc(ch.Users, func(a, b PresenceUser) int { return strings.Compare(a.User, b.User) })
	slices.Sort(ch.Left)
	fn(ch)
}

// resubscribeAfter is how long a subscription refused for now
// (offset_ahead, unavailable: the instance is behind the cluster log)
// waits before it is sent again.
const resubscribeAfter = 500 * time.Millisecond

// resubscribe sends s again on conn, if conn is still the connection and
// s still a subscription (a reconnect resubscribes everything anyway).
func (c *Client) resubscribe(s *Subscription, conn *websocket.Conn) {
	c.mu.Lock()
	if c.conn != conn || conn == nil || c.subs[s.room] != s {
		c.mu.Unlock()
		return
	}
	cmd := c.subCommandLocked(s)
	c.mu.Unlock()
	_ = conn.Write(c.ctx, websocket.MessageText, cmd)
}

// deliver answers a pending publish; false when id is not one.
func (c *Client) deliver(id uint32, r pubResult) bool {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- r
	return true
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		u.RawQuery = ""
		return u.Redacted()
	}
	return "the server"
}
