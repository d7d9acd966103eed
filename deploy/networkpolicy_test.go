package deploy

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestAdminPortPolicy: in every overlay the pods' NetworkPolicy leaves the
// main port open and the admin port to named peers only, and the in-cluster
// admin Service reaches the admin port and nothing routes to it from
// outside.
func TestAdminPortPolicy(t *testing.T) {
	for _, dir := range []string{"base", "agic", "agc", "nats"} {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			p := podOf(t, r)
			if len(r.Policies) != 1 {
				t.Fatalf("%d NetworkPolicies, want 1", len(r.Policies))
			}
			np := r.Policies[0]
			for k, v := range np.Spec.PodSelector.MatchLabels {
				if p.dep.Spec.Template.Labels[k] != v {
					t.Fatalf("the policy selects %s=%s, which the pods do not carry", k, v)
				}
			}
			if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
				t.Fatal("policyTypes lacks Ingress: the rules would not restrict anything")
			}
			open, admin := false, false
			for _, rule := range np.Spec.Ingress {
				for _, port := range rule.Ports {
					switch port.Port.IntVal {
					case p.port["http"]:
						open = len(rule.From) == 0 // from anywhere: the gateway sends to pod IPs
					case p.port["admin"]:
						if len(rule.From) == 0 {
							t.Fatal("the admin port is open to every peer")
						}
						for _, peer := range rule.From {
							if peer.IPBlock != nil || (peer.PodSelector == nil && peer.NamespaceSelector == nil) ||
								(peer.PodSelector != nil && len(peer.PodSelector.MatchLabels) == 0 && peer.NamespaceSelector == nil) {
								t.Fatalf("admin peer %+v admits too much", peer)
							}
							if peer.PodSelector == nil && len(peer.NamespaceSelector.MatchLabels) == 0 {
								t.Fatalf("admin peer %+v admits every namespace", peer)
							}
						}
						admin = true
					}
				}
			}
			if !open || !admin {
				t.Fatalf("main port open %v, admin port rule %v", open, admin)
			}
			i := slices.IndexFunc(r.Services, func(s corev1.Service) bool { return s.Name == "loopcast-admin" })
			if i < 0 {
				t.Fatal("no loopcast-admin Service")
			}
			as := r.Services[i]
			if as.Spec.Type != corev1.ServiceTypeClusterIP || len(as.Spec.Ports) != 1 || as.Spec.Ports[0].TargetPort.IntVal != p.port["admin"] {
				t.Fatalf("admin Service %+v", as.Spec)
			}
			for _, ing := range r.Ingresses {
				for _, rule := range ing.Spec.Rules {
					for _, path := range rule.HTTP.Paths {
						if path.Backend.Service != nil && path.Backend.Service.Name == "loopcast-admin" {
							t.Fatal("the Ingress routes to the admin Service")
						}
					}
				}
			}
			for _, hr := range r.HTTPRoutes {
				for _, rule := range hr.Spec.Rules {
					for _, ref := range rule.BackendRefs {
						if string(ref.Name) == "loopcast-admin" {
							t.Fatal("the HTTPRoute routes to the admin Service")
						}
					}
				}
			}
		})
	}
}
