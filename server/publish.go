package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/gobwas/ws"

	"github.com/loopcast/loopcast/server/internal/bus"
	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
)

// Publishing has one owner. Every door — a raw member's message
// (ws.go), a loopcast.v1 pub (protocol.go), POST /publish (admin.go) and
// Server.Publish — takes the same three steps:
//
//  1. mayPublish, the one policy: room name, message type, size, UTF-8,
//     client publishing allowed, the token's publish claim, the member's
//     rate. A refusal is a *publishError, which says how each door
//     reports it (an err code, a close code, a status, an error value).
//  2. route, the one place that reads the cluster: the JetStream log
//     when there is one, else the room's owner event loop here, which
//     forwards the message to the other instances (core NATS) once it
//     has placed it.
//  3. the answer, in the door's own terms, from the fanout.Answer the
//     owner loop or the log gives: an ack, an err, a status code.

// MessageType is the kind of a WebSocket data message: Text (valid UTF-8)
// or Binary. Members receive a message with the type it was sent with.
type MessageType uint8

// The data message types, numbered as their RFC 6455 opcodes.
const (
	Text   MessageType = MessageType(ws.OpText)
	Binary MessageType = MessageType(ws.OpBinary)
)

func (t MessageType) String() string {
	switch t {
	case Text:
		return "text"
	case Binary:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Errors of Publish.
var (
	ErrBadRoom        = errors.New("room names are 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or ..")
	ErrBadMessageType = errors.New("publish needs a Text or Binary message")
	ErrInvalidUTF8    = errors.New("text message is not valid UTF-8")
	ErrTooLarge       = errors.New("message over max-message")
	ErrBadKey         = errors.New("idempotency keys are 1 to 64 characters of A-Z a-z 0-9 . _ -")
	ErrNotRunning     = errors.New("server not running")
	ErrTooManyRooms   = errors.New("rooms over max-rooms")
	// ErrLogUnavailable: the JetStream log did not take the message and
	// never will; publishing it again is safe.
	ErrLogUnavailable = bus.ErrRefused
	// ErrOutcomeUnknown: the message was handed to the JetStream log,
	// which did not acknowledge it in time (publishAckTimeout): it may or
	// may not be published. Publish it again with the same key: it is
	// then published once.
	ErrOutcomeUnknown = bus.ErrUnknown
)

// publishError is a publication refused by the policy or the route,
// with how each door reports it.
type publishError struct {
	err    error          // Server.Publish's error
	v1     *command.Error // a loopcast.v1 pub's err reply
	status int            // POST /publish's status
	// close is how a raw member is told: its connection is closed with
	// this code (raw mode has no replies). nil: raw mode cannot hit it.
	close *frame.CloseError
}

// The refusals, one table for every door.
var (
	errPubBadRoom = &publishError{ErrBadRoom, &command.Error{Code: command.CodeBadRoom, Reason: ErrBadRoom.Error()}, http.StatusBadRequest, nil}
	errPubBadType = &publishError{ErrBadMessageType, nil, http.StatusBadRequest, nil}
	errPubUTF8    = &publishError{ErrInvalidUTF8, nil, http.StatusBadRequest, nil}
	errPubBadKey  = &publishError{ErrBadKey, &command.Error{Code: command.CodeBadCommand, Reason: ErrBadKey.Error()}, http.StatusBadRequest, nil}
	errPubTooBig  = &publishError{ErrTooLarge, &command.Error{Code: command.CodeTooLarge, Reason: "payload over max-message"}, http.StatusRequestEntityTooLarge, errTooBig}
	errPubStopped = &publishError{ErrNotRunning, &command.Error{Code: command.CodeUnavailable, Reason: "server not running"}, http.StatusServiceUnavailable, nil}
	errPubOff     = &publishError{errors.New("clients may not publish"), &command.Error{Code: command.CodePublishDisabled, Reason: "clients may not publish"},
		http.StatusForbidden, &frame.CloseError{Code: ws.StatusPolicyViolation, Reason: "clients may not publish"}}
	errPubForbidden = &publishError{errors.New("the token's publish claim does not allow this room"), &command.Error{Code: command.CodeForbidden, Reason: "the token's publish claim does not allow this room"},
		http.StatusForbidden, &frame.CloseError{Code: ws.StatusPolicyViolation, Reason: "token may not publish to this room"}}
	errPubRate = &publishError{errors.New("publish rate over publish-rate"), &command.Error{Code: command.CodeRateLimited, Reason: "publish rate over publish-rate"},
		http.StatusTooManyRequests, errRateLimited}
	errPubRooms = &publishError{ErrTooManyRooms, &command.Error{Code: command.CodeTooManyRooms, Reason: "rooms over max-rooms"},
		http.StatusServiceUnavailable, &frame.CloseError{Code: statusTryAgainLater, Reason: "rooms over max-rooms"}}
	errPubUnavailable = &publishError{ErrLogUnavailable, &command.Error{Code: command.CodeUnavailable, Reason: "the cluster log (JetStream) did not take the message; it was not published"},
		http.StatusServiceUnavailable, &frame.CloseError{Code: statusTryAgainLater, Reason: "cluster log unavailable: message not published"}}
	errPubUnknown = &publishError{ErrOutcomeUnknown, &command.Error{Code: command.CodeUnknown, Reason: "the cluster log (JetStream) did not acknowledge in time: the message may or may not be published; send it again with the same msgid"},
		http.StatusGatewayTimeout, nil}
)

// errRateLimited closes a raw member that publishes faster than
// Config.PublishRate allows (beyond its PublishBurst).
var errRateLimited = &frame.CloseError{Code: ws.StatusPolicyViolation, Reason: "publish rate over publish-rate"}

// answerError is the refusal an Answer's error stands for.
func answerError(err error) *publishError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bus.ErrUnknown):
		return errPubUnknown
	case errors.Is(err, fanout.ErrTooManyRooms):
		return errPubRooms
	}
	return errPubUnavailable
}

