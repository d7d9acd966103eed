package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"strconv"
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

	// AdminAddr is the admin listener (metrics, publish, rooms, stats,
	// pprof). Default "127.0.0.1:9090": loopback only. Empty disables it.
	// An address beyond loopback needs a publish token (PublishToken or
	// PublishTokenFile), or AdminNoToken, or Validate refuses it: anyone
	// who reaches the port could publish to every room. Never expose it
	// through the Ingress.
	AdminAddr string

	// AdminNoToken accepts a non-loopback AdminAddr without a publish
	// token: POST /publish, /rooms and /stats are then open to anyone who
	// reaches the port (a NetworkPolicy must keep everyone else out).
	// Default false.
	AdminNoToken bool

	// Pprof serves Go's runtime profiles under /debug/pprof/ on the admin
	// listener (never /debug/pprof/cmdline, which would show the command
	// line and so any secret given as a flag), behind the publish token
	// when one is set, like /stats. Default false.
	Pprof bool

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
	// origins, scheme://host[:port] ("https://app.example.com"), compared
	// case-insensitively with the whole header value;
	// "https://*.example.com" allows every subdomain of example.com (not
	// example.com itself) with that scheme and port; "*" allows any.
	// Others get 403, whose body shows the Origin received.
	AllowedOrigins []string

	// AllowNoOrigin, with AllowedOrigins set, also admits upgrades that
	// carry no Origin header. Browsers always send one; Node, native apps
	// and backend services usually do not, and could send any value they
	// like anyway: Origin protects browser users from other sites' pages,
	// it does not authenticate clients. Default false: 403.
	AllowNoOrigin bool

	// ClientPublish lets members publish to their room. Default true.
	// When false a data frame from a client closes it with 1008.
	ClientPublish bool

	// PublishToken, when set, is the bearer token the admin listener
	// requires for POST /publish/{room}, GET /rooms and GET /stats
	// (/metrics stays open). Default empty: no token, allowed only on a
	// loopback AdminAddr (see AdminNoToken).
	PublishToken string

	// PublishTokenFile names a file holding the publish token (a mounted
	// Kubernetes Secret); New reads it, trimming surrounding white space.
	// It wins over PublishToken. Default empty.
	PublishTokenFile string

	// PublishRate limits the messages each member may publish, per
	// second (a token bucket of PublishBurst, O(1) per message, no timer):
	// one message to a room of 15,000 members is 15,000 deliveries. A
	// message beyond it closes the member with 1008 and is counted as
	// rate_limited. Default 50 (enough for chat and 20-30 Hz presence
	// updates); zero means no limit. Echo sessions are not limited.
	PublishRate float64

	// PublishBurst is how many messages a member may publish at once
	// above PublishRate. Default 100; at least 1 when PublishRate is set.
	PublishBurst int

	// MaxRooms caps the rooms (with members, or with history). An
	// upgrade that would create one more gets 503 with Retry-After and is
	// counted; a loopcast.v1 sub or pub gets too_many_rooms; an admin
	// publish 503. Default 100,000 (a room costs a few hundred bytes
	// besides its history); zero means no cap.
	MaxRooms int

	// MaxSubscriptions caps the rooms one loopcast.v1 connection is
	// subscribed to at once; one more sub gets too_many_subscriptions.
	// Default 128.
	MaxSubscriptions int

	// SubscribeRate limits the sub and unsub commands of each loopcast.v1
	// connection, per second, in a token bucket that holds
	// MaxSubscriptions (a reconnecting client resubscribes everything at
	// once). Beyond it a command gets rate_limited. Default 20; zero
	// means no limit.
	SubscribeRate float64

	// PresenceRooms are the rooms whose members are listed by user
	// (presence): patterns as in a token's rooms claim ("chat-*", "*").
	// A member is listed by its token's sub claim, with its info claim;
	// members without a token's sub are counted (occupancy) but not
	// listed. Default none: presence off.
	PresenceRooms []string

	// PresenceGrace: a user whose last connection in a presence room left
	// stays listed this long, and its leave is announced only then; a
	// connection of the user that comes back meanwhile (a reconnect after
	// a gateway drop, on any instance) makes no leave and no join.
	// Default 10 s.
	PresenceGrace time.Duration

	// PresenceMaxList caps the users one presence answer lists (it says
	// the total). Default 1,000.
	PresenceMaxList int

	// PresenceMaxRooms caps the presence rooms one connection is listed
	// in; a sub to one more gets too_many_presence_rooms. Default 16.
	PresenceMaxRooms int

	// PresenceMaxInfo caps a token's info claim (its JSON, in bytes); a
	// token with a larger one is refused at the upgrade (401). Default
	// 512, at most 1,024.
	PresenceMaxInfo int

	// HookConnectURL, when set, is the application's connect hook: every
	// WebSocket upgrade (after the token, when one is required) is
	// POSTed there as JSON and waits for its answer, which allows (and
	// may name the user, its info, its rooms, publish and subs claims
	// and an expiry) or refuses with a status. Default none.
	HookConnectURL string

	// HookSubscribeURL, when set, is the application's subscribe hook:
	// every loopcast.v1 sub (not the token's subs) and every raw member's
	// join (before its 101) is POSTed there and placed only if it allows; answers may be cached per user and room
	// for the cache_ttl the backend gives. Default none.
	HookSubscribeURL string

	// HookPublishURL, when set, is the application's publish hook: every
	// message a client publishes (loopcast.v1 pub, a raw member's
	// message) is POSTed there and routed only if it allows; the answer
	// may replace the payload. A connection's messages keep their order
	// (one call at a time per connection, at most 16 waiting). Default
	// none.
	HookPublishURL string

	// HookTimeout bounds one hook call; a call past it fails. Default 2 s.
	// HookConnectTimeout, HookSubscribeTimeout and HookPublishTimeout,
	// when set, replace it for that hook.
	HookTimeout                                                  time.Duration
	HookConnectTimeout, HookSubscribeTimeout, HookPublishTimeout time.Duration

	// HookWorkers is the calls in flight per hook at most (a pool of
	// workers and connections per backend); 16 times as many wait, more
	// fail at once. Default 64.
	HookWorkers int

	// HookHeaders are the request headers the connect hook receives (the
	// application's session cookie, say). Default Cookie.
	HookHeaders []string

	// HookFailOpen names the hooks ("connect", "subscribe") that allow
	// when their call fails (timeout, error, a status other than 200, too
	// many waiting); the others refuse: 503 for connect, err unavailable
	// for sub. Default none: every hook fails closed.
	HookFailOpen []string

	// HistoryMessages is the most messages each room keeps for
	// loopcast.v1 clients that resume (sub with an epoch and offset).
	// Default 1,000: with HistoryTTL, a client that reconnects within 5
	// minutes misses nothing from a room publishing up to 3 messages a
	// second (100 s at 10 a second). Zero turns history off: a resume
	// then succeeds only if nothing was published meanwhile. With history,
	// rooms outlive their last member until their history expired, and
	// publishing to a room nobody is in keeps the message for later.
	HistoryMessages int

	// HistoryTTL is how long a message stays in its room's history.
	// Default 5m.
	HistoryTTL time.Duration

	// HistoryMaxBytes bounds all rooms' history together, in bytes
	// (payload buffers plus 64 bytes a message); each event loop keeps
	// its share for the rooms it owns, and a room that passes it drops its
	// own oldest messages. Default 128 MiB.
	HistoryMaxBytes int

	// Compression accepts permessage-deflate (RFC 7692) when a client
	// offers it (browsers always do): room messages of at least
	// CompressionMinSize bytes go to those clients compressed, each
	// compressed once per message for all of them (no context takeover
	// on either side, so a connection keeps no compression window and
	// costs nothing more). Client messages may come compressed; they are
	// inflated within MaxMessage. Default true: feeds and dashboards are
	// mostly JSON, which compresses 3-10x, and the cost is per message,
	// not per member.
	Compression bool

	// CompressionMinSize is the smallest message compressed, in bytes;
	// smaller ones go uncompressed (DEFLATE gains little on them and
	// costs the same setup). Default 256.
	CompressionMinSize int

	// CompressionLevel is the DEFLATE level, 1 (fastest, the default) to
	// 9 (smallest), or -2 (Huffman only).
	CompressionLevel int

	// Pages are static files the main listener serves to GET and HEAD at
	// exactly their path ("/demo/"), instead of the health answer; every
	// other path is answered as before. Responses are built once in New.
	// Not a flag: the command's --demo fills it. Default none.
	Pages map[string]Page

	// DrainDelay is how long Shutdown keeps serving existing connections
	// after the health responder turned to 503, so the gateway stops
	// routing new clients here first. Default 0 in the library; the
	// command sets it from --drain-delay.
	DrainDelay time.Duration

	// JWTSecret, when set, requires an HS256 JWT on every upgrade, from
	// "Authorization: Bearer" or the token query parameter: 401 without
	// a valid one, 403 when its rooms claim does not allow the room. At
	// least minJWTSecretBytes (32) bytes, or Validate refuses it: RFC 7518
	// §3.2 requires an HS256 key at least as long as the hash output, and
	// a shorter one can be found offline from any token signed with it.
	// One source of keys only: not together with JWTPublicKey or
	// JWTJWKSURL.
	JWTSecret string

	// JWTSecretFile names a file holding JWTSecret (a mounted Kubernetes
	// Secret); New reads it, trimming surrounding white space, and holds
	// it to the same rules. It wins over JWTSecret. Default empty.
	JWTSecretFile string

	// JWTJWKSURL, when set, accepts RS256 and ES256 tokens signed by the
	// keys this JSON Web Key Set publishes, chosen by kid: how Microsoft
	// Entra ID (https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys)
	// and most identity providers publish keys. The set is fetched when
	// the server starts and every JWTJWKSRefresh; tokens are never
	// fetched for on the event loop. Not together with JWTPublicKey or
	// JWTSecret.
	JWTJWKSURL string

	// JWTJWKSRefresh is how often the key set is fetched again, so keys
	// added to it (rotation) are accepted and removed ones refused.
	// Default 5m.
	JWTJWKSRefresh time.Duration

	// JWTLeeway is the clock skew allowed for a token's exp and nbf.
	// Default 5s; at most maxJWTLeeway (5m), or Validate refuses it: a
	// leeway extends every token's life by as much, and clocks kept by
	// NTP agree within a second or so. The ceiling is the widest skew
	// common verifiers tolerate by default (Kerberos; Microsoft's
	// TokenValidationParameters.ClockSkew).
	JWTLeeway time.Duration

	// JWTAllowNoExp accepts tokens without an exp claim, which would
	// otherwise be valid forever. Default false: 401.
	JWTAllowNoExp bool

	// JWTAudience and JWTIssuer, when set, must match the token's aud
	// (one of its values) and iss claims. Default empty: not checked.
	JWTAudience, JWTIssuer string

	// JWTPublicKey, when set, accepts RS256 or ES256 tokens signed by the
	// matching private key: a PEM file path, or the PEM text itself. Not
	// together with JWTSecret or JWTJWKSURL.
	JWTPublicKey string

	// MaxConns caps WebSocket sessions; upgrades beyond get 503. Zero
	// (the default) means no cap besides the open-file limit.
	MaxConns int

	// MaxConnsPerIP caps WebSocket sessions per client address; upgrades
	// beyond get 429. Zero (the default) means no cap. Behind a proxy,
	// list it in TrustedProxies or every client shares its address. An
	// IPv6 client counts by its ConnsPerIPv6Prefix prefix.
	MaxConnsPerIP int

	// ConnsPerIPv6Prefix is the prefix length, in bits, by which
	// MaxConnsPerIP counts IPv6 clients: every address of one prefix is
	// one client. Default 64: a site or a phone is given at least a /64
	// (RFC 6177, RFC 8273) and picks addresses in it freely, so per /128
	// one client could open as many sessions as it likes. 1 to 128; 128
	// counts each IPv6 address apart. IPv4 clients count per address.
	ConnsPerIPv6Prefix int

	// TrustedProxies are CIDRs (Application Gateway's subnet) whose
	// X-Forwarded-For header names the client for MaxConnsPerIP: the
	// right-most entry, over every X-Forwarded-For line, that is not in
	// these CIDRs. With MaxConnsPerIP set, Validate refuses a prefix of
	// length 0 (0.0.0.0/0, ::/0): every client would then be a trusted
	// proxy and could name any address it likes.
	TrustedProxies []string

	// Broker, when set, fans rooms out across instances (see Broker).
	// Not a flag: the command builds one from --nats-url.
	Broker Broker

	// PeersDNS, when set, is a DNS name that resolves to every instance's
	// address (in Kubernetes a headless Service with
	// publishNotReadyAddresses, deploy/base/service-peers.yaml). The server
	// looks it up at start and every PeersInterval: more than one address
	// without a Broker means each room's members are split across
	// instances, which it logs as a warning and reports as
	// loopcast_rooms_split 1. Empty (the default): not checked.
	PeersDNS string

	// PeersInterval is how often PeersDNS is looked up again. Default 30 s.
	PeersInterval time.Duration

	// Resolver looks PeersDNS up; nil means net.DefaultResolver. Not a flag.
	Resolver *net.Resolver

	// DrainDuration spreads the 1001 "going away" closes of Shutdown over
	// this long, with jitter, so clients do not all reconnect at once.
	// Zero closes all at once.
	DrainDuration time.Duration
}

