package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/loopcast/loopcast/bench/scenario"
)

// runCluster runs `loopcast-bench cluster`: unlike the other scenarios it
// starts its own servers, so it has flags of its own.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, clusterUsage)
		fs.PrintDefaults()
	}
	var c scenario.ClusterConfig
	fs.StringVar(&c.Server, "label", "loopcast", "server name in the result")
	fs.IntVar(&c.SourceIPs, "source-ips", 16, "spread client sockets over 127.0.0.2..127.0.0.(1+n) (0: kernel's choice)")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 128, "handshakes in flight while connecting")
	fs.IntVar(&c.Instances, "instances", 3, "loopcast processes")
	fs.IntVar(&c.NATSNodes, "nats-nodes", 3, "nats-server processes (the stream's replicas: up to 3)")
	fs.IntVar(&c.Conns, "conns", 2000, "loopcast.v1 clients, spread over the instances")
	fs.IntVar(&c.RoomsPerConn, "rooms-per-conn", 5, "subscriptions per client: the room with everyone, a medium room, then small rooms")
	fs.IntVar(&c.MediumMembers, "medium", 500, "members of a medium room")
	fs.IntVar(&c.SmallMembers, "small", 20, "members of a small room")
	fs.Float64Var(&c.Rate, "rate", 200, "messages/s over every room but the room with everyone")
	fs.Float64Var(&c.BroadcastRate, "broadcast-rate", 5, "messages/s to the room with everyone")
	fs.IntVar(&c.PublishersPerInstance, "publishers-per-instance", 1, "publishing clients on each instance")
	fs.IntVar(&c.Size, "size", 64, "payload bytes")
	fs.StringVar(&c.Faults, "faults", "abcd", "faults in order: a (kill the NATS stream leader), b (freeze it), c (kill an instance), d (reset every socket); none")
	fs.DurationVar(&c.Warm, "warm", 10*time.Second, "publishing before the first fault")
	fs.DurationVar(&c.Observe, "observe", 10*time.Second, "publishing after each fault healed")
	fs.DurationVar(&c.FaultTimeout, "fault-timeout", time.Minute, "bound of each fault's healing")
	fs.DurationVar(&c.NATSRestartAfter, "nats-restart-after", 5*time.Second, "fault a: restart the killed NATS server after")
	fs.DurationVar(&c.FreezeFor, "freeze-for", 8*time.Second, "fault b: SIGCONT the stopped NATS server after")
	fs.DurationVar(&c.InstanceRestartAfter, "instance-restart-after", 2*time.Second, "fault c: restart the killed instance after")
	fs.DurationVar(&c.AnswerBound, "answer-bound", 15*time.Second, "a pub not answered within this is a failure")
	fs.DurationVar(&c.RetryFor, "retry-for", time.Minute, "a message is retried this long, then a failure")
	fs.DurationVar(&c.Backoff, "backoff", 50*time.Millisecond, "clients' first reconnect delay (full jitter, doubling to 2s)")
	fs.StringVar(&c.ServerCPUs, "server-cpus", defaultServerCPUs(), "taskset CPU list for loopcast and nats-server (\"\": not pinned); run loopcast-bench itself under taskset -c 1")
	fs.StringVar(&c.LoopcastBin, "loopcast-bin", "", "loopcast binary (default: go build ./cmd/loopcast)")
	fs.StringVar(&c.NATSBin, "nats-server-bin", "", "nats-server binary (default: go build at go.mod's version)")
	fs.StringVar(&c.Dir, "dir", "", "work directory: binaries, NATS stores, logs, metrics (default: a temporary one, removed unless the run failed)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary work directory")
	loopcastArgs := fs.String("loopcast-args", "", "extra flags for every loopcast instance, space-separated")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "bound of the whole run")
	jsonOut := fs.String("json", "", "append the JSON result to `file` instead of printing it after the table")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return codeError(1)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cluster: unexpected argument %q", fs.Arg(0))
	}
	c.LoopcastArgs = strings.Fields(*loopcastArgs)
	if !*quiet {
		c.Progress = stderr
	}
	r, err := scenario.Cluster(ctx, c)
	if err != nil {
		return err
	}
	return emit(r, *jsonOut, stdout)
}

// defaultServerCPUs pins the servers to CPU 0 where there is another CPU
// for the load and taskset to do it.
func defaultServerCPUs() string {
	if runtime.NumCPU() < 2 {
		return ""
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return ""
	}
	return "0"
}

const clusterUsage = `usage: loopcast-bench cluster [flags]

Starts a NATS cluster with JetStream (nats-server processes, the room stream
at 3 replicas on file storage) and loopcast instances on it (processes, each
on its own port, every NATS URL), connects loopcast.v1 clients spread over
the instances, publishes with msgids at a fixed rate, injects the faults in
order, and checks every delivery and every publish. Everything it started is
stopped at the end, on an error and on Ctrl-C.

Exit status: 0 clean, 1 could not run, 2 a delivery fault, an epoch change,
a pub not answered within --answer-bound, a publish never acknowledged, a
resume not recovered, or a fault that did not heal.

flags:
`