// publisher is who publishes, for mayPublish.
type publisher struct {
	// member: a WebSocket connection (raw or loopcast.v1), to which
	// ClientPublish, its token's publish claim and PublishRate apply;
	// otherwise the admin API or a Go caller, which are trusted.
	member *conn
	// checked: the payload's UTF-8 was checked already (the frame layer
	// checks text messages).
	checked bool
}

// mayPublish is the publishing policy, the same for every door: nil, or
// why the publication is refused. A member's rate is charged only when
// everything else allows the publication.
func (s *Server) mayPublish(who publisher, room []byte, t MessageType, payload []byte, key []byte) *publishError {
	switch {
	case !ValidRoomName(room):
		return errPubBadRoom
	case t != Text && t != Binary:
		return errPubBadType
	case len(payload) > s.cfg.MaxMessage:
		return errPubTooBig
	case len(key) > 0 && !command.ValidMsgID(key):
		return errPubBadKey
	case t == Text && !who.checked && !validUTF8(payload):
		return errPubUTF8
	}
	select {
	case <-s.ready:
	default:
		return errPubStopped
	}
	cs := who.member
	if cs == nil {
		return nil
	}
	switch {
	case !s.cfg.ClientPublish && !cs.echo:
		return errPubOff
	case !cs.sess.mayPublish(room):
		return errPubForbidden
	case !cs.allowPublish(cs.loop.nowNs):
		return errPubRate
	}
	return nil
}

func validUTF8(p []byte) bool {
	var v frame.UTF8
	return v.Write(p) && v.Complete()
}

// route sends a publication on its way, the one place that chooses: the
// JetStream log when there is one (every instance, this one included,
// delivers what the log holds, in its order), else the room's owner
// event loop here, which places it in the room's order and, with a
// broker, forwards it to the other instances. l is the calling event
// loop (nil off the loops), r the room when the door has it at hand (a
// member's subscription). a learns the outcome later; a refusal that
// happens now is returned instead, and a is then never answered.
func (s *Server) route(l *eventLoop, name []byte, r *fanout.Room, p fanout.Publication, a fanout.Ack) *publishError {
	if s.clog != nil {
		if err := s.clog.Append(string(name), p.Op, p.Payload, p.Key, a); err != nil {
			s.logRefusals.Add(1)
			return errPubUnavailable
		}
		return nil
	}
	p.Forward = s.bridge != nil
	var err error
	switch {
	case l == nil:
		_, err = s.engine.Publish(string(name), p, a)
	case r != nil:
		l.engine.Publish(r, p, a)
	default:
		err = l.engine.PublishTo(name, p, a)
	}
	if err != nil {
		return errPubRooms
	}
	return nil
}

// forward is fanout.Config.Forward with a broker: the owner loop hands a
// message published here to the other instances, in the room's order,
// with its place in this instance's forwarding order (origin) so that
// they notice a loss. A refusal (NATS slower than this instance) is
// counted; the other instances see the gap.
func (s *Server) forward(room string, op byte, payload []byte, origin fanout.Origin) error {
	err := s.bridge.Forward(room, op, payload, bus.Position(origin))
	if err != nil {
		s.forwardErrors.Add(1)
	}
	return err
}

