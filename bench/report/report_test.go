package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/bench/result"
)

func TestSplice(t *testing.T) {
	doc := []byte("# B\n\nintro\n\n" + StartMarker + "\nold\n" + EndMarker + "\n\ntail\n")
	out, err := Splice(doc, []byte("\nnew table\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# B\n\nintro\n\n" + StartMarker + "\nnew table\n" + EndMarker + "\n\ntail\n"
	if string(out) != want {
		t.Fatalf("got %q", out)
	}
	again, _ := Splice(out, []byte("new table"))
	if string(again) != want {
		t.Fatal("splicing twice is not stable")
	}
	for _, bad := range []string{"no markers", EndMarker + StartMarker, StartMarker + StartMarker + EndMarker, StartMarker} {
		if _, err := Splice([]byte(bad), nil); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func res(scenario, server string, subs int, rate float64, metrics map[string]float64, lat map[string]result.Latency) result.Result {
	r := result.New(scenario, server, "127.0.0.1:1")
	r.Params = result.Params{Subscribers: subs, Rate: rate, Conns: 100, DurationS: 1, Size: 64, Window: 64}
	r.ElapsedS = 1
	r.Metrics = metrics
	if lat != nil {
		r.Latency = lat
	}
	return *r
}

func TestGenerate(t *testing.T) {
	rs := []result.Result{
		res(result.Echo, "gorilla", 0, 0, map[string]float64{result.MsgsPerSec: 50000}, map[string]result.Latency{result.LatencyRTT: {P99Us: 900}}),
		res(result.Echo, "loopcast", 0, 0, map[string]float64{result.MsgsPerSec: 100000}, map[string]result.Latency{result.LatencyRTT: {P99Us: 300}}),
		res(result.Fanout, "loopcast", 1000, 0, map[string]float64{result.DeliveriesPerSec: 2e6}, nil),
		res(result.Fanout, "bun", 1000, 0, map[string]float64{result.DeliveriesPerSec: 1e6}, nil),
		res(result.Fanout, "bun", 5000, 0, map[string]float64{result.DeliveriesPerSec: 9e5}, nil),
		res(result.Fanout, "loopcast", 1000, 50, map[string]float64{}, map[string]result.Latency{result.LatencyDelivery: {P99Us: 2000}}),
		res(result.Fanout, "bun", 1000, 50, map[string]float64{}, map[string]result.Latency{result.LatencyDelivery: {P99Us: 1000}}),
		res(result.Conns, "loopcast", 0, 0, map[string]float64{result.RSSPerConn: 600, result.HandshakesPerSec: 10000, result.Connected: 100}, nil),
		res(result.Conns, "gorilla", 0, 0, map[string]float64{result.RSSPerConn: 24000, result.HandshakesPerSec: 5000, result.Connected: 100}, nil),
		res(result.Storm, "loopcast", 0, 0, map[string]float64{result.RecoverySeconds: 0.5}, nil),
		res(result.Health, "nbio", 0, 0, map[string]float64{result.RequestsPerSec: 70000}, nil),
	}
	rs[0].Errorf("3 connections | ended early")
	rs[3].Warnf("load generator used 97%% of its 1 CPU(s): the result may be bounded by the client")
	dir := t.TempDir()
	md, err := Generate(rs, Options{ChartDir: dir, ChartLink: "bench/charts/", Env: []string{"CPU: test"}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	for _, want := range []string{
		"| loopcast | 100k | ×1.00 |",                          // baseline row
		"| gorilla | 50k | ×2.00 |",                            // loopcast did twice the round trips
		"| 1k | bun | 1.00M | ×2.00 |",                         // fanout ratio
		"| 5k | bun | 900k | — |",                              // no loopcast row at 5k
		"| 1k | 50 | bun |",                                    // fixed-rate row
		"×2.00 | in order",                                     // loopcast p99 is twice bun's
		"| gorilla | 100 | 5.0k | ×2.00 | 23.4 KiB | ×0.025 |", // memory ratio below 1 = loopcast lower
		"client-bound (97% client CPU)",
		"3 connections / ended early", // pipe escaped
		"![fanout: deliveries/s", "bench/charts/fanout-p99.svg", "conns-memory.svg",
		"- CPU: test",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q\n%s", want, s)
		}
	}
	if strings.Index(s, "| loopcast | 100k") > strings.Index(s, "| gorilla | 50k") {
		t.Error("loopcast should be the first row")
	}
	for _, f := range []string{"fanout-deliveries.svg", "fanout-p99.svg", "conns-memory.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// Without loopcast the report says so.
	md, _ = Generate(rs[3:5], Options{})
	if !strings.Contains(string(md), "loopcast has no results") {
		t.Error("missing-baseline note absent")
	}
}
