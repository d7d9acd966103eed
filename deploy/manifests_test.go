package deploy

import (
	"io"
	"maps"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/loopcast/loopcast/cmd/loopcast/flags"
	"github.com/loopcast/loopcast/server"
)

// config parses the pod's LOOPCAST_* environment with the server's own
// flags.Load, exactly as the binary does at start.
func (p pod) config(t *testing.T) server.Config {
	t.Helper()
	cfg, _, err := flags.Load(nil, p.environ(), io.Discard)
	if err != nil {
		t.Fatalf("the manifest's environment does not load: %v", err)
	}
	return cfg
}

func addrPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return int32(mustAtoi(t, "port of "+addr, port))
}

// TestPortsAgree: the server listens on the port the container declares,
// the probes use, the Service targets and the image exposes.
func TestPortsAgree(t *testing.T) {
	p := podOf(t, render(t, "base"))
	cfg := p.config(t)

	http, admin := p.port["http"], p.port["admin"]
	if http == 0 || admin == 0 {
		t.Fatalf("container ports %v: want named ports http and admin", p.port)
	}
	if got := addrPort(t, cfg.Addr); got != http {
		t.Errorf("server listens on %d (%s), containerPort http is %d", got, flags.EnvName("addr"), http)
	}
	if got := addrPort(t, cfg.AdminAddr); got != admin {
		t.Errorf("admin listens on %d (%s), containerPort admin is %d", got, flags.EnvName("admin-addr"), admin)
	}
	for name, pr := range map[string]*corev1.Probe{"readiness": p.c.ReadinessProbe, "liveness": p.c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Fatalf("%s probe: want httpGet", name)
		}
		if got := p.portNumber(t, pr.HTTPGet.Port); got != http {
			t.Errorf("%s probe port %d, want the WebSocket port %d", name, got, http)
		}
	}
	// AGIC releases before named-port support copy Port.IntVal only.
	if p.c.ReadinessProbe.HTTPGet.Port.IntVal == 0 {
		t.Errorf("readiness probe port %q: use the number, older AGIC releases copy only numbers", p.c.ReadinessProbe.HTTPGet.Port.StrVal)
	}
	if len(p.svc.Spec.Ports) != 1 {
		t.Fatalf("Service ports %v: want one", p.svc.Spec.Ports)
	}
	sp := p.svc.Spec.Ports[0]
	if sp.Port != 80 || p.portNumber(t, sp.TargetPort) != http {
		t.Errorf("Service port %d -> %s, want 80 -> %d", sp.Port, sp.TargetPort.String(), http)
	}
	if !labels.SelectorFromSet(p.svc.Spec.Selector).Matches(labels.Set(p.dep.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not match pod labels %v", p.svc.Spec.Selector, p.dep.Spec.Template.Labels)
	}

	df := parseDockerfile(t)
	want := []string{strconv.Itoa(int(http)), strconv.Itoa(int(admin))}
	if !slices.Equal(df.expose, want) {
		t.Errorf("Dockerfile EXPOSE %v, container ports %v", df.expose, want)
	}
}

// TestDrainBudget: the process gets to finish its drain before SIGKILL, and
// the gateway's probe notices the drain before clients are sent away.
func TestDrainBudget(t *testing.T) {
	p := podOf(t, render(t, "base"))
	cfg := p.config(t)
	spec := p.dep.Spec.Template.Spec

	ps := p.c.Lifecycle
	if ps == nil || ps.PreStop == nil || ps.PreStop.Sleep == nil || ps.PreStop.Exec != nil {
		t.Fatal("preStop: want the native sleep action (the image has no shell)")
	}
	preStop := time.Duration(ps.PreStop.Sleep.Seconds) * time.Second
	if preStop < 15*time.Second {
		t.Errorf("preStop sleep %s: AGIC takes seconds to minutes to update the backend pool", preStop)
	}
	if cfg.DrainDelay <= 0 || cfg.DrainDuration <= 0 {
		t.Errorf("drain-delay %s, drain-duration %s: set both", cfg.DrainDelay, cfg.DrainDuration)
	}
	need := preStop + cfg.DrainDelay + cfg.DrainDuration
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("terminationGracePeriodSeconds unset (default 30 s)")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= need {
		t.Errorf("terminationGracePeriodSeconds %s <= preStop %s + drain-delay %s + drain-duration %s", grace, preStop, cfg.DrainDelay, cfg.DrainDuration)
	}

	rp := p.c.ReadinessProbe
	if rp.PeriodSeconds == 0 || rp.TimeoutSeconds == 0 || rp.FailureThreshold == 0 {
		t.Fatalf("readiness probe: set periodSeconds, timeoutSeconds, failureThreshold explicitly (AGIC copies them; a bare probe gives the gateway 1 s)")
	}
	if rp.TimeoutSeconds >= rp.PeriodSeconds {
		t.Errorf("readiness timeoutSeconds %d >= periodSeconds %d", rp.TimeoutSeconds, rp.PeriodSeconds)
	}
	detect := time.Duration(rp.PeriodSeconds*rp.FailureThreshold+rp.TimeoutSeconds) * time.Second
	if cfg.DrainDelay < detect {
		t.Errorf("drain-delay %s < %s, the time the gateway's probe needs to see the 503", cfg.DrainDelay, detect)
	}
	if lp := p.c.LivenessProbe; lp.HTTPGet.Path == rp.HTTPGet.Path {
		t.Errorf("liveness and readiness share %s: a draining pod would be restarted", lp.HTTPGet.Path)
	}
}

