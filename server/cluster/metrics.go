package cluster

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// errKind says why a message did not make it between NATS and members.
type errKind uint8

const (
	errTooLarge     errKind = iota // over the NATS server's max_payload; refused
	errBacklog                     // outgoing queue full; refused
	errClosed                      // published after Close
	errPublish                     // nats.go refused it (closed, reconnect buffer full)
	errSubscribe                   // a room subscription failed
	errDeliver                     // a message from NATS the server would not take
	errUnattached                  // a message from NATS before Attach
	errSlowConsumer                // nats.go dropped incoming messages (channel full)
	errAsync                       // another error NATS reported
	numErrKinds
)

var errKindNames = [numErrKinds]string{
	"too_large", "backlog", "closed", "publish", "subscribe", "deliver",
	"unattached", "slow_consumer", "async",
}

func (k errKind) String() string {
	if k < numErrKinds {
		return errKindNames[k]
	}
	return "unknown"
}

type counters struct {
	// gaps counts losses seen in other instances' forwarding orders
	// (each renews a room's epoch here), missed the messages lost.
	gaps, missed  atomic.Int64
	published     atomic.Int64 // messages handed to nats.go
	received      atomic.Int64 // messages from NATS
	subscriptions atomic.Int64 // room subscriptions
	disconnects   atomic.Int64
	reconnects    atomic.Int64
	errors        [numErrKinds]atomic.Int64
}

// Status is the bridge's state, shown by GET /rooms under "cluster".
type Status struct {
	Connected     bool   `json:"connected"`
	State         string `json:"state"`            // nats.go's connection status
	Server        string `json:"server,omitempty"` // connected URL, credentials hidden
	MaxPayload    int64  `json:"max_payload"`      // bytes; 0 before the first connect
	Subscriptions int64  `json:"subscriptions"`    // rooms subscribed (rooms with members here)
	Published     int64  `json:"published"`        // messages sent to other instances
	Received      int64  `json:"received"`         // messages from other instances
	QueuedBytes   int64  `json:"queued_bytes"`     // waiting for NATS
	Disconnects   int64  `json:"disconnects"`
	// Gaps counts losses noticed in other instances' messages (each
	// started a new epoch for its room here), Missed the messages lost.
	Gaps       int64            `json:"gaps"`
	Missed     int64            `json:"missed"`
	Reconnects int64            `json:"reconnects"`
	Errors     map[string]int64 `json:"errors"` // by kind; see errKind
	// Mode is "core"; Delivery says what that means for reconnects.
	Mode     string `json:"mode"`
	Delivery string `json:"delivery"`
}

// Status reports the connection and the counters. Safe for concurrent use.
func (b *Bridge) Status() Status {
	st := Status{
		Connected:     b.nc.IsConnected(),
		State:         b.nc.Status().String(),
		MaxPayload:    b.maxPayload.Load(),
		Subscriptions: b.stats.subscriptions.Load(),
		Published:     b.stats.published.Load(),
		Received:      b.stats.received.Load(),
		QueuedBytes:   b.queued.Load(),
		Disconnects:   b.stats.disconnects.Load(),
		Gaps:          b.stats.gaps.Load(),
		Missed:        b.stats.missed.Load(),
		Reconnects:    b.stats.reconnects.Load(),
		Errors:        make(map[string]int64, numErrKinds),
		Mode:          "core",
		Delivery:      "at most once across instances: each numbers its rooms itself, a resume on another instance gets epoch_changed; use NATS with JetStream to resume anywhere",
	}
	if st.Connected {
		st.Server = b.nc.ConnectedUrlRedacted()
	}
	for k := range numErrKinds {
		st.Errors[k.String()] = b.stats.errors[k].Load()
	}
	return st
}

// ClusterStatus is Status for the server's GET /rooms (bus.Status).
func (b *Bridge) ClusterStatus() any { return b.Status() }

var (
	descConnected   = prometheus.NewDesc("loopcast_cluster_connected", "1 while connected to NATS.", nil, nil)
	descSubs        = prometheus.NewDesc("loopcast_cluster_subscriptions", "Room subscriptions on NATS (rooms with members on this instance).", nil, nil)
	descQueued      = prometheus.NewDesc("loopcast_cluster_queued_bytes", "Bytes waiting to be sent to NATS.", nil, nil)
	descMaxPayload  = prometheus.NewDesc("loopcast_cluster_max_payload_bytes", "The NATS server's max_payload; larger messages stay on this instance.", nil, nil)
	descPublished   = prometheus.NewDesc("loopcast_cluster_published_total", "Messages sent to other instances through NATS.", nil, nil)
	descReceived    = prometheus.NewDesc("loopcast_cluster_received_total", "Messages received from other instances through NATS.", nil, nil)
	descDisconnects = prometheus.NewDesc("loopcast_cluster_disconnects_total", "Times the NATS connection was lost.", nil, nil)
	descReconnects  = prometheus.NewDesc("loopcast_cluster_reconnects_total", "Times the NATS connection came back.", nil, nil)
	descErrors      = prometheus.NewDesc("loopcast_cluster_errors_total", "Messages not carried between instances, by reason.", []string{"reason"}, nil)
	descLost        = prometheus.NewDesc("loopcast_cluster_lost_total", "Losses noticed in messages from other instances (each started a new epoch for its room here, so loopcast.v1 clients are told).", nil, nil)
	descMissed      = prometheus.NewDesc("loopcast_cluster_lost_messages_total", "Messages from other instances that never came (counted from the gaps in their order).", nil, nil)
)

// Describe implements prometheus.Collector.
func (b *Bridge) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(b, ch) }

// Collect implements prometheus.Collector: the server's GET /metrics
// includes these when the bridge is its Broker.
func (b *Bridge) Collect(ch chan<- prometheus.Metric) {
	st := b.Status()
	g := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	n := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	connected := int64(0)
	if st.Connected {
		connected = 1
	}
	g(descConnected, connected)
	g(descSubs, st.Subscriptions)
	g(descQueued, st.QueuedBytes)
	g(descMaxPayload, st.MaxPayload)
	n(descPublished, st.Published)
	n(descReceived, st.Received)
	n(descDisconnects, st.Disconnects)
	n(descReconnects, st.Reconnects)
	n(descLost, st.Gaps)
	n(descMissed, st.Missed)
	for reason, v := range st.Errors {
		n(descErrors, v, reason)
	}
}
