// Package flags turns loopcast's command line and LOOPCAST_* environment
// into a server.Config: flag over environment over default. The server
// library takes a Config and reads neither; this package is the
// command's, shared with the tests that check the deploy manifests'
// environment against it.
package flags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loopcast/loopcast/server"
)

// EnvPrefix is the prefix of every environment variable Load reads:
// flag --max-message is LOOPCAST_MAX_MESSAGE.
const EnvPrefix = "LOOPCAST_"

// EnvName returns the environment variable that stands for a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Options that only the command uses, parsed alongside server.Config.
type Options struct {
	// Check validates the configuration (secret files read) and exits.
	Check bool
	// Version prints the build's version and exits.
	Version bool
	// LogFormat is "text" (default) or "json".
	LogFormat string
	// LogLevel is "debug", "info" (default), "warn" or "error".
	LogLevel string
	// NATSURL, when set, fans rooms out across instances over NATS
	// (package cluster builds server.Config.Broker from it). Empty (the
	// default): rooms are in-process only.
	NATSURL string
	// NATSJetStream is "auto" (the default: JetStream when the NATS
	// server has it, else core NATS), "on" or "off".
	NATSJetStream string
	// NATSStream, NATSStorage ("memory" or "file") and NATSReplicas
	// describe the JetStream stream rooms live in.
	NATSStream   string
	NATSStorage  string
	NATSReplicas int
	// Demo serves the demo page at /demo/ and feeds its ticker room.
	Demo bool
}

// ErrUsage wraps every error about the command line or the environment:
// the command prints it with a one-line hint and exits 2.
var ErrUsage = errors.New("usage")

type usageError struct{ error }

func (e usageError) Unwrap() []error { return []error{e.error, ErrUsage} }

// Load builds a server.Config from command-line flags over LOOPCAST_*
// environment variables over server.DefaultConfig. environ holds
// "NAME=value" entries (os.Environ()); it may be nil. A flag given on the
// command line wins over its variable, which is then not even parsed. A
// LOOPCAST_ variable that names no flag is an error that names the
// closest flag (Kubernetes' service links, LOOPCAST_SERVICE_HOST and the
// like, are ignored). The result is validated; every error names the flag
// or variable and what was expected. With -h it prints the flags to out
// and returns flag.ErrHelp.
func Load(args []string, environ []string, out io.Writer) (server.Config, Options, error) {
	cfg := server.DefaultConfig()
	opts := Options{LogFormat: "text", LogLevel: "info", NATSJetStream: "auto", NATSStream: "LOOPCAST", NATSStorage: "memory", NATSReplicas: 1}
	fs := newFlagSet(&cfg, &opts)

	fs.SetOutput(io.Discard) // errors are returned, usage printed only for -h
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fmt.Fprintln(out, "Usage: loopcast [flags]; every flag has a LOOPCAST_* variable (--max-message: LOOPCAST_MAX_MESSAGE).")
			fs.PrintDefaults()
			return cfg, opts, err
		}
		// "flag provided but not defined: -maxmessage": say which one was
		// meant, as for a mistyped LOOPCAST_* variable.
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
			known := map[string]string{}
			fs.VisitAll(func(f *flag.Flag) { known[f.Name] = f.Name })
			return cfg, opts, usageError{fmt.Errorf("--%s is not a loopcast flag; did you mean --%s?", name, closest(name, known))}
		}
		return cfg, opts, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, opts, usageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })

	var errs []error
	known := map[string]string{} // variable -> flag
	fs.VisitAll(func(f *flag.Flag) { known[EnvName(f.Name)] = f.Name })
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || serviceLink.MatchString(name) {
			continue
		}
		fl, ok := known[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s is not a loopcast setting; did you mean %s?", name, closest(name, known)))
		case fl == "check" || fl == "version" || onCommandLine[fl] || value == "":
		default:
			if err := fs.Set(fl, value); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", name, value, err))
			}
		}
	}
	opts.LogFormat, opts.LogLevel = strings.ToLower(opts.LogFormat), strings.ToLower(opts.LogLevel)
	switch opts.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", opts.LogFormat))
	}
	switch opts.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", opts.LogLevel))
	}
	opts.NATSJetStream, opts.NATSStorage = strings.ToLower(opts.NATSJetStream), strings.ToLower(opts.NATSStorage)
	switch opts.NATSJetStream {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Errorf("nats-jetstream %q: want auto, on or off", opts.NATSJetStream))
	}
	switch opts.NATSStorage {
	case "memory", "file":
	default:
		errs = append(errs, fmt.Errorf("nats-storage %q: want memory or file", opts.NATSStorage))
	}
	if opts.NATSReplicas < 1 || opts.NATSReplicas > 5 {
		errs = append(errs, fmt.Errorf("nats-replicas %d: want 1 to 5", opts.NATSReplicas))
	}
	if opts.NATSStream == "" || strings.ContainsAny(opts.NATSStream, " \t.*>/\\") {
		errs = append(errs, fmt.Errorf("nats-stream %q: want a JetStream stream name (no spaces, '.', '*', '>', '/')", opts.NATSStream))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, opts, usageError{err}
	}
	return cfg, opts, nil
}

