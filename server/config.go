package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Config holds every knob of a Server. Build one with DefaultConfig,
// adjust fields, then call Validate (the command's flags fill it too);
// New validates again. A zero duration or size is invalid unless the field
// says what zero means.
type Config struct {
	// Addr is the main listener: WebSocket upgrades and the health
	// responder share it. Default ":8080" (the port Application Gateway
	// probes and proxies to). Use "127.0.0.1:0" in tests and read Addr()
	// back.
	Addr string

	// AdminAddr is the admin listener (metrics, publish, rooms, pprof).
	// Default ":9090"; empty disables it. Never expose it through the
	// Ingress.
	AdminAddr string

	// EventLoops is the number of gnet event loops. Zero (the default)
	// means GOMAXPROCS, which follows the CPU affinity of the process.
	EventLoops int

	// PingInterval is how often the server pings every WebSocket.
	// Default 20s: below Application Gateway's default 30s request
	// timeout, which also ends idle WebSocket sessions.
	PingInterval time.Duration

	// IdleTimeout closes a WebSocket that sent nothing (not even a pong)
	// for this long; the peer is presumed gone, so the TCP connection is
	// closed without a close handshake and counted. Default 45s. Must
	// exceed PingInterval so a live peer always has a chance to answer.
	IdleTimeout time.Duration

	// HandshakeTimeout closes a connection that has not sent a complete
	// request head this long after it connected or after its previous
	// keep-alive request (slowloris). Default 10s.
	HandshakeTimeout time.Duration

	// MaxMessage is the largest data message accepted, in bytes, summed
	// over fragments. A larger one closes the connection with 1009, as
	// soon as a frame header declares it. Default 1 MiB; at most 1 GiB.
	MaxMessage int

	// MaxPending is how many unsent bytes a connection may queue on the
	// server, for every kind of output: room messages, echoes, pings,
	// pongs and HTTP answers. Bytes that would pass it are not queued and
	// the connection is closed as a slow consumer: a WebSocket with 1013,
	// an HTTP connection (pipelining without reading) by closing TCP;
	// counted once as slow_consumer. Nothing unsent means anything fits,
	// so a message larger than MaxPending still reaches a reading peer.
	// Default 1 MiB.
	MaxPending int

	// AllowedOrigins restricts the Origin header of upgrades. Empty (the
	// default) allows any origin, and requests without one. Entries are
	// compared case-insensitively with the whole header value
	// ("https://app.example.com"); "*" allows any.
	AllowedOrigins []string

	// ClientPublish lets members publish to their room. Default true.
	// When false a data frame from a client closes it with 1008.
	ClientPublish bool

	// PublishToken, when set, is the bearer token POST /publish/{room}
	// requires on the admin listener. Default empty: no token.
	PublishToken string

	// DrainDelay is how long Shutdown keeps serving existing connections
	// after the health responder turned to 503, so the gateway stops
	// routing new clients here first. Default 0 in the library; the
	// command sets it from --drain-delay.
	DrainDelay time.Duration

	// JWTSecret, when set, requires an HS256 JWT on every upgrade, from
	// "Authorization: Bearer" or the token query parameter: 401 without
	// a valid one, 403 when its rooms claim does not allow the room.
	JWTSecret string

	// JWTPublicKey, when set, accepts RS256 or ES256 tokens signed by the
	// matching private key: a PEM file path, or the PEM text itself.
	JWTPublicKey string

	// MaxConns caps WebSocket sessions; upgrades beyond get 503. Zero
	// (the default) means no cap besides the open-file limit.
	MaxConns int

	// MaxConnsPerIP caps WebSocket sessions per client address; upgrades
	// beyond get 429. Zero (the default) means no cap. Behind a proxy,
	// list it in TrustedProxies or every client shares its address.
	MaxConnsPerIP int

	// TrustedProxies are CIDRs (Application Gateway's subnet) whose
	// X-Forwarded-For header names the client for MaxConnsPerIP.
	TrustedProxies []string

	// Broker, when set, fans rooms out across instances (see Broker).
	// Not a flag: the command builds one from --nats-url.
	Broker Broker

	// DrainDuration spreads the 1001 "going away" closes of Shutdown over
	// this long, with jitter, so clients do not all reconnect at once.
	// Zero closes all at once.
	DrainDuration time.Duration
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		Addr:             ":8080",
		AdminAddr:        ":9090",
		PingInterval:     20 * time.Second,
		IdleTimeout:      45 * time.Second,
		HandshakeTimeout: 10 * time.Second,
		MaxMessage:       1 << 20,
		MaxPending:       1 << 20,
		ClientPublish:    true,
	}
}

// Validate reports every invalid field at once, one per line.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("addr %q: want host:port, e.g. :8080", c.Addr)
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			bad("admin-addr %q: want host:port, e.g. :9090, or empty to disable", c.AdminAddr)
		}
	}
	if c.EventLoops < 0 || c.EventLoops > maxEventLoops {
		bad("event-loops %d: want 0 (GOMAXPROCS) to %d", c.EventLoops, maxEventLoops)
	}
	if c.PingInterval <= 0 {
		bad("ping-interval %s: must be positive", c.PingInterval)
	}
	if c.IdleTimeout <= 0 {
		bad("idle-timeout %s: must be positive", c.IdleTimeout)
	} else if c.PingInterval > 0 && c.IdleTimeout <= c.PingInterval {
		bad("idle-timeout %s must exceed ping-interval %s, or live peers are closed before they can answer a ping", c.IdleTimeout, c.PingInterval)
	}
	if c.HandshakeTimeout <= 0 {
		bad("handshake-timeout %s: must be positive", c.HandshakeTimeout)
	}
	if c.MaxMessage <= 0 || c.MaxMessage > maxMessageCeiling {
		bad("max-message %d: want 1 to %d bytes", c.MaxMessage, maxMessageCeiling)
	}
	if c.MaxPending <= 0 {
		bad("max-pending %d: must be positive", c.MaxPending)
	}
	for _, o := range c.AllowedOrigins {
		if o == "" || strings.ContainsAny(o, " \t,") {
			bad("allowed-origins entry %q: want an origin like https://app.example.com or *", o)
		}
	}
	if c.MaxConns < 0 || c.MaxConnsPerIP < 0 {
		bad("max-conns %d and max-conns-per-ip %d: must not be negative (0 = no cap)", c.MaxConns, c.MaxConnsPerIP)
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad("trusted-proxies entry %q: want a CIDR such as 10.1.0.0/24", p)
		}
	}
	if _, err := newAuthenticator(*c); err != nil {
		bad("%v", err)
	}
	if c.DrainDelay < 0 || c.DrainDuration < 0 {
		bad("drain-delay %s and drain-duration %s: must not be negative", c.DrainDelay, c.DrainDuration)
	}
	return errors.Join(errs...)
}
