package server

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/hook"
	"github.com/loopcast/loopcast/server/internal/reqhead"
)

// Backend hooks: the application's own backend authorizes connections
// (HookConnectURL) and subscriptions (HookSubscribeURL) over HTTP, like
// Centrifugo's proxies. The event loop never waits: the call goes to a
// worker pool (package hook), the connection waits (an upgrade is parked
// in stateHooking; a sub is pending), and the answer comes back to the
// connection's loop as a task. A call is bounded by HookTimeout; a
// backend that fails (timeout, error, a status other than 200, a full
// queue) denies, unless HookFailOpen names the hook.

// hooks are the server's hook clients (nil fields: hook off).
type hooks struct {
	connect, subscribe, publish *hook.Client
	subCache                    hook.Cache[subscribeAnswer]
}

// maxHookCache bounds the cached subscribe answers.
const maxHookCache = 100_000

func newHooks(cfg Config) *hooks {
	h := &hooks{subCache: hook.Cache[subscribeAnswer]{Max: maxHookCache}}
	timeout := func(d time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return cfg.HookTimeout
	}
	if cfg.HookConnectURL != "" {
		h.connect = hook.New("connect", cfg.HookConnectURL, timeout(cfg.HookConnectTimeout), cfg.HookWorkers)
	}
	if cfg.HookSubscribeURL != "" {
		h.subscribe = hook.New("subscribe", cfg.HookSubscribeURL, timeout(cfg.HookSubscribeTimeout), cfg.HookWorkers)
	}
	if cfg.HookPublishURL != "" {
		h.publish = hook.New("publish", cfg.HookPublishURL, timeout(cfg.HookPublishTimeout), cfg.HookWorkers)
	}
	return h
}

func (h *hooks) close() {
	for _, c := range []*hook.Client{h.connect, h.subscribe, h.publish} {
		if c != nil {
			c.Close()
		}
	}
}

// failOpen reports whether a failed call of hook name allows.
func (s *Server) failOpen(name string) bool { return slices.Contains(s.cfg.HookFailOpen, name) }

// connectRequest is what the connect hook receives.
type connectRequest struct {
	RemoteAddr string            `json:"remote_addr"`
	Path       string            `json:"path"`
	Query      string            `json:"query,omitempty"`
	Protocol   string            `json:"protocol"` // "loopcast.v1" or "raw"
	Headers    map[string]string `json:"headers,omitempty"`
	User       string            `json:"user,omitempty"` // the verified token's sub
	// Connection names this connection for the admin API's
	// POST /connections/{id}/disconnect (Server.DisconnectConnection).
	Connection string `json:"connection"`
}

// connectAnswer is the connect hook's answer. Allow false: Status (401,
// 403, 429 or 503; 403 otherwise) and Reason go to the client. Allow
// true: the fields set replace the token's.
type connectAnswer struct {
	Allow    bool            `json:"allow"`
	Status   int             `json:"status"`
	Reason   string          `json:"reason"`
	User     *string         `json:"user"`
	Info     json.RawMessage `json:"info"`
	Rooms    *[]string       `json:"rooms"`
	Publish  *[]string       `json:"publish"`
	Subs     *[]string       `json:"subs"`
	ExpireAt int64           `json:"expire_at"` // Unix seconds; 0: no expiry
}

// parkedUpgrade is an upgrade waiting for the connect hook: what
// upgrade needs once the answer comes (copied out of gnet's buffer).
type parkedUpgrade struct {
	key  []byte
	len  int
	t    target
	room []byte
	seq  uint64 // the connection's number on its loop (its id's last part)
}

// awaitHooks parks the upgrade h (to t) and calls the connect hook, then
// (a raw member's join) the subscribe hook.
func (cs *conn) awaitHooks(h *reqhead.Head, t target, raw []byte) gnet.Action {
	l := cs.loop
	p := &parkedUpgrade{key: append([]byte(nil), h.Key...), len: h.Len, t: t}
	if t.room != nil {
		p.room = append([]byte(nil), t.room...)
		p.t.room = p.room
	}
	cs.state = stateHooking
	if l.srv.hooks.connect == nil {
		cs.continueUpgrade(p) // only a raw member's join asks (the subscribe hook)
		return gnet.None
	}
	l.connSeq++
	p.seq = l.connSeq
	body, _ := json.Marshal(connectRequestFor(cs, h, t, raw, connID(l.srv.occ.table.Self, l.idx, p.seq)))
	err := l.srv.hooks.connect.Call(body, func(r hook.Result) {
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			cs.connectAnswered(p, r)
			return nil
		}))
	})
	if err != nil {
		cs.connectAnswered(p, hook.Result{Err: err})
	}
	return gnet.None
}