// Message is a publication for Server.PublishMessage.
type Message struct {
	Room    string
	Type    MessageType
	Payload []byte
	// Key, when set, is the publisher's idempotency key (1 to 64 of
	// A-Z a-z 0-9 . _ -): a second message with the same key to the same
	// room within fanout.DedupeWindow (two minutes; over JetStream its
	// duplicate window) is answered with the first one's place
	// (Published.Duplicate) and delivered to nobody again.
	Key string
}

// Published says where a message was placed.
type Published struct {
	// Members is the number of subscriptions the room had on this
	// instance when the message was handed to its owner loop.
	Members int `json:"members"`
	// Epoch and Offset are the room's epoch and the message's offset in
	// it, what loopcast.v1 clients see in the message's "msg" line and
	// resume from. Both 0 when the room did not exist here and history
	// is off: nobody here got the message.
	Epoch  uint64 `json:"-"`
	Offset uint64 `json:"offset"`
	// Duplicate: a message with the same Key was published before; Epoch
	// and Offset are its place, and this one reached nobody.
	Duplicate bool `json:"duplicate,omitempty"`
	// NotForwarded says why a message published here did not go to the
	// other instances (core NATS: over its max_payload, or NATS slower
	// than this instance), which then see the loss; nil when it went, or
	// without a broker.
	NotForwarded error `json:"-"`
}

// Publish sends payload to every member of room as one message of type
// t; see PublishMessage.
func (s *Server) Publish(room string, t MessageType, payload []byte) (Published, error) {
	return s.PublishMessage(context.Background(), Message{Room: room, Type: t, Payload: payload})
}

// PublishMessage publishes m to every member of its room (on every
// instance, with Config.Broker), sequenced with the members' own
// messages and kept in the room's history (Config.HistoryMessages; the
// room is created if need be). It waits for the message's place: at most
// publishAckTimeout over the JetStream log, whose answer may then be
// ErrOutcomeUnknown (publish again with the same Key), or until ctx ends
// (the message may still be published: ErrOutcomeUnknown too). An
// ErrLogUnavailable refusal is true: nothing was published. Safe for
// concurrent use, not from an event loop; m.Payload is copied before it
// returns.
func (s *Server) PublishMessage(ctx context.Context, m Message) (Published, error) {
	if perr := s.mayPublish(publisher{}, []byte(m.Room), m.Type, m.Payload, []byte(m.Key)); perr != nil {
		return Published{}, perr.err
	}
	wait := make(chan fanout.Answer, 1)
	p := fanout.Publication{Op: byte(m.Type), Payload: m.Payload, Key: m.Key}
	members := s.engine.Members(m.Room)
	if perr := s.route(nil, []byte(m.Room), nil, p, fanout.Ack{Wait: wait}); perr != nil {
		return Published{}, perr.err
	}
	// The log answers within publishAckTimeout, the owner loop within a
	// poll cycle; this bound is only for a server that is stopping.
	ctx, cancel := context.WithTimeout(ctx, publishAckTimeout+publishAnswerSlack)
	defer cancel()
	select {
	case a := <-wait:
		if perr := answerError(a.Err); perr != nil {
			return Published{}, perr.err
		}
		return Published{Members: members, Epoch: a.Epoch, Offset: a.Offset, Duplicate: a.Duplicate, NotForwarded: a.NotForwarded}, nil
	case <-ctx.Done():
		return Published{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

// PublishResult is one room's outcome of PublishMany.
type PublishResult struct {
	Room      string
	Published Published
	Err       error
}

// PublishMany publishes m to each of rooms (m.Room is ignored) at once,
// as PublishMessage would to each, and returns each room's outcome in
// the order of rooms. m.Key, when set, de-duplicates per room.
func (s *Server) PublishMany(ctx context.Context, rooms []string, m Message) []PublishResult {
	out := make([]PublishResult, len(rooms))
	var wg sync.WaitGroup
	for i, room := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			one := m
			one.Room = room
			p, err := s.PublishMessage(ctx, one)
			out[i] = PublishResult{room, p, err}
		}()
	}
	wg.Wait()
	return out
}

// ValidRoomName reports whether name is 1 to 64 of [A-Za-z0-9._-], and
// not "." or "..", which browsers and HTTP libraries remove from paths.
func ValidRoomName[T ~string | ~[]byte](name T) bool {
	if len(name) == 0 || len(name) > MaxRoomName || string(name) == "." || string(name) == ".." {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