// Limits on the JWT settings, which Validate enforces.
const (
	// minJWTSecretBytes is the shortest JWTSecret accepted: RFC 7518
	// §3.2, "A key of the same size as the hash output (for instance, 256
	// bits for "HS256") or larger MUST be used with this algorithm."
	minJWTSecretBytes = 32

	// maxPresenceInfo is the largest PresenceMaxInfo: what the cluster's
	// presence batches carry per user (occupancy.MaxInfo).
	maxPresenceInfo = 1024

	// maxJWTLeeway is the largest JWTLeeway accepted (see Config.JWTLeeway).
	maxJWTLeeway = 5 * time.Minute
)

// Page is a file for Config.Pages: Body, or, when Dynamic is set, what
// Dynamic returns for the request's query (after '?', without it; valid
// during the call only). Dynamic runs on the event loop for each request
// (answers are built per request, Cache-Control: no-store): keep it to a
// few microseconds, and never let it block.
type Page struct {
	ContentType string
	Body        []byte
	Dynamic     func(query []byte) []byte
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		Addr:             ":8080",
		AdminAddr:        "127.0.0.1:9090",
		PingInterval:     20 * time.Second,
		IdleTimeout:      45 * time.Second,
		HandshakeTimeout: 10 * time.Second,
		MaxMessage:       1 << 20,
		MaxPending:       1 << 20,
		ClientPublish:    true,
		PublishRate:      50,
		PublishBurst:     100,
		MaxRooms:         100_000,
		MaxSubscriptions: 128,
		SubscribeRate:    20,
		PresenceGrace:    10 * time.Second,
		PresenceMaxList:  1000,
		PresenceMaxRooms: 16,
		PresenceMaxInfo:  512,
		HookTimeout:      2 * time.Second,
		HookWorkers:      64,
		HookHeaders:      []string{"Cookie"},
		HistoryMessages:  1000,
		HistoryTTL:       5 * time.Minute,
		HistoryMaxBytes:  128 << 20,

		Compression:        true,
		CompressionMinSize: 256,
		CompressionLevel:   1,
		JWTLeeway:          5 * time.Second,
		ConnsPerIPv6Prefix: 64,
		JWTJWKSRefresh:     5 * time.Minute,
		PeersInterval:      30 * time.Second,
	}
}