// connectRequestFor is the connect hook's request for the upgrade h (to
// t) of the connection named id; raw is the request head, for the
// headers Config.HookHeaders names.
func connectRequestFor(cs *conn, h *reqhead.Head, t target, raw []byte, id string) connectRequest {
	req := connectRequest{RemoteAddr: cs.ip.String(), Path: string(h.Path), Query: string(h.Query), Protocol: "raw", Connection: id}
	if t.v1 {
		req.Protocol = "loopcast.v1"
	}
	if t.sess != nil {
		req.User = t.sess.user
	}
	for _, name := range cs.loop.srv.cfg.HookHeaders {
		if vs := reqhead.Fields(raw, name); len(vs) > 0 {
			if req.Headers == nil {
				req.Headers = map[string]string{}
			}
			sep := ", "
			if strings.EqualFold(name, "Cookie") {
				sep = "; " // RFC 6265 section 5.4
			}
			req.Headers[name] = string(bytes.Join(vs, []byte(sep)))
		}
	}
	return req
}

// connectAnswered runs on the loop with the connect hook's result.
func (cs *conn) connectAnswered(p *parkedUpgrade, r hook.Result) {
	if cs.state != stateHooking {
		return // closed meanwhile
	}
	l := cs.loop
	hc := l.srv.hooks.connect
	var a connectAnswer
	bad := r.Err == nil && json.Unmarshal(r.Body, &a) != nil
	if bad {
		hc.Failed.Add(1) // a 200 that is not an answer: the backend is broken
	}
	switch {
	case r.Err != nil || bad:
		if !l.srv.failOpen("connect") {
			cs.refuseParked(rejHookUnavailable)
			return
		}
		a.Allow = true
	case !a.Allow:
		hc.Denied.Add(1)
		cs.refuseParked(hookRejection(a.Status, a.Reason))
		return
	default:
		hc.Allowed.Add(1)
	}
	if rej := p.apply(&a, l.srv); rej != nil {
		cs.refuseParked(rej)
		return
	}
	cs.continueUpgrade(p)
}

// refuseParked answers a parked upgrade with rej.
func (cs *conn) refuseParked(rej *rejection) {
	cs.state = stateHTTP
	cs.loop.srv.admit.release(cs.ip)
	cs.finish(cs.reject(rej))
}

// continueUpgrade completes a parked upgrade the connect hook allowed
// (or that had none): a raw member's join first asks the subscribe hook,
// as a loopcast.v1 sub would.
func (cs *conn) continueUpgrade(p *parkedUpgrade) {
	l := cs.loop
	hs := l.srv.hooks
	if hs.subscribe == nil || p.t.v1 || p.t.echo {
		cs.completeUpgrade(p)
		return
	}
	user := ""
	if p.t.sess != nil {
		user = p.t.sess.user
	}
	room := string(p.t.room)
	key := user + "\x00" + room
	if a, ok := hs.subCache.Get(key, time.Now()); ok {
		hs.subscribe.CacheHits.Add(1)
		cs.rawJoinAnswered(p, a, nil, false)
		return
	}
	body, _ := json.Marshal(subscribeRequest{User: user, Room: room, RemoteAddr: cs.ip.String()})
	err := hs.subscribe.Call(body, func(r hook.Result) {
		a, err := hs.subscribeAnswer(key, r)
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			cs.rawJoinAnswered(p, a, err, true)
			return nil
		}))
	})
	if err != nil {
		cs.rawJoinAnswered(p, subscribeAnswer{}, err, false)
	}
}

// rawJoinAnswered runs on the loop with the subscribe hook's answer to a
// raw member's join.
func (cs *conn) rawJoinAnswered(p *parkedUpgrade, a subscribeAnswer, err error, called bool) {
	if cs.state != stateHooking {
		return // closed meanwhile
	}
	l := cs.loop
	hc := l.srv.hooks.subscribe
	switch {
	case err != nil && !l.srv.failOpen("subscribe"):
		cs.refuseParked(rejHookUnavailable)
		return
	case err == nil && !a.Allow:
		if called {
			hc.Denied.Add(1)
		}
		cs.refuseParked(hookRejection(403, a.Reason))
		return
	case err == nil && called:
		hc.Allowed.Add(1)
	}
	cs.completeUpgrade(p)
}

