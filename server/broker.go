package server

import "github.com/gobwas/ws"

// Broker carries room messages between loopcast instances, so members of
// one room on different pods see each other's messages. Package cluster
// implements it over NATS. Config.Broker nil (the default) keeps rooms
// in-process.
//
// The server calls Subscribe when a room gets its first member on this
// instance and Unsubscribe after its last member left, in that order for
// a given room, under the room registry's lock: both must return quickly
// and must not call back into the Server. It calls Publish for every
// message published on this instance (by a member or by Server.Publish),
// from event loops: Publish must not block, and payload is valid only
// during the call. Messages from other instances come back through
// Server.DeliverRemote, which does not publish them again.
type Broker interface {
	Subscribe(room string)
	Unsubscribe(room string)
	Publish(room string, t MessageType, payload []byte) error
}

// BrokerStatus is optionally implemented by a Broker: GET /rooms shows
// ClusterStatus() under "cluster" (the rooms listed are this instance's,
// with local member counts). A Broker that is also a prometheus.Collector
// adds its metrics to GET /metrics.
type BrokerStatus interface {
	ClusterStatus() any
}

// forward hands a message a member published to the broker, if any, and
// counts failures (the local members got the message regardless).
func (l *loop) forward(room string, op ws.OpCode, payload []byte) {
	if b := l.srv.cfg.Broker; b != nil {
		if err := b.Publish(room, MessageType(op), payload); err != nil {
			l.stats.brokerErrors.Add(1)
		}
	}
}
