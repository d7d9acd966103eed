package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/gobwas/ws"

	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/frame"
)

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

// Errors of Publish and DeliverRemote.
var (
	ErrBadRoom        = errors.New("room names are 1 to 64 characters of A-Z a-z 0-9 . _ -, not . or ..")
	ErrBadMessageType = errors.New("publish needs a Text or Binary message")
	ErrInvalidUTF8    = errors.New("text message is not valid UTF-8")
	ErrTooLarge       = errors.New("message over max-message")
	ErrNotRunning     = errors.New("server not running")
	ErrTooManyRooms   = errors.New("rooms over max-rooms")
	// ErrLogUnavailable: the JetStream log did not take the message.
	ErrLogUnavailable = errors.New("cluster log unavailable")
)

// Published says where Publish placed a message on this instance.
type Published struct {
	// Members is the number of subscriptions the room had here when the
	// message was handed to its owner loop.
	Members int `json:"members"`
	// Epoch and Offset are the room's epoch and the message's offset in
	// it, what loopcast.v1 clients see in the message's "msg" line and
	// resume from. Both 0 when the room did not exist here and history
	// is off: nobody here got the message.
	Epoch  uint64 `json:"-"`
	Offset uint64 `json:"offset"`
}

// Publish sends payload to every member of room as one message of type t,
// sequenced with the members' own messages, kept in the room's history
// (Config.HistoryMessages; the room is created if need be), and sent to
// the other instances through Config.Broker. It waits until the room's
// owner loop gave the message its offset (at most publishWaitTimeout).
// Safe for concurrent use, not from an event loop; payload is copied
// before it returns.
func (s *Server) Publish(room string, t MessageType, payload []byte) (Published, error) {
	if err := s.checkPublish(room, t, payload); err != nil {
		return Published{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishWaitTimeout)
	defer cancel()
	if s.clog != nil {
		epoch, offset, err := s.clog.AppendWait(ctx, room, t, payload)
		if err != nil {
			return Published{}, fmt.Errorf("%w: %w", ErrLogUnavailable, err)
		}
		return Published{Members: s.fan.Members(room), Epoch: epoch, Offset: offset}, nil
	}
	n, seq, err := s.fan.PublishWait(ctx, room, byte(t), payload)
	p := Published{Members: n, Epoch: seq.Epoch, Offset: seq.Offset}
	if errors.Is(err, fanout.ErrTooManyRooms) {
		return p, ErrTooManyRooms
	}
	if err == nil && s.cfg.Broker != nil {
		if err := s.cfg.Broker.Publish(room, t, payload); err != nil {
			return p, fmt.Errorf("delivered to %d local members; not to other instances: %w", n, err)
		}
	}
	return p, err
}

// DeliverRemote delivers a message that another instance published (it
// came through the Broker) to this instance's members of room, without
// publishing it again and without waiting for its offset. It returns the
// local member count.
func (s *Server) DeliverRemote(room string, t MessageType, payload []byte) (int, error) {
	if err := s.checkPublish(room, t, payload); err != nil {
		return 0, err
	}
	n, err := s.fan.Publish(room, byte(t), payload)
	if errors.Is(err, fanout.ErrTooManyRooms) {
		return 0, ErrTooManyRooms
	}
	if err == nil && n > 0 {
		s.remote.Add(1)
	}
	return n, err
}

func (s *Server) checkPublish(room string, t MessageType, payload []byte) error {
	if !ValidRoomName(room) {
		return ErrBadRoom
	}
	if t != Text && t != Binary {
		return ErrBadMessageType
	}
	if len(payload) > s.cfg.MaxMessage {
		return ErrTooLarge
	}
	if t == Text {
		var v frame.UTF8
		if !v.Write(payload) || !v.Complete() {
			return ErrInvalidUTF8
		}
	}
	select {
	case <-s.ready:
		return nil
	default:
		return ErrNotRunning
	}
}