// completeUpgrade answers a parked upgrade with its 101; the connection
// is found by its id from then on (DisconnectConnection).
func (cs *conn) completeUpgrade(p *parkedUpgrade) {
	if cs.loop.srv.draining.Load() {
		cs.refuseParked(rejDraining) // the drain began while the hooks were asked
		return
	}
	cs.state = stateHTTP
	if p.seq != 0 {
		if p.t.sess == nil {
			p.t.sess = &session{} // nil claims allow everything
		}
		p.t.sess.connSeq = p.seq
	}
	cs.finish(cs.upgrade(&reqhead.Head{Key: p.key, Len: p.len}, p.t))
	if cs.state == stateOpen && p.seq != 0 {
		l := cs.loop
		if l.byID == nil {
			l.byID = map[uint64]*conn{}
		}
		l.byID[p.seq] = cs
	}
	if cs.state == stateOpen && cs.gc.InboundBuffered() > 0 {
		cs.finish(cs.serveFrames()) // frames the client sent early
	}
}

// finish closes the connection when a handler asked for it.
func (cs *conn) finish(a gnet.Action) {
	if a == gnet.Close {
		_ = cs.loop.el.Close(cs.gc)
	}
}

// apply merges an allowing answer into the parked upgrade's session.
func (p *parkedUpgrade) apply(a *connectAnswer, s *Server) *rejection {
	if a.User == nil && a.Info == nil && a.Rooms == nil && a.Publish == nil && a.Subs == nil && a.ExpireAt == 0 {
		return nil
	}
	sess := &session{}
	if p.t.sess != nil {
		*sess = *p.t.sess
	}
	if a.User != nil {
		if len(*a.User) > occMaxUser || strings.IndexByte(*a.User, 0) >= 0 {
			return rejHookAnswer
		}
		sess.user = *a.User
	}
	if a.Info != nil && string(a.Info) != "null" {
		if len(a.Info) > s.cfg.PresenceMaxInfo {
			return rejHookAnswer
		}
		sess.info = a.Info
	}
	if a.Rooms != nil {
		sess.rooms = a.Rooms
	}
	if a.Publish != nil {
		sess.publish = a.Publish
	}
	if a.Subs != nil {
		if len(*a.Subs) > s.cfg.MaxSubscriptions || slices.ContainsFunc(*a.Subs, func(r string) bool { return !ValidRoomName(r) }) {
			return rejHookAnswer
		}
		sess.subs = *a.Subs
	}
	if a.ExpireAt > 0 {
		sess.expireAt = time.Unix(a.ExpireAt, 0)
	}
	if p.t.room != nil && !p.t.v1 && !sess.maySubscribe(p.t.room) {
		return rejRoomForbidden
	}
	p.t.sess = sess
	return nil
}

// Refusals of the connect hook.
var (
	rejHookUnavailable = newRejection(503, "the application's connect hook did not answer: try again later", "Retry-After: 1\r\n")
	rejHookAnswer      = newRejection(503, "the application's connect hook answered what loopcast cannot use (a user over 256 bytes, info over presence-max-info, invalid subs)", "Retry-After: 1\r\n")
)

// hookRejection is a denying connect answer's refusal.
func hookRejection(status int, reason string) *rejection {
	switch status {
	case 401, 403, 429, 503:
	default:
		status = 403
	}
	if reason == "" {
		reason = "the application refused the connection"
	}
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > 200 {
		reason = reason[:200]
	}
	return newRejection(status, reason, "")
}

// subscribeRequest is what the subscribe hook receives.
type subscribeRequest struct {
	User       string `json:"user,omitempty"`
	Room       string `json:"room"`
	RemoteAddr string `json:"remote_addr"`
}

// subscribeAnswer is the subscribe hook's answer: allow, or a reason to
// refuse; CacheTTL (seconds) lets loopcast reuse it for the same user
// and room.
type subscribeAnswer struct {
	Allow    bool   `json:"allow"`
	Reason   string `json:"reason"`
	CacheTTL int    `json:"cache_ttl"`
}

