package deploy

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	corev1 "k8s.io/api/core/v1"

	"github.com/loopcast/loopcast/server"
	"github.com/loopcast/loopcast/server/cluster"
)

// TestMonitoringReferencesRealMetrics: every metric the dashboard and the
// alert rules use exists in real servers' /metrics, in every mode the
// expression applies to, each mode scraped on its own: an expression
// with loopcast_cluster_log_* metrics applies to JetStream; one with
// other loopcast_cluster_* metrics to both cluster modes (core NATS and
// JetStream: an alert on loopcast_cluster_connected that JetStream
// pods never expose could never fire); any other to every mode, NATS or
// not. And the ServiceMonitor scrapes a port the Services have.
func TestMonitoringReferencesRealMetrics(t *testing.T) {
	r := render(t, "monitoring")
	if len(r.Monitors) != 1 || len(r.Rules) != 1 || len(r.ConfigMaps) != 1 {
		t.Fatalf("want one ServiceMonitor, PrometheusRule and dashboard ConfigMap")
	}
	var exprs []string
	for _, g := range r.Rules[0].Spec.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" || rule.Expr == "" || rule.For == "" || rule.Labels["severity"] == "" {
				t.Errorf("rule %+v: want alert, expr, for and a severity", rule)
			}
			exprs = append(exprs, rule.Expr)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	cm := r.ConfigMaps[0]
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Error("the dashboard ConfigMap lacks grafana_dashboard: \"1\" (Grafana's sidecar)")
	}
	if err := json.Unmarshal([]byte(cm.Data["dashboard.json"]), &dash); err != nil || len(dash.Panels) == 0 {
		t.Fatalf("dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}

	modes := map[string]map[string]bool{
		"in-process":       exposed(metricsOf(t, startMonitored(t, nil))),
		"core NATS":        exposed(scrapeWithBridge(t)),
		"NATS (JetStream)": exposed(scrapeWithStream(t)),
	}
	name := regexp.MustCompile(`loopcast_[a-z_]+`)
	for _, e := range exprs {
		applies := []string{"in-process", "core NATS", "NATS (JetStream)"}
		switch {
		case strings.Contains(e, "loopcast_cluster_log_"):
			applies = []string{"NATS (JetStream)"}
		case strings.Contains(e, "loopcast_cluster_"):
			applies = []string{"core NATS", "NATS (JetStream)"}
		}
		for _, mode := range applies {
			for _, m := range name.FindAllString(e, -1) {
				if !modes[mode][m] {
					t.Errorf("%q uses %s, which a server in %s mode does not expose", e, m, mode)
				}
			}
		}
	}

	// The ServiceMonitor's port is a port of a Service the base renders.
	base := render(t, "base")
	sm := r.Monitors[0]
	for _, ep := range sm.Spec.Endpoints {
		found := false
		for _, s := range base.Services {
			match := true
			for k, v := range sm.Spec.Selector.MatchLabels {
				match = match && s.Labels[k] == v
			}
			found = found || match && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port })
		}
		if !found || ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %+v: no Service port %q with the selected labels", ep, ep.Port)
		}
	}
}

// exposed is the set of metric names in a /metrics text.
func exposed(text string) map[string]bool {
	have := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			have[f[2]] = true
		}
	}
	return have
}

func metricsOf(t *testing.T, srv *server.Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func startMonitored(t *testing.T, broker server.Broker) *server.Server {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr, cfg.AdminAddr, cfg.Broker = "127.0.0.1:0", "", broker
	return startServer(t, cfg)
}

func scrapeWithBridge(t *testing.T) string {
	opts := natstest.DefaultTestOptions
	opts.Port = -1
	ns := natstest.RunServer(&opts)
	t.Cleanup(ns.Shutdown)
	b, err := cluster.New(cluster.Options{URL: "nats://" + ns.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	srv := startMonitored(t, b)
	return metricsOf(t, srv)
}

func scrapeWithStream(t *testing.T) string {
	opts := natstest.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = -1, true, t.TempDir()
	ns := natstest.RunServer(&opts)
	t.Cleanup(ns.Shutdown)
	st, err := cluster.NewStream(cluster.StreamOptions{URL: "nats://" + ns.Addr().String(), HistoryMessages: 10, HistoryTTL: time.Minute, HistoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	srv := startMonitored(t, st)
	return metricsOf(t, srv)
}