// Validate reports every invalid field at once, one per line.
func (c *Config) Validate() error {
	v := &validation{}
	c.validateListeners(v)
	c.validateTiming(v)
	c.validateLimits(v)
	c.validateAdmission(v)
	c.validateAuth(v)
	return errors.Join(v.errs...)
}

// validation collects every invalid field, one error each.
type validation struct{ errs []error }

func (v *validation) bad(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

// validateListeners checks the two listeners and the admin port's token
// rule.
func (c *Config) validateListeners(v *validation) {
	bad := v.bad
	addr, addrErr := parseListenAddr(c.Addr)
	if addrErr != nil {
		bad("addr %q: %v; want host:port, e.g. :8080", c.Addr, addrErr)
	}
	if c.AdminAddr != "" {
		admin, err := parseListenAddr(c.AdminAddr)
		switch {
		case err != nil:
			bad("admin-addr %q: %v; want host:port, e.g. 127.0.0.1:9090, or empty to disable", c.AdminAddr, err)
		case addrErr == nil && addr.overlaps(admin):
			bad("admin-addr %q and addr %q: both on port %d; give the admin listener its own port", c.AdminAddr, c.Addr, admin.port)
		case !admin.loopback() && c.PublishToken == "" && c.PublishTokenFile == "" && !c.AdminNoToken:
			bad("admin-addr %q is not loopback and no publish token is set: anyone who can reach the port could publish to every room; "+
				"set --publish-token-file (a mounted Secret), or --admin-no-token if a NetworkPolicy keeps everyone else out", c.AdminAddr)
		}
	}
}

// validateTiming checks the event loops, the timeouts and the drain.
func (c *Config) validateTiming(v *validation) {
	bad := v.bad
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
	if c.PeersDNS != "" && c.PeersInterval <= 0 {
		bad("peers-interval %s: must be positive", c.PeersInterval)
	}
	if c.DrainDelay < 0 || c.DrainDuration < 0 {
		bad("drain-delay %s and drain-duration %s: must not be negative", c.DrainDelay, c.DrainDuration)
	}
}

// validateLimits checks the sizes, rates, rooms, history and compression.
func (c *Config) validateLimits(v *validation) {
	bad := v.bad
	if c.MaxMessage <= 0 || c.MaxMessage > maxMessageCeiling {
		bad("max-message %d: want 1 to %d bytes", c.MaxMessage, maxMessageCeiling)
	}
	if c.MaxPending <= 0 {
		bad("max-pending %d: must be positive", c.MaxPending)
	}
	if c.PublishRate < 0 || c.PublishBurst < 0 || (c.PublishRate > 0 && c.PublishBurst < 1) {
		bad("publish-rate %g and publish-burst %d: want a rate of 0 (no limit) or more, and a burst of at least 1 with a rate", c.PublishRate, c.PublishBurst)
	}
	if c.MaxSubscriptions < 1 || c.MaxSubscriptions > maxSubscriptionsCeiling {
		bad("max-subscriptions %d: must be 1 to %d", c.MaxSubscriptions, maxSubscriptionsCeiling)
	}
	if c.SubscribeRate < 0 {
		bad("subscribe-rate %g: must not be negative (0 = no limit)", c.SubscribeRate)
	}
	if c.HistoryMessages < 0 || c.HistoryMessages > maxHistoryMessages {
		bad("history-messages %d: must be 0 (off) to %d", c.HistoryMessages, maxHistoryMessages)
	}
	if c.HistoryMessages > 0 && (c.HistoryTTL <= 0 || c.HistoryMaxBytes <= 0) {
		bad("history-ttl %s and history-max-bytes %d: must be positive with history-messages %d", c.HistoryTTL, c.HistoryMaxBytes, c.HistoryMessages)
	}
	if c.CompressionMinSize < 0 {
		bad("compression-min-size %d: must not be negative", c.CompressionMinSize)
	}
	if c.CompressionLevel != -2 && (c.CompressionLevel < 1 || c.CompressionLevel > 9) {
		bad("compression-level %d: want 1 (fastest) to 9 (smallest), or -2 (Huffman only)", c.CompressionLevel)
	}
	if c.MaxRooms < 0 {
		bad("max-rooms %d: must not be negative (0 = no cap)", c.MaxRooms)
	}
	c.validatePresence(v)
	c.validateHooks(v)
}

// validateHooks checks the backend hooks.
func (c *Config) validateHooks(v *validation) {
	bad := v.bad
	for name, u := range map[string]string{"hook-connect-url": c.HookConnectURL, "hook-subscribe-url": c.HookSubscribeURL, "hook-publish-url": c.HookPublishURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("%s %q: want an http:// or https:// URL", name, u)
		}
	}
	if c.HookTimeout <= 0 {
		bad("hook-timeout %s: must be positive", c.HookTimeout)
	}
	if c.HookConnectTimeout < 0 || c.HookSubscribeTimeout < 0 || c.HookPublishTimeout < 0 {
		bad("hook-connect-timeout, hook-subscribe-timeout and hook-publish-timeout: must not be negative (0: hook-timeout)")
	}
	if c.HookWorkers < 1 || c.HookWorkers > 4096 {
		bad("hook-workers %d: must be 1 to 4096", c.HookWorkers)
	}
	for _, h := range c.HookFailOpen {
		if h != "connect" && h != "subscribe" && h != "publish" {
			bad("hook-fail-open %q: name connect, subscribe or publish", h)
		}
	}
}