// TestPodHardening: non-root as the image's user, read-only root, no
// capabilities, requests and limits, spread, PDB and HPA aimed right.
func TestPodHardening(t *testing.T) {
	r := render(t, "base")
	p := podOf(t, r)
	spec := p.dep.Spec.Template.Spec
	if p.dep.Spec.Replicas != nil {
		t.Errorf("replicas %d set: the HPA owns the count, and every apply would reset a scaled-out Deployment (and drop every WebSocket through a gateway update)", *p.dep.Spec.Replicas)
	}
	// GOMEMLIMIT leaves headroom under the memory limit for kernel socket
	// buffers, which count against the cgroup outside Go's heap.
	limit := p.c.Resources.Limits.Memory().Value()
	var goMem int64
	for _, e := range p.c.Env {
		if e.Name == "GOMEMLIMIT" {
			v, ok := strings.CutSuffix(e.Value, "MiB")
			n, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil {
				t.Fatalf("GOMEMLIMIT %q: want <n>MiB", e.Value)
			}
			goMem = n << 20
		}
	}
	if ratio := float64(goMem) / float64(limit); goMem == 0 || ratio < 0.7 || ratio > 0.9 {
		t.Errorf("GOMEMLIMIT is %.0f%% of the memory limit (%d of %d bytes), want 70-90%%", 100*ratio, goMem, limit)
	}
	psc, sc := spec.SecurityContext, p.c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatal("want pod and container securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	uid := parseDockerfile(t).uid
	if psc.RunAsUser != nil && *psc.RunAsUser != uid {
		t.Errorf("runAsUser %d, image USER %d", *psc.RunAsUser, uid)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem: want true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation: want false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %+v: want drop [ALL], add none", sc.Capabilities)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := p.c.Resources.Requests[res], p.c.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s, limit %s", res, req.String(), lim.String())
		}
	}
	if len(spec.TopologySpreadConstraints) == 0 {
		t.Error("want topologySpreadConstraints")
	}
	tl := labels.Set(p.dep.Spec.Template.Labels)
	for _, c := range spec.TopologySpreadConstraints {
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil || !sel.Matches(tl) {
			t.Errorf("topology spread on %s does not select the pods", c.TopologyKey)
		}
	}
	if len(r.PDBs) != 1 || len(r.HPAs) != 1 {
		t.Fatal("want one PodDisruptionBudget and one HorizontalPodAutoscaler")
	}
	if sel, err := metav1.LabelSelectorAsSelector(r.PDBs[0].Spec.Selector); err != nil || !sel.Matches(tl) {
		t.Error("PodDisruptionBudget does not select the pods")
	}
	h := r.HPAs[0].Spec
	if h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != p.dep.Name {
		t.Errorf("HPA targets %s/%s", h.ScaleTargetRef.Kind, h.ScaleTargetRef.Name)
	}
}

