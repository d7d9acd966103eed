package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
	"github.com/loopcast/loopcast/server/internal/hook"
)

// The publish hook (HookPublishURL): every message a client publishes
// (loopcast.v1 pub, a raw member's message), after loopcast's own checks,
// is POSTed to the backend, which allows it (and may replace its
// payload) or refuses it. A connection's publications wait in its own
// queue, one call at a time, so they keep their order; at most
// maxHookedPublishes wait (the payload copied), past that a pub gets err
// unavailable (a raw member is closed, 1013).

// maxHookedPublishes bounds one connection's publications waiting for
// the publish hook; their bytes count against the server-wide bound on
// bytes held for peers (maxAssembling).
const maxHookedPublishes = 16

// hookedPublish is a publication waiting for the publish hook.
type hookedPublish struct {
	id   uint32 // the pub's id (raw: 0)
	op   ws.OpCode
	room string
	body []byte // a copy
	key  string
	raw  bool
}

// publishRequest is what the publish hook receives: text payloads as
// data, binary ones base64 in data_b64.
type publishRequest struct {
	User       string `json:"user,omitempty"`
	Room       string `json:"room"`
	Data       string `json:"data,omitempty"`
	DataB64    string `json:"data_b64,omitempty"`
	Binary     bool   `json:"binary"`
	RemoteAddr string `json:"remote_addr"`
}

// publishHookAnswer is the publish hook's answer; Data (text) or DataB64
// (binary), when set, replace the payload.
type publishHookAnswer struct {
	Allow   bool    `json:"allow"`
	Reason  string  `json:"reason"`
	Data    *string `json:"data"`
	DataB64 *string `json:"data_b64"`
}

var (
	errPubHookBusy   = &command.Error{Code: command.CodeUnavailable, Reason: "too many publishes waiting for the application's publish hook (16 per connection, or the server's bound on bytes held for peers): not published"}
	errPubHookFailed = &command.Error{Code: command.CodeUnavailable, Reason: "the application's publish hook did not answer: not published"}
	errPubHookBad    = &command.Error{Code: command.CodeUnavailable, Reason: "the application's publish hook replaced the payload with one loopcast cannot publish (over max-message, or text that is not UTF-8): not published"}
	closeHookBusy    = &frame.CloseError{Code: statusTryAgainLater, Reason: "publish hook: too many waiting, not published"}
	closeHookFailed  = &frame.CloseError{Code: statusTryAgainLater, Reason: "publish hook did not answer: not published"}
	closeHookDenied  = &frame.CloseError{Code: ws.StatusPolicyViolation, Reason: "the application refused the message"}
)

// publishViaHook queues p (its payload aliasing the input: copied here)
// for the publish hook. It returns a close action for a raw member the
// queue refuses.
func (cs *conn) publishViaHook(p hookedPublish) gnet.Action {
	if cs.sess == nil {
		cs.sess = &session{}
	}
	s := cs.loop.srv
	// Waiting payloads count with the messages being assembled: one
	// server-wide bound on bytes held for peers (ws.go).
	if len(cs.sess.publishing) >= maxHookedPublishes || s.assembling.Add(int64(len(p.body))) > s.maxAssembling.Load() {
		if len(cs.sess.publishing) < maxHookedPublishes {
			s.assembling.Add(-int64(len(p.body)))
		}
		if p.raw {
			return cs.protocolError(closeHookBusy)
		}
		cs.refuse(p.id, errPubHookBusy)
		return gnet.None
	}
	p.body = append([]byte(nil), p.body...)
	cs.sess.publishing = append(cs.sess.publishing, &p)
	if len(cs.sess.publishing) == 1 {
		cs.callPublishHook()
	}
	return gnet.None
}

// dropHookedPublishes gives back the bytes of a closing connection's
// waiting publications (their answers are then ignored).
func (cs *conn) dropHookedPublishes() {
	if cs.sess == nil {
		return
	}
	for _, p := range cs.sess.publishing {
		cs.loop.srv.assembling.Add(-int64(len(p.body)))
	}
	cs.sess.publishing = nil
}

