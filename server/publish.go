package server

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"

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
)

// Publish sends payload to every member of room as one message of type t,
// sequenced with the members' own messages, and to the other instances
// through Config.Broker. It returns the number of members the room had on
// this instance when the message was handed to its owner loop (0 when
// the room has none here: nothing is sent locally). Safe for concurrent
// use; payload is copied before it returns.
func (s *Server) Publish(room string, t MessageType, payload []byte) (int, error) {
	n, err := s.publish(room, t, payload)
	if err == nil && s.cfg.Broker != nil {
		if err := s.cfg.Broker.Publish(room, t, payload); err != nil {
			return n, fmt.Errorf("delivered to %d local members; not to other instances: %w", n, err)
		}
	}
	return n, err
}

// DeliverRemote delivers a message that another instance published (it
// came through the Broker) to this instance's members of room, without
// publishing it again. It returns the local member count, like Publish.
func (s *Server) DeliverRemote(room string, t MessageType, payload []byte) (int, error) {
	n, err := s.publish(room, t, payload)
	if err == nil && n > 0 {
		s.remote.Add(1)
	}
	return n, err
}

func (s *Server) publish(room string, t MessageType, payload []byte) (int, error) {
	if !ValidRoomName(room) {
		return 0, ErrBadRoom
	}
	if t != Text && t != Binary {
		return 0, ErrBadMessageType
	}
	if len(payload) > s.cfg.MaxMessage {
		return 0, ErrTooLarge
	}
	if t == Text {
		var v frame.UTF8
		if !v.Write(payload) || !v.Complete() {
			return 0, ErrInvalidUTF8
		}
	}
	select {
	case <-s.booted:
	default:
		return 0, ErrNotRunning
	}
	var head [frame.MaxHeaderLen]byte
	return s.fan.Publish(room, frame.AppendHeader(head[:0], true, ws.OpCode(t), len(payload)), payload), nil
}
