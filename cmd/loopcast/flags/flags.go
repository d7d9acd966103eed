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
	"strings"

	"github.com/loopcast/loopcast/server"
)

// EnvPrefix is the prefix of every environment variable Load reads:
// flag --max-message is LOOPCAST_MAX_MESSAGE.
const EnvPrefix = "LOOPCAST_"

// EnvName returns the environment variable that stands for a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// byteSize is a flag.Value for sizes: "1048576", "64KiB", "1MiB", "1M".
type byteSize struct{ p *int }

func (b byteSize) String() string {
	if b.p == nil {
		return ""
	}
	return fmt.Sprint(*b.p)
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
	var n int
	if _, err := fmt.Sscan(t, &n); err != nil || n < 0 || fmt.Sprint(n) != t {
		return 0, fmt.Errorf("%q is not a size (want bytes, or a number with KiB, MiB or GiB)", s)
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

// Options that only the command uses, parsed alongside server.Config.
type Options struct {
	// Check validates the configuration and exits (--check).
	Check bool
	// LogFormat is "text" (default) or "json".
	LogFormat string
	// LogLevel is "debug", "info" (default), "warn" or "error".
	LogLevel string
	// NATSURL, when set, fans rooms out across instances over NATS
	// (package cluster builds server.Config.Broker from it). Empty (the
	// default): rooms are in-process only.
	NATSURL string
}

// Load builds a server.Config from command-line flags over LOOPCAST_*
// environment variables over server.DefaultConfig. getenv may be nil (no
// environment). The result is validated; errors name the flag and its
// environment variable. With -h it returns flag.ErrHelp after printing
// usage to out.
func Load(args []string, getenv func(string) string, out io.Writer) (server.Config, Options, error) {
	cfg := server.DefaultConfig()
	opts := Options{LogFormat: "text", LogLevel: "info"}
	fs := flag.NewFlagSet("loopcast", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "main listener: WebSockets and the health responder")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "admin listener (metrics, publish, rooms, pprof); empty disables")
	fs.IntVar(&cfg.EventLoops, "event-loops", cfg.EventLoops, "event loops; 0 = GOMAXPROCS")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", cfg.PingInterval, "ping every WebSocket this often")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "close a WebSocket silent this long")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", cfg.HandshakeTimeout, "close a connection without a complete request head after this long")
	fs.Var(byteSize{&cfg.MaxMessage}, "max-message", "largest message in bytes (KiB/MiB suffixes); beyond: close 1009")
	fs.Var(byteSize{&cfg.MaxPending}, "max-pending", "unsent bytes per connection (KiB/MiB suffixes); beyond: close 1013")
	fs.Var(stringList{&cfg.AllowedOrigins}, "allowed-origins", "comma-separated allowed Origin values; empty = any")
	fs.BoolVar(&cfg.ClientPublish, "client-publish", cfg.ClientPublish, "let members publish to their room; false closes publishers with 1008")
	fs.StringVar(&cfg.PublishToken, "publish-token", cfg.PublishToken, "bearer token for POST /publish on the admin listener; empty = none")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", cfg.JWTSecret, "require an HS256 JWT (Authorization: Bearer or ?token=) on upgrades")
	fs.StringVar(&cfg.JWTPublicKey, "jwt-public-key", cfg.JWTPublicKey, "require an RS256/ES256 JWT verified by this PEM public key (file path or PEM text)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "WebSocket sessions at most; beyond: 503; 0 = no cap")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", cfg.MaxConnsPerIP, "WebSocket sessions per client address; beyond: 429; 0 = no cap")
	fs.Var(stringList{&cfg.TrustedProxies}, "trusted-proxies", "comma-separated CIDRs whose X-Forwarded-For names the client (the gateway's subnet)")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "on SIGTERM, keep serving this long after readiness fails")
	fs.DurationVar(&cfg.DrainDuration, "drain-duration", cfg.DrainDuration, "spread the 1001 closes of a drain over this long")
	fs.StringVar(&opts.NATSURL, "nats-url", opts.NATSURL, "NATS URL(s), comma-separated, to fan rooms out across replicas; empty = rooms in-process only")
	fs.BoolVar(&opts.Check, "check", false, "validate the configuration and exit")
	fs.StringVar(&opts.LogFormat, "log-format", opts.LogFormat, "text or json")
	fs.StringVar(&opts.LogLevel, "log-level", opts.LogLevel, "debug, info, warn or error")

	// Environment first, so flags given on the command line win.
	var errs []error
	if getenv != nil {
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "check" {
				return
			}
			if v := getenv(EnvName(f.Name)); v != "" {
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %v", EnvName(f.Name), v, err))
				}
			}
		})
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, opts, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
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
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cfg, opts, errors.Join(errs...)
}
