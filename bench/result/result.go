// Package result is the load generator's output: one Result per scenario run,
// written as one JSON object per line, read back by the report generator, and
// printed as a human table.
package result

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loopcast/loopcast/bench/hist"
)

// Scenario names.
const (
	Echo   = "echo"
	Fanout = "fanout"
	Conns  = "conns"
	Storm  = "storm"
	Health = "health"
)

// Resume is the resume scenario's name. It is not in Scenarios: its
// results are kept apart (bench/results/resume/) and written up by hand,
// since its peers (Centrifugo, JetStream) are not bench/run's.
const Resume = "resume"

// Cluster is the cluster scenario's name (loopcast-bench cluster: a NATS
// cluster and loopcast instances under faults). Like Resume it is not in
// Scenarios: its results are kept in bench/results/cluster/ and written
// up by hand.
const Cluster = "cluster"

// Scenarios lists the scenario names in report order.
var Scenarios = []string{Echo, Fanout, Conns, Storm, Health}

// Metric names. Rates are per second of the measured interval, sizes bytes,
// times seconds unless the name says otherwise.
const (
	MsgsPerSec       = "msgs_per_s"       // echo: round trips completed
	DeliveriesPerSec = "deliveries_per_s" // fanout: messages received by all members
	PublishedPerSec  = "published_per_s"  // fanout: messages sent by the publishers
	Messages         = "messages"         // messages sent
	Deliveries       = "deliveries"       // fanout: messages received
	Gaps             = "gaps"             // fanout: gap events (with Missing, never a silent loss)
	Missing          = "missing"          // fanout: messages not received
	Reordered        = "reordered"        // fanout: late arrivals
	Duplicates       = "duplicates"       // fanout: duplicate arrivals
	Undelivered      = "undelivered"      // fanout: deliveries still missing after the drain
	UnexpectedCloses = "unexpected_closes"
	HandshakesPerSec = "handshakes_per_s"
	Connected        = "connected"
	Failed           = "failed" // connections or attempts that failed
	ServerRSSBefore  = "server_rss_before_bytes"
	ServerRSSAfter   = "server_rss_after_bytes"
	RSSPerConn       = "server_rss_per_conn_bytes"
	RecoverySeconds  = "recovery_s"       // storm: drop to all reconnected
	Reconnected      = "reconnected"      // storm
	Attempts         = "attempts"         // storm: handshakes tried
	RequestsPerSec   = "requests_per_s"   // health
	Requests         = "requests"         // health
	ClientCPUSeconds = "client_cpu_s"     // load generator CPU time (user+sys)
	ServerCPUSeconds = "server_cpu_s"     // server CPU time during the run, with --pid
	ServerRSSPeak    = "server_rss_bytes" // server RSS at the end, with --pid
	SetupSeconds     = "setup_s"          // time to connect everyone
	DeliveredAllFrac = "delivered_all_fraction"
	LatencyRTT       = "rtt"      // echo round trip
	LatencyDelivery  = "delivery" // fanout: send to each delivery
	LatencyLast      = "last"     // fanout: send to delivery at the last member
	LatencyHandshake = "handshake"
	LatencyRequest   = "request"   // health
	LatencyReconnect = "reconnect" // storm: drop to back, per client
)