// TestAGICIngress: the Ingress AGIC reads names the Service, and its
// annotations agree with the pod's probe, the ping interval and the drain.
func TestAGICIngress(t *testing.T) {
	r := render(t, "agic")
	p := podOf(t, r)
	cfg := p.config(t)
	if len(r.Ingresses) != 1 {
		t.Fatalf("want one Ingress, got %d", len(r.Ingresses))
	}
	ing := r.Ingresses[0]
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "azure-application-gateway" {
		t.Errorf("ingressClassName %v, want azure-application-gateway", ing.Spec.IngressClassName)
	}
	if _, ok := ing.Annotations["kubernetes.io/ingress.class"]; ok {
		t.Error("drop the deprecated kubernetes.io/ingress.class annotation")
	}
	var paths int
	for _, rule := range ing.Spec.Rules {
		for _, hp := range rule.HTTP.Paths {
			paths++
			if hp.PathType == nil || *hp.PathType != networkingv1.PathTypePrefix {
				t.Errorf("path %s: want pathType Prefix", hp.Path)
			}
			b := hp.Backend.Service
			if b == nil || b.Name != p.svc.Name || b.Port.Number != p.svc.Spec.Ports[0].Port {
				t.Errorf("path %s: backend %+v, want service %s port %d", hp.Path, b, p.svc.Name, p.svc.Spec.Ports[0].Port)
			}
		}
	}
	if paths == 0 {
		t.Fatal("Ingress has no paths")
	}

	a := func(k string) string {
		v, ok := ing.Annotations["appgw.ingress.kubernetes.io/"+k]
		if !ok {
			t.Errorf("annotation appgw.ingress.kubernetes.io/%s missing", k)
		}
		return v
	}
	rp := p.c.ReadinessProbe
	if got := a("health-probe-path"); got != rp.HTTPGet.Path {
		t.Errorf("health-probe-path %q, readiness path %q", got, rp.HTTPGet.Path)
	}
	for k, want := range map[string]int32{
		"health-probe-port":                p.portNumber(t, rp.HTTPGet.Port),
		"health-probe-interval":            rp.PeriodSeconds,
		"health-probe-timeout":             rp.TimeoutSeconds,
		"health-probe-unhealthy-threshold": rp.FailureThreshold,
	} {
		if got := int32(mustAtoi(t, k, a(k))); got != want {
			t.Errorf("%s %d, the readiness probe says %d", k, got, want)
		}
	}
	if codes := a("health-probe-status-codes"); !statusIn(t, 200, codes) || statusIn(t, 503, codes) {
		t.Errorf("health-probe-status-codes %q: want 200 healthy and 503 (draining) not", codes)
	}
	reqTimeout := time.Duration(mustAtoi(t, "request-timeout", a("request-timeout"))) * time.Second
	if reqTimeout <= cfg.PingInterval {
		t.Errorf("request-timeout %s <= ping interval %s: idle WebSockets would be cut", reqTimeout, cfg.PingInterval)
	}
	if a("connection-draining") != "true" {
		t.Error(`connection-draining: want "true"`)
	}
	drain := time.Duration(mustAtoi(t, "connection-draining-timeout", a("connection-draining-timeout"))) * time.Second
	serving := time.Duration(p.c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + cfg.DrainDelay + cfg.DrainDuration
	if drain <= 0 || drain > serving {
		t.Errorf("connection-draining-timeout %s: want > 0 and <= %s, how long the pod serves after removal starts", drain, serving)
	}
}

// statusIn reports whether code is in an AppGW status list like "200-399,401".
func statusIn(t *testing.T, code int, list string) bool {
	for _, part := range strings.Split(list, ",") {
		lo, hi, found := strings.Cut(strings.TrimSpace(part), "-")
		if !found {
			hi = lo
		}
		if mustAtoi(t, "status", lo) <= code && code <= mustAtoi(t, "status", hi) {
			return true
		}
	}
	return false
}

// TestAGCGatewayAPI: Gateway, HTTPRoute and HealthCheckPolicy for
// Application Gateway for Containers point at the Service and the probe.
func TestAGCGatewayAPI(t *testing.T) {
	r := render(t, "agc")
	p := podOf(t, r)
	if len(r.Gateways) != 1 || len(r.HTTPRoutes) != 1 || len(r.HealthCheck) != 1 {
		t.Fatalf("want one Gateway, HTTPRoute and HealthCheckPolicy")
	}
	gw, rt, hc := r.Gateways[0], r.HTTPRoutes[0], r.HealthCheck[0]
	if gw.Spec.GatewayClassName != "azure-alb-external" {
		t.Errorf("gatewayClassName %q, want azure-alb-external", gw.Spec.GatewayClassName)
	}
	listeners := map[string]bool{}
	for _, l := range gw.Spec.Listeners {
		listeners[string(l.Name)] = true
	}
	if len(rt.Spec.ParentRefs) == 0 {
		t.Fatal("HTTPRoute has no parentRefs")
	}
	for _, pr := range rt.Spec.ParentRefs {
		if string(pr.Name) != gw.Name || (pr.SectionName != nil && !listeners[string(*pr.SectionName)]) {
			t.Errorf("parentRef %s/%v, want Gateway %s and one of its listeners %v", pr.Name, pr.SectionName, gw.Name, slices.Collect(maps.Keys(listeners)))
		}
	}
	var backends int
	for _, rule := range rt.Spec.Rules {
		for _, b := range rule.BackendRefs {
			backends++
			kind := "Service"
			if b.Kind != nil {
				kind = string(*b.Kind)
			}
			var port int32
			if b.Port != nil {
				port = int32(*b.Port)
			}
			if kind != "Service" || string(b.Name) != p.svc.Name || port != p.svc.Spec.Ports[0].Port {
				t.Errorf("backendRef %s %s:%d, want Service %s:%d", kind, b.Name, port, p.svc.Name, p.svc.Spec.Ports[0].Port)
			}
		}
	}
	if backends == 0 {
		t.Fatal("HTTPRoute has no backendRefs")
	}

	rp := p.c.ReadinessProbe
	d := hc.Spec.Default
	if hc.Spec.TargetRef.Kind != "Service" || hc.Spec.TargetRef.Group != "" || hc.Spec.TargetRef.Name != p.svc.Name {
		t.Errorf("HealthCheckPolicy targets %+v, want Service %s", hc.Spec.TargetRef, p.svc.Name)
	}
	if d.HTTP == nil || d.HTTP.Path != rp.HTTPGet.Path {
		t.Errorf("HealthCheckPolicy path %+v, want the readiness path %s", d.HTTP, rp.HTTPGet.Path)
	}
	if d.Port != p.portNumber(t, rp.HTTPGet.Port) {
		t.Errorf("HealthCheckPolicy port %d, want %d", d.Port, p.portNumber(t, rp.HTTPGet.Port))
	}
	if d.Interval.Duration <= 0 || d.Timeout.Duration <= 0 || d.Timeout.Duration >= d.Interval.Duration || d.HealthyThreshold < 1 || d.UnhealthyThreshold < 1 {
		t.Errorf("HealthCheckPolicy timing %+v", d)
	}
	if d.HTTP != nil {
		ok := false
		for _, sc := range d.HTTP.Match.StatusCodes {
			if sc.Start <= 200 && 200 <= sc.End {
				ok = true
			}
			if sc.Start <= 503 && 503 <= sc.End {
				t.Errorf("status range %d-%d counts 503 (draining) as healthy", sc.Start, sc.End)
			}
		}
		if !ok {
			t.Error("HealthCheckPolicy status codes exclude 200")
		}
	}
}

// TestSeedKept: examples/seed.yaml is the seed (for reference, not for
// use) and lists what loopcast's manifests fix.
func TestSeedKept(t *testing.T) {
	b, err := os.ReadFile("examples/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, obj.APIVersion+" "+obj.Kind)
	}
	want := []string{"apps/v1 Deployment", "v1 Service", "extensions/v1beta1 Ingress"}
	if !slices.Equal(kinds, want) {
		t.Errorf("seed objects %v, want %v", kinds, want)
	}
	for _, s := range []string{"What loopcast's manifests", "networking.k8s.io/v1", "502", "request-timeout", "preStop"} {
		if !strings.Contains(string(b), s) {
			t.Errorf("seed.yaml's list of fixes does not mention %q", s)
		}
	}
}

// TestPublishTokenFromSecret: the admin listener listens beyond loopback,
// so the server requires a publish token; the manifests give it as a file
// (LOOPCAST_PUBLISH_TOKEN_FILE, never a flag that ps would show) that a
// read-only Secret volume provides at exactly that path.
func TestPublishTokenFromSecret(t *testing.T) {
	for _, overlay := range []string{"base", "agic", "agc", "nats"} {
		p := podOf(t, render(t, overlay))
		cfg := p.config(t)
		file := cfg.PublishTokenFile
		if file == "" {
			t.Fatalf("%s: %s is not set; the admin listener on %s needs a token", overlay, flags.EnvName("publish-token-file"), cfg.AdminAddr)
		}
		found := false
		for _, m := range p.c.VolumeMounts {
			dir, name := path.Split(file)
			if strings.TrimSuffix(dir, "/") != strings.TrimSuffix(m.MountPath, "/") {
				continue
			}
			i := slices.IndexFunc(p.dep.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
			if i < 0 {
				t.Fatalf("%s: volumeMount %s names no volume", overlay, m.Name)
			}
			v := p.dep.Spec.Template.Spec.Volumes[i]
			if v.Secret == nil || !m.ReadOnly {
				t.Fatalf("%s: %s is mounted from volume %s, want a read-only Secret", overlay, file, v.Name)
			}
			for _, it := range v.Secret.Items {
				found = found || it.Path == name
			}
		}
		if !found {
			t.Fatalf("%s: no Secret volume provides %s", overlay, file)
		}
	}
}
