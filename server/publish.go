package server

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"

	"github.com/loopcast/loopcast/server/frame"
)

// Errors of Publish.
var (
	ErrBadRoom     = errors.New("room names are 1 to 64 characters of A-Z a-z 0-9 . _ -")
	ErrBadOpcode   = errors.New("publish needs a text or binary opcode")
	ErrInvalidUTF8 = errors.New("text message is not valid UTF-8")
	ErrTooLarge    = errors.New("message over max-message")
	ErrNotRunning  = errors.New("server not running")
)

// Publish sends payload to every member of room as one frame with opcode
// op (ws.OpText or ws.OpBinary), sequenced with the members' own messages.
// It returns the number of members the room had when the message was
// handed to its owner loop (0 when the room does not exist: nothing is
// sent). Safe for concurrent use; payload is copied before it returns.
func (s *Server) Publish(room string, op ws.OpCode, payload []byte) (int, error) {
	n, err := s.publish(room, op, payload)
	if err == nil && s.cfg.Broker != nil {
		if err := s.cfg.Broker.Publish(room, op, payload); err != nil {
			return n, fmt.Errorf("delivered to %d local members; not to other instances: %w", n, err)
		}
	}
	return n, err
}

// DeliverRemote delivers a message that another instance published (it
// came through the Broker) to this instance's members of room, without
// publishing it again. It returns the local member count, like Publish.
func (s *Server) DeliverRemote(room string, op ws.OpCode, payload []byte) (int, error) {
	n, err := s.publish(room, op, payload)
	if err == nil && n > 0 {
		s.remote.Add(1)
	}
	return n, err
}

func (s *Server) publish(room string, op ws.OpCode, payload []byte) (int, error) {
	if !ValidRoomName(room) {
		return 0, ErrBadRoom
	}
	if op != ws.OpText && op != ws.OpBinary {
		return 0, ErrBadOpcode
	}
	if len(payload) > s.cfg.MaxMessage {
		return 0, ErrTooLarge
	}
	if op == ws.OpText {
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
	r := s.rooms.lookup(room)
	if r == nil {
		return 0, nil
	}
	members := int(r.members.Load())
	f := newSharedFrame(op, payload)
	handoff(r.owner, r, f, true)
	f.release()
	return members, nil
}
