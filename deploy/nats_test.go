package deploy

import (
	"io"
	"maps"
	"net/url"
	"reflect"
	"testing"

	"github.com/loopcast/loopcast/cmd/loopcast/flags"
	"github.com/loopcast/loopcast/server/cluster"
)

// natsDefaultMaxPayload is nats-server's default max_payload (1 MiB),
// which the Helm chart keeps unless config.merge.max_payload says
// otherwise.
const natsDefaultMaxPayload = 1 << 20

// TestNATSOverlay: deploy/nats is the agic overlay plus LOOPCAST_NATS_URL,
// which the command's own flags.Load reads into --nats-url and the NATS
// bridge accepts; nothing else changes (readiness stays independent of
// NATS); a message of --max-message fits NATS's default max_payload.
func TestNATSOverlay(t *testing.T) {
	nats, agic := render(t, "nats"), render(t, "agic")
	p, a := podOf(t, nats), podOf(t, agic)

	raw := p.env[flags.EnvName("nats-url")]
	if raw == "" {
		t.Fatalf("%s is not set", flags.EnvName("nats-url"))
	}
	cfg, opts, err := flags.Load(nil, p.environ(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opts.NATSURL != raw {
		t.Errorf("flags.Load read --nats-url %q, the manifest sets %q", opts.NATSURL, raw)
	}
	if err := cluster.ValidateURL(opts.NATSURL); err != nil {
		t.Error(err)
	}
	if u, err := url.Parse(raw); err != nil || u.Scheme != "nats" || u.Port() != "4222" || u.Hostname() != "nats.nats.svc.cluster.local" {
		t.Errorf("%s = %q: want the Helm chart's Service, nats://nats.nats.svc.cluster.local:4222 (README.md)", flags.EnvName("nats-url"), raw)
	}
	if cfg.MaxMessage > natsDefaultMaxPayload {
		t.Errorf("max-message %d is over NATS's default max_payload %d: such messages would stay on one pod", cfg.MaxMessage, natsDefaultMaxPayload)
	}

	// The stream loopcast creates: file storage, three replicas (the
	// 3-server NATS cluster of the README's Helm install).
	if opts.NATSStorage != "file" || opts.NATSReplicas != 3 || opts.NATSJetStream != "auto" {
		t.Errorf("stream: storage %q replicas %d jetstream %q, want file, 3, auto", opts.NATSStorage, opts.NATSReplicas, opts.NATSJetStream)
	}
	rest := maps.Clone(p.env)
	for _, f := range []string{"nats-url", "nats-storage", "nats-replicas"} {
		delete(rest, flags.EnvName(f))
	}
	if !maps.Equal(rest, a.env) {
		t.Errorf("the overlay changes more than the NATS settings:\nnats %v\nagic %v", rest, a.env)
	}
	if !reflect.DeepEqual(p.c.ReadinessProbe, a.c.ReadinessProbe) || !reflect.DeepEqual(p.c.Ports, a.c.Ports) {
		t.Error("the overlay changes the probes or ports")
	}
	if !reflect.DeepEqual(nats.Ingresses, agic.Ingresses) {
		t.Error("the overlay changes the Ingress")
	}
}
