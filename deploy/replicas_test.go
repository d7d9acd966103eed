package deploy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/loopcast/loopcast/cmd/loopcast/flags"
)

// TestReplicasNeedABroker: an overlay runs more than one pod only with a
// broker. Without LOOPCAST_NATS_URL the HPA holds one pod (a room's
// members must share it); with it the HPA scales from at least 2. The
// Deployment never sets replicas (the HPA owns the count). Every overlay
// names, in LOOPCAST_PEERS_DNS, a headless Service that resolves to every
// pod, ready or not, so a pod notices others without a broker.
func TestReplicasNeedABroker(t *testing.T) {
	for dir := range overlays {
		r := render(t, dir)
		if len(r.Deployments) == 0 {
			continue
		}
		t.Run(dir, func(t *testing.T) {
			p := podOf(t, r)
			if p.dep.Spec.Replicas != nil {
				t.Errorf("Deployment replicas %d: leave the count to the HPA", *p.dep.Spec.Replicas)
			}
			if len(r.HPAs) != 1 || r.HPAs[0].Spec.MinReplicas == nil {
				t.Fatal("want one HPA with minReplicas")
			}
			lo, hi := *r.HPAs[0].Spec.MinReplicas, r.HPAs[0].Spec.MaxReplicas
			_, opts, err := flags.Load(nil, p.environ(), nil)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case opts.NATSURL == "" && (lo != 1 || hi != 1):
				t.Errorf("no broker but the HPA scales %d-%d: rooms would be split across pods; want 1-1, or add the NATS component", lo, hi)
			case opts.NATSURL != "" && (lo < 2 || hi < lo):
				t.Errorf("with NATS the HPA scales %d-%d: want at least 2 pods", lo, hi)
			}

			cfg := p.config(t)
			if cfg.PeersDNS == "" {
				t.Fatalf("%s is not set", flags.EnvName("peers-dns"))
			}
			name, _, _ := strings.Cut(cfg.PeersDNS, ".") // a short name resolves in the pod's namespace
			var svc *corev1.Service
			for i := range r.Services {
				if r.Services[i].Name == name {
					svc = &r.Services[i]
				}
			}
			if svc == nil {
				t.Fatalf("%s=%s names no Service of the overlay", flags.EnvName("peers-dns"), cfg.PeersDNS)
			}
			if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s: clusterIP %q publishNotReadyAddresses %v; want a headless Service listing unready pods too", name, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
			}
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.dep.Spec.Template.Labels)) {
				t.Errorf("Service %s does not select the pods", name)
			}
			for _, ing := range r.Ingresses {
				for _, rule := range ing.Spec.Rules {
					for _, hp := range rule.HTTP.Paths {
						if hp.Backend.Service != nil && hp.Backend.Service.Name == name {
							t.Errorf("the Ingress routes to %s", name)
						}
					}
				}
			}
		})
	}
}
