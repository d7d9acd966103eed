// Package server is loopcast's engine: a WebSocket fan-out server on gnet
// event loops, with an HTTP/1.1 front door that answers every plain GET
// with a health response on the same port, so load balancer probes
// (Azure Application Gateway's default is GET / with Host: localhost)
// pass without probe configuration.
//
// # Use
//
//	cfg := server.DefaultConfig()
//	cfg.Addr = "127.0.0.1:0"
//	srv, err := server.New(cfg, logger) // validates cfg
//	err = srv.Start()                   // returns once listening; srv.Addr() is the port
//	n, err := srv.Publish("room", server.Text, []byte("hello"))
//	err = srv.Shutdown(ctx)             // drain: 503 to probes, then 1001 to every WebSocket
//
// Stats and Rooms report what the admin listener (Config.AdminAddr)
// serves as /stats, /metrics and /rooms. A Broker (package cluster, over
// NATS) fans rooms out across instances.
//
// # Reading the code
//
// A request follows the files in this order: handler.go (gnet's
// callbacks: open, traffic, close, tick) → http.go (request heads, parsed
// in place by internal/reqhead; health answers, rejections, the upgrade)
// → handshake.go (RFC 6455 §4.2 checks, routing) → ws.go (frames, parsed
// in place by internal/frame; control frames, messages) → the fan-out
// engine, internal/fanout (rooms, ordering across loops, the per-cycle
// batch and every write) → conn.go (the connection under it: the raw
// write, closing with a code). loop.go and wheel.go keep per-loop timers;
// limits.go lists every limit that is not a Config field.
//
// A publication, whatever its door (ws.go for raw members, protocol.go
// for loopcast.v1 pub, admin.go for POST /publish, Server.Publish), goes
// through publish.go: mayPublish (the one policy) and route (the one
// place that reads the cluster: the JetStream log, or the room's owner
// loop, which forwards to the other instances); broker.go is what the
// cluster transport (package cluster, through internal/bus) calls back.
// docs/architecture.md draws it on one page.
//
// # Model
//
// There is no goroutine per connection. gnet runs EventLoops epoll loops;
// each connection belongs to one loop for its whole life, and all of its
// state (a conn) is touched only on that loop. Request heads and frames
// are parsed in place from gnet's inbound buffer (Peek, then Discard); a
// head or frame split across reads waits for more bytes.
//
// Rooms are sharded by loop and sequenced by one owner loop, so every
// member sees the same order; a message is encoded once, into one
// buffer shared by all members, and each member gets its part of a
// room's per-cycle batch in one write at the end of the poll cycle. Every
// outbound byte, health answers included, goes through the engine's one
// slow-consumer rule (Config.MaxPending): past it a WebSocket is closed
// with 1013, an HTTP connection is closed, and either is counted once as
// slow_consumer. See package internal/fanout.
//
// Timers (handshake timeout, pings, idle timeout, close grace) live in a
// timing wheel per loop, advanced by gnet's ticker: O(1) per connection,
// no timer or goroutine per connection.
//
// # Buffers
//
// Slices from Peek alias the loop's buffer and never outlive the gnet
// callback that obtained them. Anything that must outlive it (fragments
// of a message) is copied into a buffer from bytebufferpool and returned
// to the pool when the message is complete; the engine copies what it
// publishes. Payloads passed to Publish are copied before it returns.
//
// # Concurrency
//
// Server's methods are safe for concurrent use. Config and Broker
// implementations are read by the event loops; see Broker for what its
// methods may do.
package server