// validatePresence checks the presence settings.
func (c *Config) validatePresence(v *validation) {
	bad := v.bad
	for _, p := range c.PresenceRooms {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			bad("presence-rooms %q: not a room pattern (path.Match syntax, as in a token's rooms claim)", p)
		}
	}
	if c.PresenceGrace < 0 {
		bad("presence-grace %s: must not be negative", c.PresenceGrace)
	}
	if c.PresenceMaxList < 1 {
		bad("presence-max-list %d: must be at least 1", c.PresenceMaxList)
	}
	if c.PresenceMaxRooms < 1 {
		bad("presence-max-rooms %d: must be at least 1", c.PresenceMaxRooms)
	}
	if c.PresenceMaxInfo < 0 || c.PresenceMaxInfo > maxPresenceInfo {
		bad("presence-max-info %d: must be 0 to %d bytes", c.PresenceMaxInfo, maxPresenceInfo)
	}
}

// validateAdmission checks who may connect: origins, connection caps,
// trusted proxies.
func (c *Config) validateAdmission(v *validation) {
	bad := v.bad
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			bad("allowed-origins entry %q: %v; want an origin like https://app.example.com (scheme://host[:port]), or *", o, err)
		}
	}
	if c.MaxConns < 0 || c.MaxConnsPerIP < 0 {
		bad("max-conns %d and max-conns-per-ip %d: must not be negative (0 = no cap)", c.MaxConns, c.MaxConnsPerIP)
	}
	if c.ConnsPerIPv6Prefix < 1 || c.ConnsPerIPv6Prefix > 128 {
		bad("conns-per-ipv6-prefix %d: want a prefix length from 1 to 128 (64, the default, counts each /64 as one client; 128 each address)", c.ConnsPerIPv6Prefix)
	}
	for _, p := range c.TrustedProxies {
		prefix, err := netip.ParsePrefix(p)
		switch {
		case err != nil:
			bad("trusted-proxies entry %q: want a CIDR such as 10.1.0.0/24", p)
		case prefix.Bits() == 0 && c.MaxConnsPerIP > 0:
			bad("trusted-proxies %s trusts every address: any client could write the address it likes into X-Forwarded-For "+
				"and so escape max-conns-per-ip %d; list only your gateway's subnet (Application Gateway's, such as 10.225.0.0/16)", p, c.MaxConnsPerIP)
		}
	}
}

