package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/scenario"
)

func runScenario(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c scenario.Common
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "server `host:port`")
	fs.StringVar(&c.Server, "label", "loopcast", "server name in the result")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "load period (storm: recovery bound per round, default 30s)")
	fs.IntVar(&c.SourceIPs, "source-ips", 16, "spread client sockets over 127.0.0.2..127.0.0.(1+n) (0: kernel's choice)")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 128, "handshakes in flight while connecting")
	fs.IntVar(&c.PID, "pid", 0, "server process id, for RSS and CPU from /proc (0: not measured)")
	jsonOut := fs.String("json", "", "append the JSON result to `file` instead of printing it after the table")
	quiet := fs.Bool("quiet", false, "no progress line")

	var (
		conns, size, inflight, subs, pubs, window, rounds int
		rate                                              float64
		room, path                                        string
		backoff                                           time.Duration
		rooms                                             int
		warm, after                                       time.Duration
		protocol, apiURL, apiKey, addrs                   string
		deflateOn, jsonFill                               bool
	)
	switch name {
	case "echo":
		fs.IntVar(&conns, "c", 50, "connections")
		fs.IntVar(&size, "size", 64, "message size in bytes (min 16)")
		fs.IntVar(&inflight, "inflight", 1, "messages in flight per connection")
	case "fanout":
		fs.IntVar(&subs, "subs", 1000, "subscribers in the room")
		fs.IntVar(&pubs, "pubs", 1, "publishers (also members)")
		fs.IntVar(&size, "size", 64, "message size in bytes (min 16: sequence + send time)")
		fs.IntVar(&window, "window", 64, "closed loop: messages per publisher not yet delivered to every member")
		fs.Float64Var(&rate, "rate", 0, "fixed rate in messages/s over all publishers (0: closed loop)")
		fs.StringVar(&room, "room", "", "room name (default: random)")
		fs.BoolVar(&deflateOn, "deflate", false, "members offer permessage-deflate (compressed messages are inflated and checked)")
		fs.BoolVar(&jsonFill, "json-payload", false, "fill messages after their stamp with market-data JSON instead of zeros")
		fs.StringVar(&addrs, "addrs", "", "comma-separated instances sharing the room over NATS: members round robin over them, the first publisher on the first; overrides --addr")
	case "conns":
		fs.IntVar(&conns, "c", 10000, "connections to hold")
		fs.StringVar(&room, "room", "conns", "room the idle clients join")
		fs.IntVar(&pubs, "subscriptions", 0, "loopcast.v1 clients, each subscribed to this many rooms (0: raw-mode members of --room)")
		fs.BoolVar(&deflateOn, "deflate", false, "clients offer permessage-deflate")
	case "storm":
		fs.IntVar(&conns, "c", 5000, "clients")
		fs.IntVar(&rounds, "rounds", 1, "storms, one after another")
		fs.DurationVar(&backoff, "backoff", 50*time.Millisecond, "first retry delay (doubles to 2s, full jitter)")
		fs.StringVar(&room, "room", "storm", "room the clients join")
	case "resume":
		fs.IntVar(&conns, "c", 10000, "clients, each in one room")
		fs.IntVar(&rooms, "rooms", 100, "rooms")
		fs.Float64Var(&rate, "rate", 200, "messages per second over all rooms")
		fs.DurationVar(&warm, "warm", 2*time.Second, "publishing before the drop")
		fs.DurationVar(&after, "after", 2*time.Second, "publishing after every client caught up")
		fs.DurationVar(&backoff, "backoff", 50*time.Millisecond, "first retry delay (doubles to 2s, full jitter)")
		fs.StringVar(&protocol, "protocol", "loopcast", "loopcast (loopcast.v1) or centrifugo (its JSON protocol, publishing through --api-url)")
		fs.StringVar(&apiURL, "api-url", "", "centrifugo: its HTTP API, http://host:port/api")
		fs.StringVar(&apiKey, "api-key", "", "centrifugo: its HTTP API key")
		fs.StringVar(&addrs, "addrs", "", "comma-separated instances (loopcast over JetStream): clients spread over them, each reconnect to the next; overrides --addr")
	case "health":
		fs.IntVar(&conns, "c", 50, "keep-alive connections")
		fs.StringVar(&path, "path", "/", "request path")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return codeError(1)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if name == "storm" && !durationSet {
		c.Duration = 30 * time.Second
	}
	if !*quiet {
		c.Progress = stderr
	}

	var (
		r   *result.Result
		err error
	)
	switch name {
	case "echo":
		r, err = scenario.Echo(ctx, scenario.EchoConfig{Common: c, Conns: conns, Size: size, Inflight: inflight})
	case "fanout":
		r, err = scenario.Fanout(ctx, scenario.FanoutConfig{Common: c, Subscribers: subs, Publishers: pubs,
			Size: size, Window: window, Rate: rate, Room: room, Deflate: deflateOn, JSON: jsonFill, Addrs: splitList(addrs)})
	case "conns":
		r, err = scenario.Conns(ctx, scenario.ConnsConfig{Common: c, Conns: conns, Room: room, Subscriptions: pubs, Deflate: deflateOn})
	case "storm":
		r, err = scenario.Storm(ctx, scenario.StormConfig{Common: c, Conns: conns, Rounds: rounds, Backoff: backoff, Room: room})
	case "resume":
		r, err = scenario.Resume(ctx, scenario.ResumeConfig{Common: c, Conns: conns, Rooms: rooms, Rate: rate, Warm: warm, After: after,
			Backoff: backoff, Protocol: protocol, APIURL: apiURL, APIKey: apiKey, Addrs: splitList(addrs)})
	case "health":
		r, err = scenario.Health(ctx, scenario.HealthConfig{Common: c, Conns: conns, Path: path})
	}
	if err != nil {
		return err
	}
	return emit(r, *jsonOut, stdout)
}

// emit prints r's table, then its JSON (to stdout, or appended to
// jsonOut); codeError(2) when the run found errors.
func emit(r *result.Result, jsonOut string, stdout io.Writer) error {
	if err := r.WriteTable(stdout); err != nil {
		return err
	}
	if jsonOut != "" {
		f, err := os.OpenFile(jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		werr := r.WriteJSON(f)
		if err := f.Close(); werr == nil {
			werr = err
		}
		if werr != nil {
			return werr
		}
	} else if err := r.WriteJSON(stdout); err != nil {
		return err
	}
	if !r.OK() {
		return codeError(2)
	}
	return nil
}

// splitList splits a comma-separated flag value ("" is none).
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