// newFlagSet declares every flag on cfg and opts.
func newFlagSet(cfg *server.Config, opts *Options) *flag.FlagSet {
	fs := flag.NewFlagSet("loopcast", flag.ContinueOnError)
	str := func(p *string, name, usage string) { fs.Var(stringValue{p}, name, usage) }
	dur := func(p *time.Duration, name, usage string) { fs.Var(durationValue{p}, name, usage) }
	num := func(p *int, name, usage string) { fs.Var(intValue{p}, name, usage) }
	boolean := func(p *bool, name, usage string) { fs.Var(boolValue{p}, name, usage) }

	str(&cfg.Addr, "addr", "main listener: WebSockets and the health responder")
	str(&cfg.AdminAddr, "admin-addr", "admin listener (metrics, publish, rooms, stats); empty disables; beyond loopback it needs a publish token")
	boolean(&cfg.AdminNoToken, "admin-no-token", "accept a non-loopback admin-addr without a publish token (keep others out with a NetworkPolicy)")
	boolean(&cfg.Pprof, "pprof", "serve Go profiles under /debug/pprof/ on the admin listener (never cmdline)")
	num(&cfg.EventLoops, "event-loops", "event loops; 0 = GOMAXPROCS")
	dur(&cfg.PingInterval, "ping-interval", "ping every WebSocket this often")
	dur(&cfg.IdleTimeout, "idle-timeout", "close a WebSocket silent this long")
	dur(&cfg.HandshakeTimeout, "handshake-timeout", "close a connection without a complete request head after this long")
	fs.Var(byteSize{&cfg.MaxMessage}, "max-message", "largest message in bytes (KiB/MiB suffixes); beyond: close 1009")
	fs.Var(byteSize{&cfg.MaxPending}, "max-pending", "unsent bytes per connection (KiB/MiB suffixes); beyond: close 1013")
	fs.Var(stringList{&cfg.AllowedOrigins}, "allowed-origins", "comma-separated allowed origins (https://app.example.com); empty = any")
	boolean(&cfg.AllowNoOrigin, "allow-no-origin", "with allowed-origins, also admit clients that send no Origin (Node, native apps, backends)")
	boolean(&cfg.ClientPublish, "client-publish", "let members publish to their room; false closes publishers with 1008")
	fs.Var(floatValue{&cfg.PublishRate}, "publish-rate", "messages per second each member may publish; beyond the burst: close 1008; 0 = no limit")
	num(&cfg.PublishBurst, "publish-burst", "messages a member may publish at once above publish-rate")
	num(&cfg.MaxRooms, "max-rooms", "rooms (with members or history) at most; an upgrade creating one more: 503; 0 = no cap")
	num(&cfg.MaxSubscriptions, "max-subscriptions", "rooms one loopcast.v1 connection may subscribe to at once")
	fs.Var(floatValue{&cfg.SubscribeRate}, "subscribe-rate", "sub/unsub commands per second per loopcast.v1 connection (burst: max-subscriptions); 0 = no limit")
	fs.Var(stringList{&cfg.PresenceRooms}, "presence-rooms", "comma-separated room patterns (chat-*) whose users are listed by their token's sub (presence); empty = off")
	dur(&cfg.PresenceGrace, "presence-grace", "a user whose last connection in a presence room left stays listed this long (a reconnect within it is no leave and no join)")
	num(&cfg.PresenceMaxList, "presence-max-list", "users one presence answer lists at most (it says the total)")
	num(&cfg.PresenceMaxRooms, "presence-max-rooms", "presence rooms one connection is listed in at most; one more sub: too_many_presence_rooms")
	fs.Var(byteSize{&cfg.PresenceMaxInfo}, "presence-max-info", "largest info claim of a token, in bytes (at most 1024); a larger one: 401")
	str(&cfg.HookConnectURL, "hook-connect-url", "the application's connect hook: every upgrade is POSTed there (JSON) and waits for allow/deny; empty = off")
	str(&cfg.HookPublishURL, "hook-publish-url", "the application's publish hook: every message a client publishes is POSTed there first (it may replace the payload); empty = off")
	str(&cfg.HookSubscribeURL, "hook-subscribe-url", "the application's subscribe hook: every loopcast.v1 sub is POSTed there first; empty = off")
	dur(&cfg.HookTimeout, "hook-timeout", "one hook call at most; past it the call fails (denied unless hook-fail-open names the hook)")
	dur(&cfg.HookConnectTimeout, "hook-connect-timeout", "the connect hook's timeout; 0 = hook-timeout")
	dur(&cfg.HookSubscribeTimeout, "hook-subscribe-timeout", "the subscribe hook's timeout; 0 = hook-timeout")
	dur(&cfg.HookPublishTimeout, "hook-publish-timeout", "the publish hook's timeout; 0 = hook-timeout")
	num(&cfg.HookWorkers, "hook-workers", "hook calls in flight per hook at most (16 times as many wait; more fail at once)")
	fs.Var(stringList{&cfg.HookHeaders}, "hook-headers", "comma-separated request headers the connect hook receives")
	fs.Var(stringList{&cfg.HookFailOpen}, "hook-fail-open", "comma-separated hooks (connect, subscribe) that allow when their call fails; the others deny")
	num(&cfg.HistoryMessages, "history-messages", "messages each room keeps for clients that resume; 0 = no history")
	dur(&cfg.HistoryTTL, "history-ttl", "how long a message stays in its room's history")
	fs.Var(byteSize{&cfg.HistoryMaxBytes}, "history-max-bytes", "all rooms' history at most, in bytes (KiB/MiB/GiB suffixes)")
	boolean(&cfg.Compression, "compression", "accept permessage-deflate: room messages compressed once for every client that offers it")
	fs.Var(byteSize{&cfg.CompressionMinSize}, "compression-min-size", "smallest message compressed, in bytes")
	num(&cfg.CompressionLevel, "compression-level", "DEFLATE level: 1 (fastest) to 9 (smallest), -2 Huffman only")
	str(&cfg.PublishToken, "publish-token", "bearer token for the admin listener's publish, rooms and stats (visible in ps: prefer publish-token-file)")
	str(&cfg.PublishTokenFile, "publish-token-file", "file holding the publish token (a mounted Secret)")
	str(&cfg.JWTSecret, "jwt-secret", "require an HS256 JWT on upgrades; at least 32 bytes (visible in ps: prefer jwt-secret-file)")
	str(&cfg.JWTSecretFile, "jwt-secret-file", "file holding the HS256 JWT secret (a mounted Secret)")
	str(&cfg.JWTPublicKey, "jwt-public-key", "require an RS256/ES256 JWT verified by this PEM public key (file path or PEM text)")
	str(&cfg.JWTJWKSURL, "jwt-jwks-url", "require RS256/ES256 JWTs signed by a key of this JWKS (Microsoft Entra ID: https://login.microsoftonline.com/TENANT/discovery/v2.0/keys)")
	dur(&cfg.JWTJWKSRefresh, "jwt-jwks-refresh", "fetch the JWKS again this often (key rotation)")
	dur(&cfg.JWTLeeway, "jwt-leeway", "clock skew allowed for a token's exp and nbf, at most 5m")
	boolean(&cfg.JWTAllowNoExp, "jwt-allow-no-exp", "accept tokens without exp (valid forever)")
	str(&cfg.JWTAudience, "jwt-audience", "required aud claim; empty = not checked")
	str(&cfg.JWTIssuer, "jwt-issuer", "required iss claim; empty = not checked")
	num(&cfg.MaxConns, "max-conns", "WebSocket sessions at most; beyond: 503; 0 = no cap")
	num(&cfg.MaxConnsPerIP, "max-conns-per-ip", "WebSocket sessions per client address (IPv6: per conns-per-ipv6-prefix); beyond: 429; 0 = no cap")
	num(&cfg.ConnsPerIPv6Prefix, "conns-per-ipv6-prefix", "prefix length by which max-conns-per-ip counts IPv6 clients, 1 to 128 (64: a /64 is one client; 128: each address)")
	fs.Var(stringList{&cfg.TrustedProxies}, "trusted-proxies", "comma-separated CIDRs whose X-Forwarded-For names the client (the gateway's subnet; never 0.0.0.0/0 with max-conns-per-ip)")
	dur(&cfg.DrainDelay, "drain-delay", "on SIGTERM, keep serving this long after readiness fails")
	dur(&cfg.DrainDuration, "drain-duration", "spread the 1001 closes of a drain over this long")
	str(&cfg.PeersDNS, "peers-dns", "DNS name resolving to every instance (a headless Service); more than one without nats-url: warn that rooms are split; empty = not checked")
	dur(&cfg.PeersInterval, "peers-interval", "look peers-dns up again this often")
	str(&opts.NATSURL, "nats-url", "NATS URL(s), comma-separated, to fan rooms out across replicas; empty = rooms in-process only")
	str(&opts.NATSJetStream, "nats-jetstream", "auto: rooms in a JetStream stream when NATS has JetStream (resume on any replica), else core NATS (at most once across replicas); on; off")
	str(&opts.NATSStream, "nats-stream", "the JetStream stream rooms live in (created if missing)")
	str(&opts.NATSStorage, "nats-storage", "the stream's storage when loopcast creates it: memory or file")
	num(&opts.NATSReplicas, "nats-replicas", "the stream's replicas when loopcast creates it (3 on a 3-node NATS cluster)")
	boolean(&opts.Check, "check", "validate the configuration (and read secret files), then exit")
	boolean(&opts.Demo, "demo", "serve a demo page at /demo/ (chat and a live ticker over loopcast.v1) and publish its ticker")
	boolean(&opts.Version, "version", "print the version and exit")
	str(&opts.LogFormat, "log-format", "text or json")
	str(&opts.LogLevel, "log-level", "debug, info, warn or error")
	return fs
}

