package server

import (
	"context"
	"errors"

	"github.com/panjf2000/gnet/v2"

	"github.com/loopcast/loopcast/server/internal/bus"
	"github.com/loopcast/loopcast/server/internal/fanout"
)

// Broker carries rooms between loopcast instances, so members of one
// room on different pods see each other's messages: package cluster's
// Bridge (core NATS) or Stream (JetStream, a shared log clients resume
// from on any instance). Put one in Config.Broker; the server attaches
// itself to it. Config.Broker nil (the default) keeps rooms in-process.
// Only packages under server/ implement it: see package
// server/internal/bus for the contract.
type Broker interface {
	Attach(bus.Host)
}

// errBrokerKind refuses a Config.Broker that is neither kind.
var errBrokerKind = errors.New("config: Broker must be a cluster.Bridge or a cluster.Stream")

// host is what the server offers its broker (bus.Host). It is a type of
// its own so that these methods are not the Server's API.
type host struct{ s *Server }

var _ bus.Host = host{}

// Deliver implements bus.Host: a message from another instance, or from
// the log (pos set), to this instance's members. From the log it waits
// until the server runs: the log is read from its start, and no message
// may be dropped for want of a loop to own its room.
func (h host) Deliver(room string, op byte, payload []byte, pos bus.Position) (int, error) {
	s := h.s
	if s.clog != nil {
		select {
		case <-s.ready:
		case <-s.done:
			return 0, ErrNotRunning
		}
	}
	if perr := s.mayPublish(publisher{}, []byte(room), MessageType(op), payload, nil); perr != nil {
		return 0, perr.err // a larger --max-message elsewhere, or the server stopping
	}
	var n int
	var err error
	if s.clog != nil {
		n, err = s.engine.PublishAt(room, op, payload, pos.Epoch, pos.Offset)
	} else {
		n, err = s.engine.Publish(room, fanout.Publication{Op: op, Payload: payload}, fanout.Ack{})
	}
	if errors.Is(err, fanout.ErrTooManyRooms) {
		if s.clog != nil {
			// The rooms held only for the log's messages reached max-rooms:
			// this one is not kept here (a resume here is told
			// history_passed). Said once; counted.
			s.logRoomsRefused.Add(1)
			if s.warnedLogRooms.CompareAndSwap(false, true) {
				s.log.Warn("the JetStream stream's messages for new rooms are not kept here: rooms held only for the stream reached max-rooms (counted apart from the rooms with members); raise --max-rooms or lower the stream's subjects' spread (logged once; loopcast_log_rooms_refused_total counts them)",
					"room", room, "max_rooms", s.cfg.MaxRooms)
			}
		}
		return 0, ErrTooManyRooms
	}
	if err == nil {
		s.remote.Add(1)
	}
	return n, err
}

// Answer implements bus.Host: the log's answer to a publication.
func (h host) Answer(t bus.Ticket, room string, pos bus.Position, dup bool, err error) {
	h.s.engine.Answer(t, fanout.Answer{Room: room, Epoch: pos.Epoch, Offset: pos.Offset, Duplicate: dup, Err: err})
}

// Restart implements bus.Host: the log's history is gone.
func (h host) Restart(epoch, covered uint64) { h.s.engine.Restart(epoch, covered) }

// Skipped implements bus.Host: the log removed messages before this
// instance read them. Every room's history here is complete only after
// to; every loopcast.v1 session is closed with 1013 so that it resumes
// (and is told history_passed where it missed something).
func (h host) Skipped(to uint64) {
	s := h.s
	s.engine.Skipped(to)
	for _, l := range s.loopList() {
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.closeSessions(closeLogSkipped)
			return nil
		}))
	}
}

// Lost implements bus.Host: messages of room from another instance were
// lost; the room starts a new epoch here.
func (h host) Lost(room string) {
	h.s.lost.Add(1)
	h.s.engine.Renew(room)
}