// validateAuth checks the JWT settings: one key source, the secret's
// length, the leeway, and that the keys load.
func (c *Config) validateAuth(v *validation) {
	bad := v.bad
	if c.JWTLeeway < 0 || c.JWTLeeway > maxJWTLeeway {
		bad("jwt-leeway %s: want 0 to %s; a leeway keeps every token valid that much longer past its exp, "+
			"so fix clock skew at its source (NTP) and keep the leeway to seconds", c.JWTLeeway, maxJWTLeeway)
	}
	secret := "jwt-secret"
	if c.JWTSecretFile != "" {
		secret = "jwt-secret-file" // wins over jwt-secret
	}
	var keySources []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{secret, c.JWTSecret != "" || c.JWTSecretFile != ""},
		{"jwt-public-key", c.JWTPublicKey != ""},
		{"jwt-jwks-url", c.JWTJWKSURL != ""},
	} {
		if k.set {
			keySources = append(keySources, k.name)
		}
	}
	if len(keySources) > 1 {
		// With a secret and a public key both, a token is accepted when
		// signed either way: HS256 by whoever holds the shared secret
		// (every service that verifies tokens), RS256/ES256 by the
		// identity provider; which one the operator meant is unknown.
		bad("%s: give one source of JWT keys, not %d; together every token signed with any of them would be accepted "+
			"(an HS256 secret is shared with every verifier, who could then mint tokens); keep the one your identity provider signs with", strings.Join(keySources, " and "), len(keySources))
	}
	if c.JWTSecretFile == "" { // the file's secret is checked as it is read (readSecretFiles)
		if err := checkJWTSecret("jwt-secret", c.JWTSecret); err != nil {
			v.errs = append(v.errs, err)
		}
	}
	if len(keySources) <= 1 {
		if _, err := newAuthenticator(*c); err != nil {
			bad("%v", err)
		}
	}
}

