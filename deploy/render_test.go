package deploy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlays are the kustomize roots users apply, with the kinds each renders.
var overlays = map[string][]string{
	"base":     {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"agic":     {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"agc":      {"ConfigMap", "Deployment", "Gateway", "HTTPRoute", "HealthCheckPolicy", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"nats":     {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"nats-agc": {"ConfigMap", "Deployment", "Gateway", "HTTPRoute", "HealthCheckPolicy", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},

	"examples/my-loopcast":       {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"examples/agic-tls":          {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"examples/agic-tls-keyvault": {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"examples/agc-tls":           {"ConfigMap", "Deployment", "Gateway", "HTTPRoute", "HTTPRoute", "HealthCheckPolicy", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},
	"examples/entra-id":          {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "Service"},

	"monitoring": {"ConfigMap", "PrometheusRule", "ServiceMonitor"},
}

// rendered holds one overlay's objects, each decoded strictly into its type.
type rendered struct {
	ConfigMaps  []corev1.ConfigMap
	Deployments []appsv1.Deployment
	Services    []corev1.Service
	PDBs        []policyv1.PodDisruptionBudget
	HPAs        []autoscalingv2.HorizontalPodAutoscaler
	Ingresses   []networkingv1.Ingress
	Policies    []networkingv1.NetworkPolicy
	Gateways    []gwv1.Gateway
	HTTPRoutes  []gwv1.HTTPRoute
	HealthCheck []healthCheckPolicy
	Monitors    []serviceMonitor
	Rules       []prometheusRule
	Kinds       []string
}

// serviceMonitor and prometheusRule are the Prometheus Operator's
// monitoring.coreos.com/v1 kinds, with the fields loopcast uses (from the
// operator's API reference); decoding is strict, so a misspelt or unplanned
// field fails.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// healthCheckPolicy is Application Gateway for Containers'
// alb.networking.azure.io/v1 HealthCheckPolicy, which has no published Go
// types; the fields follow Microsoft's API specification. Decoding is
// strict, so a misspelt field fails.
type healthCheckPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		TargetRef struct {
			Group     string `json:"group"`
			Kind      string `json:"kind"`
			Name      string `json:"name"`
			Namespace string `json:"namespace,omitempty"`
		} `json:"targetRef"`
		Default struct {
			Interval           metav1.Duration `json:"interval"`
			Timeout            metav1.Duration `json:"timeout"`
			HealthyThreshold   int32           `json:"healthyThreshold"`
			UnhealthyThreshold int32           `json:"unhealthyThreshold"`
			Port               int32           `json:"port"`
			UseTLS             *bool           `json:"useTLS,omitempty"`
			GRPC               *struct{}       `json:"grpc,omitempty"`
			HTTP               *struct {
				Host  string `json:"host,omitempty"`
				Path  string `json:"path"`
				Match struct {
					StatusCodes []struct {
						Start int `json:"start"`
						End   int `json:"end"`
					} `json:"statusCodes"`
				} `json:"match"`
			} `json:"http,omitempty"`
		} `json:"default"`
	} `json:"spec"`
}

// render builds overlay dir (relative to deploy/) with the kustomize API,
// as `kubectl apply -k` would, and decodes every object strictly: unknown
// or duplicate fields, and kinds we did not plan for, fail the test.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out rendered
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetApiVersion() + " " + r.GetKind()
		var derr error
		switch gvk {
		case "v1 ConfigMap":
			derr = decodeInto(b, &out.ConfigMaps)
		case "apps/v1 Deployment":
			derr = decodeInto(b, &out.Deployments)
		case "v1 Service":
			derr = decodeInto(b, &out.Services)
		case "policy/v1 PodDisruptionBudget":
			derr = decodeInto(b, &out.PDBs)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			derr = decodeInto(b, &out.HPAs)
		case "networking.k8s.io/v1 Ingress":
			derr = decodeInto(b, &out.Ingresses)
		case "networking.k8s.io/v1 NetworkPolicy":
			derr = decodeInto(b, &out.Policies)
		case "gateway.networking.k8s.io/v1 Gateway":
			derr = decodeInto(b, &out.Gateways)
		case "gateway.networking.k8s.io/v1 HTTPRoute":
			derr = decodeInto(b, &out.HTTPRoutes)
		case "alb.networking.azure.io/v1 HealthCheckPolicy":
			derr = decodeInto(b, &out.HealthCheck)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			derr = decodeInto(b, &out.Monitors)
		case "monitoring.coreos.com/v1 PrometheusRule":
			derr = decodeInto(b, &out.Rules)
		default:
			t.Fatalf("%s: unexpected object %s %s", dir, gvk, r.GetName())
		}
		if derr != nil {
			t.Fatalf("%s: %s %s: %v\n%s", dir, gvk, r.GetName(), derr, b)
		}
		out.Kinds = append(out.Kinds, r.GetKind())
	}
	slices.Sort(out.Kinds)
	return &out
}

// decodeInto decodes one YAML object strictly and appends it to *list, a
// pointer to a slice of the object's Go type.
func decodeInto[T any](b []byte, list *[]T) error {
	var v T
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

func TestOverlaysRenderStrictly(t *testing.T) {
	for dir, want := range overlays {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			if !slices.Equal(r.Kinds, want) {
				t.Errorf("kinds = %v, want %v", r.Kinds, want)
			}
		})
	}
}

// pod is the rendered Deployment's single container and what surrounds it.
type pod struct {
	dep  appsv1.Deployment
	c    corev1.Container
	svc  corev1.Service
	env  map[string]string // LOOPCAST_* as the container sees them
	port map[string]int32  // containerPort by name
}

func podOf(t *testing.T, r *rendered) pod {
	t.Helper()
	i := slices.IndexFunc(r.Services, func(s corev1.Service) bool { return s.Name == "loopcast" })
	if len(r.Deployments) != 1 || i < 0 {
		t.Fatalf("want one Deployment and the Service loopcast, got %d and %v", len(r.Deployments), r.Services)
	}
	p := pod{dep: r.Deployments[0], svc: r.Services[i], env: map[string]string{}, port: map[string]int32{}}
	cs := p.dep.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want one container, got %d", len(cs))
	}
	p.c = cs[0]
	for _, ef := range p.c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: only configMapRef is expected", ef)
		}
		i := slices.IndexFunc(r.ConfigMaps, func(cm corev1.ConfigMap) bool { return cm.Name == ef.ConfigMapRef.Name })
		if i < 0 {
			t.Fatalf("envFrom names ConfigMap %q, which the overlay does not render", ef.ConfigMapRef.Name)
		}
		for k, v := range r.ConfigMaps[i].Data {
			p.env[k] = v
		}
	}
	for _, e := range p.c.Env { // env wins over envFrom, as in the kubelet
		if e.ValueFrom == nil {
			p.env[e.Name] = e.Value
		} else if strings.HasPrefix(e.Name, "LOOPCAST_") {
			t.Errorf("%s comes from valueFrom; the tests cannot check it", e.Name)
		}
	}
	for _, cp := range p.c.Ports {
		p.port[cp.Name] = cp.ContainerPort
	}
	return p
}

// environ is the pod's environment as os.Environ lists it.
func (p pod) environ() []string {
	var env []string
	for k, v := range p.env {
		env = append(env, k+"="+v)
	}
	return env
}

// portNumber resolves a probe or Service target port, named or numbered.
func (p pod) portNumber(t *testing.T, v intstr.IntOrString) int32 {
	t.Helper()
	if v.Type == intstr.Int {
		return v.IntVal
	}
	n, ok := p.port[v.StrVal]
	if !ok {
		t.Fatalf("port %q names no containerPort", v.StrVal)
	}
	return n
}

func mustAtoi(t *testing.T, what, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || fmt.Sprint(n) != s {
		t.Fatalf("%s = %q: want a whole number", what, s)
	}
	return n
}
