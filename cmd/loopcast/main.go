// Command loopcast runs the loopcast WebSocket fan-out server.
//
//	go run ./cmd/loopcast            # :8080 (WebSockets + health), 127.0.0.1:9090 (admin)
//	go run ./cmd/loopcast -h         # flags; each has a LOOPCAST_* variable
//	go run ./cmd/loopcast --check    # validate the configuration and exit
//	go run ./cmd/loopcast --version  # the build's version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/loopcast/loopcast/cmd/loopcast/flags"
	"github.com/loopcast/loopcast/server"
	"github.com/loopcast/loopcast/server/cluster"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	keepSysmonAwake()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr, stop); err != nil {
		fmt.Fprintln(os.Stderr, "loopcast:", err)
		var usage usageError
		if errors.As(err, &usage) {
			fmt.Fprintln(os.Stderr, "loopcast: run 'loopcast -h' for the flags; each has a LOOPCAST_* variable")
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a bad flag or value: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// run parses the configuration, starts the server and drains it when ctx
// ends (the first SIGTERM or SIGINT). After that, unhook restores default
// signal handling, so a second signal ends the process at once.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer, unhook func()) error {
	cfg, opts, err := flags.Load(args, environ, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return usageError{err}
	}
	if opts.Version {
		fmt.Fprintln(stdout, version())
		return nil
	}
	if opts.NATSURL != "" {
		if err := cluster.ValidateURL(opts.NATSURL); err != nil {
			return usageError{fmt.Errorf("%s: %w", flags.EnvName("nats-url"), err)}
		}
	}
	if opts.Check {
		// New reads the secret files and checks the keys; it does not listen.
		if _, err := server.New(cfg, nil); err != nil {
			return usageError{err}
		}
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	log := newLogger(stderr, opts)

	// The NATS bridge or JetStream log comes first (it is part of the
	// server's configuration) and goes last, after the WebSockets are
	// closed. An unreachable NATS does not stop the start: core NATS
	// serves local rooms while the bridge keeps trying; JetStream keeps
	// the instance unready until it read the stream back.
	var bridge *cluster.Bridge
	var stream *cluster.Stream
	closeBridge := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if bridge != nil {
			if err := bridge.Close(ctx); err != nil {
				log.Warn("NATS drain cut short", "err", err)
			}
		}
		if stream != nil {
			_ = stream.Close(ctx)
		}
	}
	clusterMode := "off"
	if opts.NATSURL != "" {
		if stream, err = newStream(opts, cfg, log); err != nil {
			return usageError{err}
		}
		if stream != nil {
			cfg.Broker = stream
			clusterMode = "jetstream (resume on any replica)"
		} else {
			if bridge, err = newBridge(opts.NATSURL, cfg, log); err != nil {
				return usageError{err}
			}
			cfg.Broker = bridge
			clusterMode = "nats core (at most once across replicas: a resume on another replica gets epoch_changed)"
		}
	}
	if opts.Demo {
		secret, generated, err := demoSetup(&cfg)
		if err != nil {
			return err
		}
		if generated {
			log.Warn("demo: JWT verification is on with a secret made for this process, so the demo can name its users; clients get a token for the demo.* rooms from /demo/token?user=NAME")
		} else if secret == "" {
			log.Warn("demo: the tokens are verified by a key the demo cannot sign with (jwt-secret-file, jwt-public-key or jwt-jwks-url): /demo/token is off and the demo's users are not named")
		}
		cfg.Pages = demoPages(secret)
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		closeBridge()
		return usageError{err}
	}
	if err := srv.Start(); err != nil {
		closeBridge()
		return err
	}
	admin := "off"
	if a := srv.AdminAddr(); a != nil {
		admin = a.String()
	}
	log.Info("serving", "addr", srv.Addr().String(), "admin", admin, "event_loops", srv.EventLoops(),
		"ping_interval", cfg.PingInterval, "idle_timeout", cfg.IdleTimeout, "cluster", clusterMode, "godebug", os.Getenv("GODEBUG"))
	if opts.Demo {
		log.Info("demo: open http://" + srv.Addr().String() + "/demo/")
		dctx, stopDemo := context.WithCancel(ctx)
		defer stopDemo()
		go runDemoTicker(dctx, srv, log)
	}

	if err := awaitStop(ctx, srv); err != nil {
		log.Error("event loops stopped; exiting so the pod is restarted", "err", err)
		closeBridge()
		return err
	}
	unhook()
	log.Info("draining", "drain_delay", cfg.DrainDelay, "drain_duration", cfg.DrainDuration)
	err = srv.Shutdown(context.Background())
	closeBridge()
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// stopper is what awaitStop watches: *server.Server.
type stopper interface {
	Done() <-chan struct{}
	Err() error
}

// awaitStop returns nil when ctx ends (the first SIGTERM or SIGINT), or
// an error when the server stopped serving without being asked (its
// event loops failed): the command then exits non-zero, so Kubernetes
// restarts the pod instead of keeping a process that accepts nothing.
func awaitStop(ctx context.Context, srv stopper) error {
	select {
	case <-ctx.Done():
		return nil
	case <-srv.Done():
		err := srv.Err()
		if err == nil {
			err = errors.New("the event loops stopped")
		}
		return fmt.Errorf("serving stopped: %w", err)
	}
}

// newStream connects to NATS for --nats-url in JetStream mode: nil
// (without an error) when --nats-jetstream is off, or auto and the NATS
// server has no JetStream (then core NATS it is, said loudly).
func newStream(opts flags.Options, cfg server.Config, log *slog.Logger) (*cluster.Stream, error) {
	if opts.NATSJetStream == "off" {
		return nil, nil
	}
	storage := jetstream.MemoryStorage
	if opts.NATSStorage == "file" {
		storage = jetstream.FileStorage
	}
	st, err := cluster.NewStream(cluster.StreamOptions{
		URL: opts.NATSURL, Name: connName(), Logger: log, MaxMessage: cfg.MaxMessage,
		Stream: opts.NATSStream, Storage: storage, Replicas: opts.NATSReplicas,
		HistoryMessages: cfg.HistoryMessages, HistoryTTL: cfg.HistoryTTL, HistoryBytes: int64(cfg.HistoryMaxBytes),
	})
	if err != nil {
		return nil, err
	}
	if opts.NATSJetStream == "on" {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsProbeTimeout)
	defer cancel()
	switch err := st.Probe(ctx); {
	case errors.Is(err, cluster.ErrNoJetStream):
		st.CloseUnstarted()
		log.Warn("the NATS server has no JetStream: rooms fan out over core NATS, at most once across replicas (a client that reconnects to another replica cannot resume); enable JetStream in NATS, or set --nats-jetstream=off to silence this")
		return nil, nil
	case err != nil:
		log.Warn("NATS unreachable or not answering; using JetStream, not ready until it is back and the stream is read back", "err", err)
	}
	return st, nil
}

// natsProbeTimeout bounds how long --nats-jetstream=auto waits for NATS
// to say whether it has JetStream.
const natsProbeTimeout = 10 * time.Second

func connName() string {
	name := "loopcast"
	if h, err := os.Hostname(); err == nil {
		name += " " + h
	}
	return name
}

// newBridge connects to NATS for --nats-url; the connection name carries
// the host name (the pod's), which NATS's monitoring shows.
func newBridge(url string, cfg server.Config, log *slog.Logger) (*cluster.Bridge, error) {
	return cluster.New(cluster.Options{URL: url, Name: connName(), Logger: log, MaxMessage: cfg.MaxMessage})
}

func newLogger(w io.Writer, opts flags.Options) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(opts.LogLevel))
	ho := &slog.HandlerOptions{Level: level}
	if opts.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// version describes the build from its module information: the module
// version (a tag, or "(devel)" in a work tree), the VCS revision and time
// when the binary was built from a checkout, and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "loopcast (no build information)"
	}
	v := "loopcast " + bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision", "vcs.time", "vcs.modified":
			v += " " + s.Key + "=" + s.Value
		}
	}
	return v + " " + bi.GoVersion
}
