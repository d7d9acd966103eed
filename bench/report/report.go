// Package report turns the load generator's JSON results into the results
// section of BENCHMARKS.md (tables with ratios against loopcast) and its SVG
// charts, and splices the section between markers in the document.
package report

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/loopcast/loopcast/bench/result"
	"github.com/loopcast/loopcast/bench/svgchart"
)

// Markers delimit the generated section in BENCHMARKS.md.
const (
	StartMarker = "<!-- results:start -->"
	EndMarker   = "<!-- results:end -->"
)

// Baseline is the server every ratio is taken against.
const Baseline = "loopcast"

// ServerOrder fixes row order and chart colours; unknown servers follow.
var ServerOrder = []string{"loopcast", "gorilla", "coder", "nbio", "bun"}

// Options say where charts go and how the document links them.
type Options struct {
	ChartDir  string // where SVG files are written
	ChartLink string // path prefix used in the markdown links, e.g. "bench/charts/"
	Env       []string
	Note      string // free text under the heading (e.g. the command and mode)
}

// Splice replaces what lies between the markers in doc with section.
func Splice(doc, section []byte) ([]byte, error) {
	i := bytes.Index(doc, []byte(StartMarker))
	j := bytes.Index(doc, []byte(EndMarker))
	switch {
	case i < 0 || j < 0:
		return nil, fmt.Errorf("report: markers %s and %s not both found", StartMarker, EndMarker)
	case j < i:
		return nil, errors.New("report: end marker before start marker")
	case bytes.Count(doc, []byte(StartMarker)) > 1 || bytes.Count(doc, []byte(EndMarker)) > 1:
		return nil, errors.New("report: markers appear more than once")
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(StartMarker)])
	out.WriteString("\n")
	out.Write(bytes.TrimSpace(section))
	out.WriteString("\n")
	out.Write(doc[j:])
	return out.Bytes(), nil
}

// Environment describes this machine for the report.
func Environment() []string {
	var env []string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, v, _ := strings.Cut(l, ":")
				env = append(env, fmt.Sprintf("CPU: %s, %d logical CPUs", strings.TrimSpace(v), runtime.NumCPU()))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		env = append(env, "Kernel: Linux "+strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(l)
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			env = append(env, fmt.Sprintf("Memory: %.0f GiB", kb/(1<<20)))
		}
	}
	env = append(env, "Go: "+runtime.Version())
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		env = append(env, fmt.Sprintf("Open files per process: %d (hard %d)", rl.Cur, rl.Max))
	}
	return env
}

// key identifies a row: one server in one scenario configuration.
type key struct {
	scenario, server string
	subs             int
	fixedRate        bool
}

type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(b *bytes.Buffer) {
	b.WriteString("| " + strings.Join(t.header, " | ") + " |\n|")
	for range t.header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
}

func serverRank(s string) int {
	for i, n := range ServerOrder {
		if n == s {
			return i
		}
	}
	return len(ServerOrder)
}

func sortServers(ss []string) {
	sort.SliceStable(ss, func(i, j int) bool {
		ri, rj := serverRank(ss[i]), serverRank(ss[j])
		if ri != rj {
			return ri < rj
		}
		return ss[i] < ss[j]
	})
}

func colorOf(s string) string {
	return svgchart.Palette[serverRank(s)%len(svgchart.Palette)]
}

// ratio formats a/b ("×1.23"), or "—".
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "—"
	}
	r := a / b
	switch {
	case r >= 10:
		return fmt.Sprintf("×%.0f", r)
	case r >= 1:
		return fmt.Sprintf("×%.2f", r)
	default:
		return fmt.Sprintf("×%.3g", r)
	}
}

func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return result.Human(v)
}