// listenAddr is a parsed listener address.
type listenAddr struct {
	host string // "" for every interface
	port int
}

// parseListenAddr checks host:port as a listener takes it: a port from 0
// to 65535 (0 picks a free one), a host that is empty, an IP or a name.
func parseListenAddr(s string) (listenAddr, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return listenAddr{}, errors.New("not host:port")
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return listenAddr{}, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return listenAddr{host: host, port: port}, nil
}

// wildcard reports whether the address listens on every interface.
func (a listenAddr) wildcard() bool {
	return a.host == "" || a.host == "0.0.0.0" || a.host == "::"
}

// loopback reports whether only this machine can reach the address.
func (a listenAddr) loopback() bool {
	if a.host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(a.host)
	return err == nil && ip.IsLoopback()
}

// overlaps reports whether two listeners would want the same port on a
// shared interface (port 0 picks a free port, so never).
func (a listenAddr) overlaps(b listenAddr) bool {
	return a.port != 0 && a.port == b.port && (a.wildcard() || b.wildcard() || a.host == b.host)
}

// checkOrigin accepts "*" or an origin as browsers send it in the Origin
// header: scheme://host[:port], no path, query or user. "localhost" alone,
// say, never matches a browser.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	switch {
	case err != nil || u.Scheme == "" || u.Host == "":
		return errors.New("not scheme://host")
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return errors.New("an origin has no path, query or user")
	case strings.Contains(strings.TrimPrefix(u.Hostname(), "*."), "*"):
		return errors.New("a wildcard stands only for the subdomains, as the whole first label: https://*.example.com")
	case u.Port() != "":
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			return errors.New("bad port")
		}
	}
	return nil
}