// Params are the knobs a run used; zero fields did not apply.
type Params struct {
	Conns       int     `json:"conns,omitempty"`
	Size        int     `json:"size,omitempty"`
	Inflight    int     `json:"inflight,omitempty"`
	Subscribers int     `json:"subscribers,omitempty"`
	Publishers  int     `json:"publishers,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	Window      int     `json:"window,omitempty"`
	Rounds      int     `json:"rounds,omitempty"`
	DurationS   float64 `json:"duration_s,omitempty"`
	SourceIPs   int     `json:"source_ips,omitempty"`
	GOMAXPROCS  int     `json:"gomaxprocs,omitempty"`
	// The cluster scenario's shape.
	Instances    int `json:"instances,omitempty"`      // loopcast processes
	NATSNodes    int `json:"nats_nodes,omitempty"`     // nats-server processes
	Rooms        int `json:"rooms,omitempty"`          // rooms in use
	RoomsPerConn int `json:"rooms_per_conn,omitempty"` // subscriptions per client
}

// Latency summarises a histogram of nanoseconds in microseconds.
type Latency struct {
	Count  uint64  `json:"count"`
	MinUs  float64 `json:"min_us"`
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

func us(ns int64) float64 { return math.Round(float64(ns)/10) / 100 }

// FromHist summarises h.
func FromHist(h *hist.Histogram) Latency {
	return Latency{
		Count:  h.Count(),
		MinUs:  us(h.Min()),
		MeanUs: us(int64(h.Mean())),
		P50Us:  us(h.Quantile(0.50)),
		P90Us:  us(h.Quantile(0.90)),
		P99Us:  us(h.Quantile(0.99)),
		P999Us: us(h.Quantile(0.999)),
		MaxUs:  us(h.Max()),
	}
}

// Result is one scenario run against one server.
type Result struct {
	Scenario string             `json:"scenario"`
	Server   string             `json:"server"` // label, e.g. "loopcast" or "gorilla"
	Addr     string             `json:"addr"`
	Time     time.Time          `json:"time"`
	Params   Params             `json:"params"`
	ElapsedS float64            `json:"elapsed_s"` // measured interval
	Metrics  map[string]float64 `json:"metrics"`
	Latency  map[string]Latency `json:"latency,omitempty"`
	Errors   []string           `json:"errors,omitempty"`   // what went wrong; empty for a clean run
	Warnings []string           `json:"warnings,omitempty"` // caveats, e.g. the load generator was saturated
	// Faults are the figures of each fault a run injected, in order
	// (the cluster scenario); Metrics then holds the whole run's.
	Faults []Fault `json:"faults,omitempty"`
}

// Fault is what one injected fault did: from its injection to the next
// one's (or to the end of publishing).
type Fault struct {
	Name    string             `json:"name"`
	StartS  float64            `json:"start_s"`         // seconds after the load started
	WindowS float64            `json:"window_s"`        // how long its window lasted
	Metrics map[string]float64 `json:"metrics"`         // same naming rules as Result.Metrics
	Notes   []string           `json:"notes,omitempty"` // what was done and seen, for people
}

// New starts a result.
func New(scenario, server, addr string) *Result {
	return &Result{Scenario: scenario, Server: server, Addr: addr, Time: time.Now().UTC().Truncate(time.Second),
		Metrics: map[string]float64{}, Latency: map[string]Latency{}}
}

// Errorf records a problem with the run.
func (r *Result) Errorf(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

// Warnf records a caveat that does not fail the run.
func (r *Result) Warnf(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// OK reports whether the run had no error.
func (r *Result) OK() bool { return len(r.Errors) == 0 }

// Metric returns a metric and whether it was recorded.
func (r *Result) Metric(name string) (float64, bool) {
	v, ok := r.Metrics[name]
	return v, ok
}

// WriteJSON writes r as one line of JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Validate checks what the report generator relies on.
func (r *Result) Validate() error {
	known := false
	for _, s := range Scenarios {
		known = known || s == r.Scenario
	}
	switch {
	case !known:
		return fmt.Errorf("unknown scenario %q", r.Scenario)
	case r.Server == "":
		return errors.New("no server label")
	case r.Metrics == nil:
		return errors.New("no metrics")
	}
	for k, v := range r.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metric %s is %v", k, v)
		}
	}
	return nil
}

// Parse reads results written by WriteJSON (a stream of JSON objects,
// usually one per line) and validates each.
func Parse(rd io.Reader) ([]Result, error) {
	dec := json.NewDecoder(bufio.NewReader(rd))
	dec.DisallowUnknownFields()
	var out []Result
	for i := 1; ; i++ {
		var r Result
		err := dec.Decode(&r)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("result %d: %w", i, err)
		}
		if err := r.Validate(); err != nil {
			return out, fmt.Errorf("result %d (%s/%s): %w", i, r.Server, r.Scenario, err)
		}
		out = append(out, r)
	}
}

// LoadDir parses every *.json file in dir, in name order.
func LoadDir(dir string) ([]Result, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var all []Result
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return nil, err
		}
		rs, err := Parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		all = append(all, rs...)
	}
	return all, nil
}

// WriteTable prints r for people.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s against %s (%s), %.1f s measured\n", r.Scenario, r.Server, r.Addr, r.ElapsedS)
	if p := paramString(r.Params); p != "" {
		fmt.Fprintf(tw, "  params\t%s\n", p)
	}
	keys := make([]string, 0, len(r.Metrics))
	for k := range r.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%s\n", k, Human(r.Metrics[k]))
	}
	if len(r.Latency) > 0 {
		fmt.Fprintf(tw, "  latency (µs)\tcount\tp50\tp90\tp99\tp99.9\tmax\n")
		names := make([]string, 0, len(r.Latency))
		for k := range r.Latency {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			l := r.Latency[k]
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\n", k, l.Count,
				Human(l.P50Us), Human(l.P90Us), Human(l.P99Us), Human(l.P999Us), Human(l.MaxUs))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeFaults(w, r.Faults); err != nil {
		return err
	}
	if len(r.Errors) == 0 {
		fmt.Fprintf(tw, "  result\tOK\n")
	}
	for _, e := range r.Warnings {
		fmt.Fprintf(tw, "  warning\t%s\n", e)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "  ERROR\t%s\n", e)
	}
	return tw.Flush()
}

// writeFaults prints one row per fault and one column per metric (the
// union of the faults' metric names, sorted), then each fault's notes.
func writeFaults(w io.Writer, faults []Fault) error {
	if len(faults) == 0 {
		return nil
	}
	names := map[string]bool{}
	for _, f := range faults {
		for k := range f.Metrics {
			names[k] = true
		}
	}
	cols := make([]string, 0, len(names))
	for k := range names {
		cols = append(cols, k)
	}
	sort.Strings(cols)
	// Transposed (metrics down, faults across): metric names are long,
	// faults few.
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  per fault\t")
	for i := range faults {
		fmt.Fprintf(tw, "%s\t", faultKey(faults[i].Name))
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "  start_s\t")
	for _, f := range faults {
		fmt.Fprintf(tw, "%s\t", Human(f.StartS))
	}
	fmt.Fprintln(tw)
	for _, k := range cols {
		fmt.Fprintf(tw, "  %s\t", k)
		for _, f := range faults {
			if v, ok := f.Metrics[k]; ok {
				fmt.Fprintf(tw, "%s\t", Human(v))
			} else {
				fmt.Fprintf(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range faults {
		fmt.Fprintf(w, "  %s\n", f.Name)
		for _, n := range f.Notes {
			fmt.Fprintf(w, "      %s\n", n)
		}
	}
	return nil
}

// faultKey is the column heading of a fault: its name up to the first
// colon ("a: SIGKILL …" -> "a").
func faultKey(name string) string {
	if k, _, ok := strings.Cut(name, ":"); ok {
		return k
	}
	return name
}

func paramString(p Params) string {
	var parts []string
	add := func(name string, v float64) {
		if v != 0 {
			parts = append(parts, name+"="+Human(v))
		}
	}
	add("conns", float64(p.Conns))
	add("size", float64(p.Size))
	add("inflight", float64(p.Inflight))
	add("subscribers", float64(p.Subscribers))
	add("publishers", float64(p.Publishers))
	add("rate", p.Rate)
	add("window", float64(p.Window))
	add("rounds", float64(p.Rounds))
	add("duration_s", p.DurationS)
	add("source_ips", float64(p.SourceIPs))
	add("gomaxprocs", float64(p.GOMAXPROCS))
	add("instances", float64(p.Instances))
	add("nats_nodes", float64(p.NATSNodes))
	add("rooms", float64(p.Rooms))
	add("rooms_per_conn", float64(p.RoomsPerConn))
	return strings.Join(parts, " ")
}

// Human formats a number compactly: integers as such, others with three
// significant digits.
func Human(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
