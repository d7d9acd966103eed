// Command loopcast runs the loopcast WebSocket fan-out server.
//
//	go run ./cmd/loopcast            # :8080 (WebSockets + health), :9090 (admin)
//	go run ./cmd/loopcast -h         # flags; each has a LOOPCAST_* variable
//	go run ./cmd/loopcast --check    # validate the configuration and exit
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
	"syscall"

	"github.com/loopcast/loopcast/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, stop); err != nil {
		var usage usageError
		if errors.As(err, &usage) {
			fmt.Fprintln(os.Stderr, "loopcast:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "loopcast:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag or value: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// run parses the configuration, starts the server and drains it when ctx
// ends (the first SIGTERM or SIGINT). After that, unhook restores default
// signal handling, so a second signal ends the process at once.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, unhook func()) error {
	cfg, opts, err := server.LoadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return usageError{err}
	}
	if opts.Check {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	log := newLogger(stderr, opts)
	srv, err := server.New(cfg, log)
	if err != nil {
		return usageError{err}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	admin := "off"
	if a := srv.AdminAddr(); a != nil {
		admin = a.String()
	}
	log.Info("serving", "addr", srv.Addr().String(), "admin", admin, "event_loops", srv.EventLoops(),
		"ping_interval", cfg.PingInterval, "idle_timeout", cfg.IdleTimeout)

	<-ctx.Done()
	unhook()
	log.Info("draining", "drain_delay", cfg.DrainDelay, "drain_duration", cfg.DrainDuration)
	if err := srv.Shutdown(context.Background()); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func newLogger(w io.Writer, opts server.Options) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(opts.LogLevel))
	ho := &slog.HandlerOptions{Level: level}
	if opts.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
