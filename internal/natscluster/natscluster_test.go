//go:build linux

package natscluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterFaults starts a real three-node cluster, makes an R3 stream,
// and takes its leader out both ways: killed and restarted, frozen and
// continued; the stream always gets a leader again.
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts three nats-servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout+2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Options{Dir: dir, Bin: bin})
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Names(), ","); got != "n1,n2,n3" || strings.Count(c.URLs(), "nats://") != 3 || c.URL("n9") != "" {
		t.Fatalf("names %s, urls %s", got, c.URLs())
	}
	if c.MetaLeader() == "" {
		t.Fatal("no meta leader after Start")
	}
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	leader := func() string {
		t.Helper()
		l := ""
		if err := Poll(ctx, ReadyTimeout, "a leader of S", func() bool { l = c.StreamLeader("S"); return l != "" }); err != nil {
			t.Fatal(err)
		}
		return l
	}

	l := leader()
	if err := c.Kill(l); err != nil {
		t.Fatal(err)
	}
	if c.PID(l) != 0 || c.Healthy(l) {
		t.Fatalf("%s killed, yet pid %d, healthy %v", l, c.PID(l), c.Healthy(l))
	}
	if err := c.Restart(ctx, l); err != nil {
		t.Fatal(err)
	}
	if c.PID(l) == 0 || len(c.StreamReplicas("S")) != 3 {
		t.Fatalf("after the restart: pid %d, replicas %v", c.PID(l), c.StreamReplicas("S"))
	}

	l = leader()
	if err := c.Stop(l); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.StreamReplicas("S")[l]; ok {
		t.Fatalf("frozen %s still counted as live", l)
	}
	if err := c.Cont(l); err != nil {
		t.Fatal(err)
	}
	leader()
	if err := c.Kill("n9"); err == nil {
		t.Fatal("killed a node that does not exist")
	}
}