// count formats a round count: 1000 as 1k, 15000 as 15k.
func count(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// dur formats microseconds.
func dur(us float64) string {
	switch {
	case us <= 0:
		return "—"
	case us >= 1e6:
		return fmt.Sprintf("%.2f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.1f ms", us/1e3)
	}
	return fmt.Sprintf("%.0f µs", us)
}

func bytesStr(v float64) string {
	switch {
	case v >= 10*1024:
		return fmt.Sprintf("%.1f KiB", v/1024)
	case v > 0:
		return fmt.Sprintf("%.0f B", v)
	}
	return "—"
}

// notes summarises errors and warnings of a run for a table cell.
func notes(r *result.Result) string {
	var parts []string
	for _, e := range r.Errors {
		parts = append(parts, "**error:** "+e)
	}
	for _, w := range r.Warnings {
		if strings.Contains(w, "load generator used") {
			parts = append(parts, "client-bound ("+strings.Fields(w)[3]+" client CPU)")
			continue
		}
		parts = append(parts, w)
	}
	s := strings.Join(parts, "; ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// cpuPerOp is the server's CPU time per operation (delivery, round trip)
// in nanoseconds, or NaN when the server's CPU was not measured. When the
// load generator is the bottleneck (client-bound), throughput ties but
// this still tells which server does the work more cheaply.
func cpuPerOp(r *result.Result, countMetric string) float64 {
	if r == nil {
		return math.NaN()
	}
	cpu, ok := r.Metric(result.ServerCPUSeconds)
	n, ok2 := r.Metric(countMetric)
	if !ok || !ok2 || n <= 0 {
		return math.NaN()
	}
	return cpu / n * 1e9
}

func nsStr(ns float64) string {
	if math.IsNaN(ns) {
		return "—"
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func cpuPct(r *result.Result) string {
	v, ok := r.Metric(result.ServerCPUSeconds)
	if !ok || r.ElapsedS <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*v/r.ElapsedS)
}

// Generate writes the charts and returns the markdown of the results section.
func Generate(results []result.Result, o Options) ([]byte, error) {
	g := newGen(results, o)
	g.intro()
	g.echo()
	for _, fixed := range []bool{false, true} {
		if err := g.fanout(fixed); err != nil {
			return nil, err
		}
	}
	if err := g.conns(); err != nil {
		return nil, err
	}
	g.storm()
	g.health()
	return g.b.Bytes(), nil
}

// gen builds the results section: the latest result of each scenario and
// server, and the markdown written so far.
type gen struct {
	o       Options
	latest  map[key]*result.Result
	servers []string // in ServerOrder
	hasBase bool     // loopcast has results
	b       bytes.Buffer
}

func newGen(results []result.Result, o Options) *gen {
	g := &gen{o: o, latest: map[key]*result.Result{}}
	seen := map[string]bool{}
	for i := range results {
		r := &results[i]
		k := key{scenario: r.Scenario, server: r.Server}
		if r.Scenario == result.Fanout {
			k.subs = r.Params.Subscribers
			k.fixedRate = r.Params.Rate > 0
		}
		g.latest[k] = r // later results replace earlier ones
		if !seen[r.Server] {
			seen[r.Server] = true
			g.servers = append(g.servers, r.Server)
		}
	}
	sortServers(g.servers)
	g.hasBase = seen[Baseline]
	return g
}

// base is loopcast's result for the same scenario and parameters as k.
func (g *gen) base(k key) *result.Result {
	k.server = Baseline
	return g.latest[k]
}

func metric(r *result.Result, name string) float64 {
	if r == nil {
		return 0
	}
	v, _ := r.Metric(name)
	return v
}

func lat(r *result.Result, name string) result.Latency {
	if r == nil {
		return result.Latency{}
	}
	return r.Latency[name]
}

func (g *gen) intro() {
	b := &g.b
	b.WriteString("## Results\n\n")
	b.WriteString("_Generated by `bench/run`; do not edit by hand between the markers._\n\n")
	if g.o.Note != "" {
		b.WriteString(g.o.Note + "\n\n")
	}
	for _, e := range g.o.Env {
		b.WriteString("- " + e + "\n")
	}
	if len(g.o.Env) > 0 {
		b.WriteString("\n")
	}
	if !g.hasBase {
		b.WriteString("**loopcast has no results in this run**: the ratio columns are empty. Rerun `bench/run` once it builds.\n\n")
	}
	b.WriteString("Ratios are loopcast's value divided by the row's: for rates above ×1 means loopcast did more; for latency and memory below ×1 means loopcast was lower (better).\n\n")
}

// section writes the table of a scenario with one result per server:
// row adds a server's row (br is loopcast's result), and intro, given the
// first result's parameters, the heading and text above the table. It
// reports whether there was anything to write.
func (g *gen) section(scenario string, header []string, row func(t *table, r, br *result.Result), intro func(p result.Params) string) bool {
	t := table{header: header}
	for _, s := range g.servers {
		if r := g.latest[key{scenario: scenario, server: s}]; r != nil {
			row(&t, r, g.base(key{scenario: scenario}))
		}
	}
	if len(t.rows) == 0 {
		return false
	}
	g.b.WriteString(intro(firstParams(g.latest, scenario)))
	t.write(&g.b)
	return true
}

func (g *gen) echo() {
	g.section(result.Echo,
		[]string{"server", "round trips/s", "loopcast ×", "p50", "p90", "p99", "p99.9", "max", "server CPU", "server CPU per round trip", "loopcast ×", "notes"},
		func(t *table, r, br *result.Result) {
			l := r.Latency[result.LatencyRTT]
			t.add(r.Server, num(metric(r, result.MsgsPerSec)), ratio(metric(br, result.MsgsPerSec), metric(r, result.MsgsPerSec)),
				dur(l.P50Us), dur(l.P90Us), dur(l.P99Us), dur(l.P999Us), dur(l.MaxUs), cpuPct(r),
				nsStr(cpuPerOp(r, result.Messages)), ratio(cpuPerOp(br, result.Messages), cpuPerOp(r, result.Messages)), notes(r))
		},
		func(p result.Params) string {
			return fmt.Sprintf("### echo\n\n%d connections, %d-byte binary messages, %d in flight per connection, %gs.\n\n", p.Conns, p.Size, p.Inflight, p.DurationS)
		})
}

// fanoutSizes lists the room sizes that have fanout results, ascending.
func (g *gen) fanoutSizes() []int {
	set := map[int]bool{}
	for k := range g.latest {
		if k.scenario == result.Fanout {
			set[k.subs] = true
		}
	}
	var subs []int
	for s := range set {
		subs = append(subs, s)
	}
	sort.Ints(subs)
	return subs
}

// fanout writes the closed-loop (throughput) or the fixed-rate (latency)
// table and chart.
func (g *gen) fanout(fixed bool) error {
	subs := g.fanoutSizes()
	xs := make([]string, len(subs))
	for i, s := range subs {
		xs[i] = count(s)
	}
	var t table
	if !fixed {
		t.header = []string{"subscribers", "server", "deliveries/s", "loopcast ×", "p50", "p99", "p99 to last member", "server CPU", "server CPU per delivery", "loopcast ×", "checks", "notes"}
	} else {
		t.header = []string{"subscribers", "rate (msg/s)", "server", "deliveries/s", "p50", "p99", "p99.9", "loopcast p99 ×", "checks", "notes"}
	}
	var series []svgchart.Series
	for _, s := range g.servers {
		ser := svgchart.Series{Name: s, Color: colorOf(s)}
		any := false
		for _, n := range subs {
			k := key{scenario: result.Fanout, server: s, subs: n, fixedRate: fixed}
			r := g.latest[k]
			if r == nil {
				ser.Y = append(ser.Y, math.NaN())
				continue
			}
			any = true
			y := g.fanoutRow(&t, r, g.base(k), n, fixed)
			ser.Y = append(ser.Y, y)
		}
		if any {
			series = append(series, ser)
		}
	}
	if len(t.rows) == 0 {
		return nil
	}
	p := firstFanout(g.latest, fixed)
	if !fixed {
		fmt.Fprintf(&g.b, "### fanout, closed loop (throughput)\n\nOne room, one publisher (also a member), %d-byte messages, at most %d messages per publisher not yet delivered to every member, %gs. Every member checks order and gaps.\n\n", p.Size, p.Window, p.DurationS)
	} else {
		fmt.Fprintf(&g.b, "### fanout, fixed rate (latency)\n\nThe same room at a fixed publish rate that every server can sustain in the closed-loop run (the same deliveries/s at each size), so that latency compares servers at equal load; send times are the scheduled ones (no coordinated omission). %d-byte messages, %gs.\n\n", p.Size, p.DurationS)
	}
	t.write(&g.b)
	name, chart := "fanout-deliveries.svg", &svgchart.Line{Title: "fanout: deliveries/s (closed loop, server on 1 core)",
		XLabel: "subscribers in the room", YLabel: "deliveries per second", X: xs, Series: series}
	if fixed {
		name, chart = "fanout-p99.svg", &svgchart.Line{Title: "fanout: p99 delivery latency at a fixed rate",
			XLabel: "subscribers in the room", YLabel: "p99 latency (ms, log scale)", X: xs, Series: series, LogY: true}
	}
	return g.chart(name, chart.Title, chart.SVG())
}

// fanoutRow adds r's row (br: loopcast's result for the same run) and
// returns the value the chart plots: deliveries/s, or p99 in ms.
func (g *gen) fanoutRow(t *table, r, br *result.Result, subs int, fixed bool) float64 {
	l := r.Latency[result.LatencyDelivery]
	check := "in order, no gaps"
	if !r.OK() {
		check = fmt.Sprintf("%g gaps, %g reordered, %g closes, %s undelivered at the end", metric(r, result.Gaps),
			metric(r, result.Reordered), metric(r, result.UnexpectedCloses), num(metric(r, result.Undelivered)))
	}
	if !fixed {
		t.add(count(subs), r.Server, num(metric(r, result.DeliveriesPerSec)),
			ratio(metric(br, result.DeliveriesPerSec), metric(r, result.DeliveriesPerSec)),
			dur(l.P50Us), dur(l.P99Us), dur(r.Latency[result.LatencyLast].P99Us), cpuPct(r),
			nsStr(cpuPerOp(r, result.Deliveries)), ratio(cpuPerOp(br, result.Deliveries), cpuPerOp(r, result.Deliveries)), check, notes(r))
		return metric(r, result.DeliveriesPerSec)
	}
	t.add(count(subs), result.Human(r.Params.Rate), r.Server, num(metric(r, result.DeliveriesPerSec)),
		dur(l.P50Us), dur(l.P99Us), dur(l.P999Us), ratio(lat(br, result.LatencyDelivery).P99Us, l.P99Us), check, notes(r))
	return l.P99Us / 1000
}

// chart writes an SVG chart and links it from the section.
func (g *gen) chart(name, title string, svg []byte) error {
	if err := writeChart(g.o, name, svg); err != nil {
		return err
	}
	fmt.Fprintf(&g.b, "![%s](%s%s)\n\n", title, g.o.ChartLink, name)
	return nil
}

func (g *gen) conns() error {
	var bars []svgchart.Bar
	wrote := g.section(result.Conns,
		[]string{"server", "connections", "handshakes/s", "loopcast ×", "server RSS per connection", "loopcast ×", "handshake p99", "notes"},
		func(t *table, r, br *result.Result) {
			per := metric(r, result.RSSPerConn)
			t.add(r.Server, num(metric(r, result.Connected)), num(metric(r, result.HandshakesPerSec)),
				ratio(metric(br, result.HandshakesPerSec), metric(r, result.HandshakesPerSec)),
				bytesStr(per), ratio(metric(br, result.RSSPerConn), per), dur(r.Latency[result.LatencyHandshake].P99Us), notes(r))
			if per > 0 {
				bars = append(bars, svgchart.Bar{Label: r.Server, Value: per, Color: colorOf(r.Server)})
			}
		},
		func(p result.Params) string {
			return fmt.Sprintf("### conns\n\n%d idle room members opened with 128 handshakes in flight, held %gs; memory is the growth of the server's RSS (/proc/PID/status) divided by the connections, on a freshly started server.\n\n", p.Conns, p.DurationS)
		})
	if !wrote || len(bars) == 0 {
		return nil
	}
	c := &svgchart.Bars{Title: "server memory per idle connection (RSS growth)", Unit: "bytes per connection", Bars: bars}
	return g.chart("conns-memory.svg", c.Title, c.SVG())
}

func (g *gen) storm() {
	g.section(result.Storm,
		[]string{"server", "clients", "all back after", "loopcast ×", "failed attempts", "reconnect p50", "reconnect p99", "handshakes/s", "notes"},
		func(t *table, r, br *result.Result) {
			l := r.Latency[result.LatencyReconnect]
			rec := metric(r, result.RecoverySeconds)
			t.add(r.Server, num(float64(r.Params.Conns)), dur(rec*1e6), ratio(metric(br, result.RecoverySeconds), rec),
				result.Human(metric(r, result.Failed)), dur(l.P50Us), dur(l.P99Us), num(metric(r, result.HandshakesPerSec)), notes(r))
		},
		func(p result.Params) string {
			return fmt.Sprintf("### storm\n\n%d connected clients drop at the same instant (as on an Application Gateway configuration update) and all reconnect at once, retrying with full-jitter backoff from 50 ms; %d round(s).\n\n", p.Conns, p.Rounds)
		})
}

func (g *gen) health() {
	g.section(result.Health,
		[]string{"server", "requests/s", "loopcast ×", "p50", "p99", "p99.9", "server CPU", "notes"},
		func(t *table, r, br *result.Result) {
			l := r.Latency[result.LatencyRequest]
			t.add(r.Server, num(metric(r, result.RequestsPerSec)), ratio(metric(br, result.RequestsPerSec), metric(r, result.RequestsPerSec)),
				dur(l.P50Us), dur(l.P99Us), dur(l.P999Us), cpuPct(r), notes(r))
		},
		func(p result.Params) string {
			return fmt.Sprintf("### health\n\n`GET /` on %d keep-alive connections, one request at a time each, %gs.\n\n", p.Conns, p.DurationS)
		})
}

func firstParams(m map[key]*result.Result, scenario string) result.Params {
	for _, s := range ServerOrder {
		if r := m[key{scenario: scenario, server: s}]; r != nil {
			return r.Params
		}
	}
	for k, r := range m {
		if k.scenario == scenario {
			return r.Params
		}
	}
	return result.Params{}
}

func firstFanout(m map[key]*result.Result, fixed bool) result.Params {
	for k, r := range m {
		if k.scenario == result.Fanout && k.fixedRate == fixed {
			return r.Params
		}
	}
	return result.Params{}
}

func writeChart(o Options, name string, svg []byte) error {
	if o.ChartDir == "" {
		return nil
	}
	if err := os.MkdirAll(o.ChartDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.ChartDir, name), svg, 0o644)
}
