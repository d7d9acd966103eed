package result

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/bench/hist"
)

func sample() *Result {
	r := New(Fanout, "loopcast", "127.0.0.1:8080")
	r.Params = Params{Subscribers: 1000, Publishers: 1, Size: 64, Window: 64, DurationS: 10}
	r.ElapsedS = 10.02
	r.Metrics[DeliveriesPerSec] = 1.5e6
	r.Metrics[Gaps] = 0
	var h hist.Histogram
	for i := int64(1); i <= 1000; i++ {
		h.Record(i * 1000)
	}
	r.Latency[LatencyDelivery] = FromHist(&h)
	return r
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	a, b := sample(), sample()
	b.Server = "gorilla"
	b.Errorf("%d unexpected closes", 3)
	if err := a.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	b.WriteJSON(&buf)
	rs, err := Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Server != "loopcast" || rs[1].OK() || !rs[0].OK() {
		t.Fatalf("parsed %+v", rs)
	}
	l := rs[0].Latency[LatencyDelivery]
	if l.Count != 1000 || l.P50Us < 500 || l.P50Us > 504 || l.MaxUs != 1000 {
		t.Fatalf("latency %+v", l)
	}
	if v, ok := rs[0].Metric(DeliveriesPerSec); !ok || v != 1.5e6 {
		t.Fatalf("metric %v %v", v, ok)
	}
	if rs[0].Params != a.Params {
		t.Fatalf("params %+v", rs[0].Params)
	}
}

func TestParseErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":         "hello\n",
		"unknown scenario": `{"scenario":"nope","server":"x","metrics":{}}`,
		"no server":        `{"scenario":"echo","server":"","metrics":{}}`,
		"no metrics":       `{"scenario":"echo","server":"x"}`,
		"unknown field":    `{"scenario":"echo","server":"x","metrics":{},"extra":1}`,
		"truncated":        `{"scenario":"echo","server":"x","metr`,
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	rs, err := Parse(strings.NewReader(""))
	if err != nil || len(rs) != 0 {
		t.Fatalf("empty input: %v %v", rs, err)
	}
	// Objects need not be one per line.
	rs, err = Parse(strings.NewReader(`{"scenario":"echo","server":"a","metrics":{"msgs_per_s":5}} {"scenario":"health","server":"b","metrics":{}}`))
	if err != nil || len(rs) != 2 || rs[0].Metrics[MsgsPerSec] != 5 {
		t.Fatalf("two objects on a line: %v %v", rs, err)
	}
}

func TestLoadDirAndTable(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	sample().WriteJSON(&buf)
	os.WriteFile(filepath.Join(dir, "b.json"), buf.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"scenario":"echo","server":"a","metrics":{}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644)
	rs, err := LoadDir(dir)
	if err != nil || len(rs) != 2 || rs[0].Scenario != Echo {
		t.Fatalf("LoadDir: %v %v", rs, err)
	}
	var out bytes.Buffer
	sample().WriteTable(&out)
	for _, want := range []string{"fanout against loopcast", "deliveries_per_s", "1500000", "delivery", "OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHuman(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 12345: "12345", 123.4: "123", 12.34: "12.3", 1.234: "1.23", 0.01234: "0.0123"} {
		if got := Human(v); got != want {
			t.Errorf("Human(%v) = %q, want %q", v, got, want)
		}
	}
}