// subscribeAnswer reads the subscribe hook's result for key (user NUL
// room), caching it for its cache_ttl. From a worker goroutine.
func (h *hooks) subscribeAnswer(key string, r hook.Result) (subscribeAnswer, error) {
	var a subscribeAnswer
	err := r.Err
	if err == nil && json.Unmarshal(r.Body, &a) != nil {
		err = hook.ErrStatus // a 200 that is not an answer: the backend is broken
		h.subscribe.Failed.Add(1)
	}
	if err == nil && a.CacheTTL > 0 {
		h.subCache.Put(key, a, time.Now().Add(time.Duration(a.CacheTTL)*time.Second))
	}
	return a, err
}

// Errors of the subscribe hook.
var (
	errHookUnavailable = &command.Error{Code: command.CodeUnavailable, Reason: "the application's subscribe hook did not answer: subscribe again later"}
	errSubCancelled    = &command.Error{Code: command.CodeForbidden, Reason: "the server unsubscribed this user from the room while the subscribe hook was asked"}
)

// unsubscribePending cancels a sub of room waiting for the subscribe
// hook (the admin API's unsubscribe): its answer will place nothing.
func (cs *conn) unsubscribePending(room string) bool {
	if cs.sess == nil {
		return false
	}
	i := slices.Index(cs.sess.pendingSubs, room)
	if i < 0 {
		return false
	}
	cs.sess.pendingSubs = slices.Delete(cs.sess.pendingSubs, i, i+1)
	return true
}

// subscribeViaHook asks the subscribe hook about room before subscribe
// places it: from the cache, or by a call whose answer comes back to
// the loop. The room counts as pending meanwhile.
func (cs *conn) subscribeViaHook(id uint32, room []byte, resume *fanout.Resume) {
	l := cs.loop
	user := ""
	if cs.sess != nil {
		user = cs.sess.user
	}
	name := string(room)
	key := user + "\x00" + name
	hs := l.srv.hooks
	if a, ok := hs.subCache.Get(key, time.Now()); ok {
		hs.subscribe.CacheHits.Add(1)
		cs.subscribeAnswered(id, name, resume, a, nil, false, false)
		return
	}
	body, _ := json.Marshal(subscribeRequest{User: user, Room: name, RemoteAddr: cs.ip.String()})
	if cs.sess == nil {
		cs.sess = &session{}
	}
	cs.sess.pendingSubs = append(cs.sess.pendingSubs, name)
	err := hs.subscribe.Call(body, func(r hook.Result) {
		a, err := hs.subscribeAnswer(key, r)
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			cs.subscribeAnswered(id, name, resume, a, err, true, true)
			return nil
		}))
	})
	if err != nil {
		cs.subscribeAnswered(id, name, resume, subscribeAnswer{}, err, false, true)
	}
}

// subscribeAnswered runs on the loop with the subscribe hook's answer
// (called: from the backend, counted; not: from the cache, or busy;
// pending: the room was listed in pendingSubs while it waited).
func (cs *conn) subscribeAnswered(id uint32, room string, resume *fanout.Resume, a subscribeAnswer, err error, called, pending bool) {
	if pending {
		i := -1
		if cs.sess != nil {
			i = slices.Index(cs.sess.pendingSubs, room)
		}
		if i < 0 {
			// The admin API unsubscribed the user from room meanwhile
			// (unsubscribePending): not placed.
			if cs.state == stateOpen {
				cs.refuse(id, errSubCancelled)
			}
			return
		}
		cs.sess.pendingSubs = slices.Delete(cs.sess.pendingSubs, i, i+1)
	}
	if cs.state != stateOpen {
		return
	}
	if cs.member.Sub([]byte(room)) != nil {
		cs.refuse(id, errAlreadySubscribed) // the admin API subscribed it meanwhile
		return
	}
	hc := cs.loop.srv.hooks.subscribe
	switch {
	case err != nil && !cs.loop.srv.failOpen("subscribe"):
		cs.refuse(id, errHookUnavailable)
		return
	case err == nil && !a.Allow:
		if called {
			hc.Denied.Add(1)
		}
		reason := a.Reason
		if reason == "" {
			reason = "the application refused the subscription"
		}
		cs.refuse(id, &command.Error{Code: command.CodeForbidden, Reason: strings.ReplaceAll(reason, "\n", " ")})
		return
	case err == nil && called:
		hc.Allowed.Add(1)
	}
	cs.place(id, []byte(room), resume)
}
