// Command loopcast-bench is loopcast's load generator: it runs one scenario
// against one WebSocket server (loopcast or a peer in bench/peers) and
// prints a human table and a JSON result. bench/run drives it for a whole
// comparison; `loopcast-bench report` turns the JSON results into the
// results section of BENCHMARKS.md and its charts.
//
//	loopcast-bench echo    [flags]   round trips on /echo
//	loopcast-bench fanout  [flags]   one room, N subscribers, publishers (over several instances with --addrs)
//	loopcast-bench conns   [flags]   idle connections, handshakes/s, server RSS
//	loopcast-bench storm   [flags]   everyone drops and reconnects at once
//	loopcast-bench health  [flags]   plain GETs on the health responder
//	loopcast-bench resume  [flags]   loopcast.v1 (or Centrifugo) clients dropped at once resume
//	loopcast-bench cluster [flags]   starts NATS and loopcast instances itself, injects failover faults
//	loopcast-bench report  [flags]   results -> BENCHMARKS.md + charts
//
// Exit status: 0 clean run, 1 could not run (e.g. server down, bad flags),
// 2 the run finished but found errors (gaps, closes, failures).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ce codeError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		os.Exit(int(ce))
	default:
		fmt.Fprintln(os.Stderr, "loopcast-bench:", err)
		os.Exit(1)
	}
}

// codeError is an exit status whose message was already printed.
type codeError int

func (c codeError) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return codeError(1)
		}
		return nil
	}
	switch args[0] {
	case "report":
		return runReport(args[1:], stdout, stderr)
	case "echo", "fanout", "conns", "storm", "health", "resume":
		return runScenario(ctx, args[0], args[1:], stdout, stderr)
	case "cluster":
		return runCluster(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "loopcast-bench: unknown command %q\n\n%s", args[0], usage)
	return codeError(1)
}

const usage = `usage: loopcast-bench <scenario|report> [flags]

scenarios against a running server (run 'loopcast-bench <scenario> -h' for flags):
  echo     c connections on /echo, messages in flight each; msg/s and round-trip percentiles
  fanout   N subscribers and publishers in one room (--addrs: spread over instances sharing it
           over NATS); deliveries/s, latency, order and gap checks
  conns    hold N idle connections; handshakes/s and server RSS per connection (--pid)
  storm    N clients drop and reconnect at once; time until all are back, failures
  health   GETs on the health responder; requests/s and latency
  resume   loopcast.v1 (or Centrifugo) clients in many rooms all dropped at once resume
           from history; lost, duplicated, not recovered, time to catch up
scenario that starts its own servers:
  cluster  a NATS cluster with JetStream and loopcast instances (built from this module),
           clients in many rooms, publishers with msgids; NATS leader killed and frozen,
           an instance killed, every socket reset; acknowledgement stalls, unknown
           publishes and their fate, order, gaps, duplicates, epochs, resumes
report     write the results section of BENCHMARKS.md and the charts from JSON results
`
