//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/scenario"
	"github.com/loopcast/loopcast/internal/natscluster"
)

// clusterTestTimeout bounds one tiny cluster run (a few seconds of load,
// plus starting three nats-servers and two instances); it only keeps a
// broken run from hanging the test binary.
const clusterTestTimeout = 3 * time.Minute

// TestMain removes the binaries the cluster test built.
func TestMain(m *testing.M) {
	code := m.Run()
	if clusterBins.dir != "" {
		os.RemoveAll(clusterBins.dir)
	}
	os.Exit(code)
}

// clusterBins are loopcast and nats-server, built once per test binary.
var clusterBins struct {
	once          sync.Once
	dir, lc, nats string
	err           error
}

func buildClusterBins(t *testing.T) (lc, nats string) {
	t.Helper()
	clusterBins.once.Do(func() {
		dir, err := os.MkdirTemp("", "loopcast-bench-test-")
		if err != nil {
			clusterBins.err = err
			return
		}
		clusterBins.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), natscluster.BuildTimeout)
		defer cancel()
		clusterBins.lc = filepath.Join(dir, "loopcast")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", clusterBins.lc, "github.com/loopcast/loopcast/cmd/loopcast").CombinedOutput(); err != nil {
			clusterBins.err = fmt.Errorf("go build loopcast: %v\n%s", err, out)
			return
		}
		clusterBins.nats, clusterBins.err = natscluster.Build(ctx, dir)
	})
	if clusterBins.err != nil {
		t.Fatal(clusterBins.err)
	}
	return clusterBins.lc, clusterBins.nats
}

// TestClusterTiny runs `loopcast-bench cluster` at a tiny size with one
// fault (every socket reset: every client resumes on the other
// instance), so that the subcommand cannot rot: three nats-servers, two
// instances, 40 clients in 5 rooms each.
func TestClusterTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nats-servers and two loopcast instances")
	}
	lc, nats := buildClusterBins(t)
	ctx, cancel := context.WithTimeout(context.Background(), clusterTestTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"cluster", "--quiet", "--loopcast-bin", lc, "--nats-server-bin", nats,
		"--instances", "2", "--conns", "40", "--medium", "20", "--small", "5", "--source-ips", "4",
		"--rate", "40", "--broadcast-rate", "4", "--faults", "d", "--warm", "1s", "--observe", "1s",
		"--server-cpus", "", "--timeout", clusterTestTimeout.String()}, &out, &errb)
	if err != nil {
		t.Fatalf("cluster: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r result.Result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("last line is not the JSON result: %v\n%s", err, out.String())
	}
	if r.Scenario != result.Cluster || !r.OK() || len(r.Faults) != 3 {
		t.Fatalf("result %+v\n%s", r, out.String())
	}
	m, d := r.Metrics, r.Faults[1].Metrics
	for name, want := range map[string]float64{
		scenario.Reconnects:       40, // every client once, in fault d
		scenario.ResumesRecovered: 40 * 5,
		scenario.EpochChanges:     0,
		"epochs_seen":             1,
		result.Missing:            0,
		result.Duplicates:         0,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
	if m[result.Deliveries] == 0 || m[scenario.AttemptsAcked] == 0 || d[scenario.HealSeconds] <= 0 || d[scenario.Reconnects] != 40 {
		t.Errorf("deliveries %v, acked %v, fault d healed after %v s with %v reconnects", m[result.Deliveries],
			m[scenario.AttemptsAcked], d[scenario.HealSeconds], d[scenario.Reconnects])
	}
	for _, want := range []string{"per fault", "d: every client socket closed", "result  OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestClusterBadFlags: a fault letter that does not exist is refused
// before anything starts.
func TestClusterBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"cluster", "--faults", "x"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "abcd") {
		t.Fatalf("err = %v", err)
	}
}