// callPublishHook calls the hook for the connection's first queued
// publication.
func (cs *conn) callPublishHook() {
	l := cs.loop
	p := cs.sess.publishing[0]
	req := publishRequest{User: cs.sess.user, Room: p.room, Binary: p.op == ws.OpBinary, RemoteAddr: cs.ip.String()}
	if req.Binary {
		req.DataB64 = base64.StdEncoding.EncodeToString(p.body)
	} else {
		req.Data = string(p.body)
	}
	body, _ := json.Marshal(req)
	hc := l.srv.hooks.publish
	err := hc.Call(body, func(r hook.Result) {
		var a publishHookAnswer
		err := r.Err
		if err == nil && json.Unmarshal(r.Body, &a) != nil {
			err = hook.ErrStatus
			hc.Failed.Add(1)
		}
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			cs.publishAnswered(p, a, err)
			return nil
		}))
	})
	if err != nil {
		cs.publishAnswered(p, publishHookAnswer{}, err)
	}
}

// publishAnswered runs on the loop with the answer for p, the head of
// the queue: it routes or refuses p, then calls for the next one.
func (cs *conn) publishAnswered(p *hookedPublish, a publishHookAnswer, err error) {
	if cs.state != stateOpen || cs.sess == nil || len(cs.sess.publishing) == 0 || cs.sess.publishing[0] != p {
		return // closed meanwhile: the queue went with it
	}
	cs.sess.publishing = cs.sess.publishing[1:]
	if len(cs.sess.publishing) == 0 {
		cs.sess.publishing = nil
	}
	cs.loop.srv.assembling.Add(-int64(len(p.body)))
	a.Allow = a.Allow || err != nil && cs.loop.srv.failOpen("publish")
	cs.finish(cs.settlePublish(p, a, err))
	if cs.state == stateOpen && len(cs.sess.publishing) > 0 {
		cs.callPublishHook()
	}
}

// settlePublish routes an allowed p (with the answer's payload when it
// replaced it) or refuses it.
func (cs *conn) settlePublish(p *hookedPublish, a publishHookAnswer, err error) gnet.Action {
	l := cs.loop
	hc := l.srv.hooks.publish
	refuse := func(v1 *command.Error, close *frame.CloseError) gnet.Action {
		if p.raw {
			return cs.protocolError(close)
		}
		cs.refuse(p.id, v1)
		return gnet.None
	}
	switch {
	case !a.Allow && err != nil:
		return refuse(errPubHookFailed, closeHookFailed)
	case !a.Allow:
		hc.Denied.Add(1)
		reason := strings.ReplaceAll(a.Reason, "\n", " ")
		if reason == "" {
			reason = "the application refused the message"
		}
		return refuse(&command.Error{Code: command.CodeForbidden, Reason: reason}, closeHookDenied)
	}
	if err == nil {
		hc.Allowed.Add(1)
	}
	body := p.body
	switch {
	case a.Data != nil:
		body = []byte(*a.Data)
	case a.DataB64 != nil:
		b, derr := base64.StdEncoding.DecodeString(*a.DataB64)
		if derr != nil {
			return refuse(errPubHookBad, closeHookFailed)
		}
		body = b
	}
	if len(body) > l.srv.cfg.MaxMessage || p.op == ws.OpText && !validUTF8(body) {
		return refuse(errPubHookBad, closeHookFailed)
	}
	pub := fanout.Publication{Op: byte(p.op), Payload: body, Key: p.key}
	ack := fanout.Ack{Member: &cs.member, ID: p.id}
	if p.raw || p.id == 0 && l.srv.clog == nil {
		ack = fanout.Ack{}
	}
	var r *fanout.Room
	if s := cs.member.Sub([]byte(p.room)); s != nil {
		r = s.Room()
	}
	if perr := l.srv.route(l, []byte(p.room), r, pub, ack); perr != nil {
		return refuse(perr.v1, perr.close)
	}
	return gnet.None
}