// checkJWTSecret refuses an HS256 secret shorter than minJWTSecretBytes;
// flag names where it came from. The error never shows the secret.
func checkJWTSecret(flag, secret string) error {
	if n := len(secret); n > 0 && n < minJWTSecretBytes {
		return fmt.Errorf("%s: the HS256 secret is %d bytes; it must be at least %d bytes (256 bits, RFC 7518 section 3.2), "+
			"or it can be guessed offline from any token signed with it; generate one with: openssl rand -base64 32", flag, n, minJWTSecretBytes)
	}
	return nil
}

// readSecretFiles replaces PublishToken and JWTSecret by the contents of
// PublishTokenFile and JWTSecretFile when those are set, and holds the
// JWT secret to checkJWTSecret (Validate cannot: it reads no file). The
// error names the file, never its contents.
func (c *Config) readSecretFiles() error {
	for _, f := range []struct {
		flag, path string
		dst        *string
	}{
		{"publish-token-file", c.PublishTokenFile, &c.PublishToken},
		{"jwt-secret-file", c.JWTSecretFile, &c.JWTSecret},
	} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return fmt.Errorf("%s: %w", f.flag, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return fmt.Errorf("%s: %s is empty", f.flag, f.path)
		}
		if f.dst == &c.JWTSecret {
			if err := checkJWTSecret(f.flag+" "+f.path, v); err != nil {
				return err
			}
		}
		*f.dst = v
	}
	return nil
}