// serviceLink matches the variables Kubernetes sets for every Service in
// the namespace (enableServiceLinks): a Service named loopcast, or
// loopcast-admin, yields LOOPCAST_SERVICE_HOST, LOOPCAST_PORT_8080_TCP and
// so on. They are not loopcast's settings and are ignored.
var serviceLink = regexp.MustCompile(`_SERVICE_(HOST|PORT(_[A-Z0-9_]+)?)$|_PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?$`)

// closest returns the known variable nearest to name by edit distance.
func closest(name string, known map[string]string) string {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names) // ties resolve the same way every time
	best, bestD := "", -1
	for _, k := range names {
		if d := editDistance(name, k); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two ASCII strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Flag values whose errors say what was expected (the flag package's own
// say only "parse error").

type stringValue struct{ p *string }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v stringValue) Set(s string) error { *v.p = s; return nil }

type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration: want a number with a unit, like 20s, 500ms or 2m", s)
	}
	*v.p = d
	return nil
}

type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number: want digits, like 4 or 0", s)
	}
	*v.p = n
	return nil
}

type floatValue struct{ p *float64 }

func (v floatValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return fmt.Errorf("%q is not a number: want one like 50 or 0.5", s)
	}
	*v.p = f
	return nil
}

type boolValue struct{ p *bool }

func (v boolValue) IsBoolFlag() bool { return true }

func (v boolValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a boolean: want true or false", s)
	}
	*v.p = b
	return nil
}

// byteSize is a flag.Value for sizes: "1048576", "64KiB", "1MiB", "1M".
type byteSize struct{ p *int }

func (b byteSize) String() string {
	if b.p == nil {
		return ""
	}
	return strconv.Itoa(*b.p)
}

func (b byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b.p = n
	return nil
}

func parseByteSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size: want bytes, or a number with KiB, MiB or GiB, like 1MiB", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// stringList is a flag.Value for comma-separated lists.
type stringList struct{ p *[]string }

func (l stringList) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l stringList) Set(s string) error {
	*l.p = nil
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l.p = append(*l.p, f)
		}
	}
	return nil
}
