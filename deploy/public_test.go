package deploy

import (
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/loopcast/loopcast/cmd/loopcast/flags"
	"github.com/loopcast/loopcast/server"
)

// readme is deploy/README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPublicRouteLimits: every overlay caps sessions per client address
// and per pod and limits client publishing, and trusts X-Forwarded-For
// only from the gateway's subnet: the README's `az aks create
// --appgw-subnet-cidr`, so the placeholder and the guide agree.
func TestPublicRouteLimits(t *testing.T) {
	m := regexp.MustCompile(`--appgw-subnet-cidr (\S+)`).FindStringSubmatch(readme(t))
	if m == nil {
		t.Fatal("deploy/README.md: no --appgw-subnet-cidr in the step-by-step guide")
	}
	subnet := netip.MustParsePrefix(m[1])
	for dir := range overlays {
		r := render(t, dir)
		if len(r.Deployments) == 0 {
			continue
		}
		t.Run(dir, func(t *testing.T) {
			cfg := podOf(t, r).config(t)
			if cfg.MaxConnsPerIP <= 0 || cfg.MaxConns <= 0 {
				t.Errorf("max-conns-per-ip %d, max-conns %d: want both capped", cfg.MaxConnsPerIP, cfg.MaxConns)
			}
			if cfg.MaxConnsPerIP >= cfg.MaxConns {
				t.Errorf("max-conns-per-ip %d is not below max-conns %d", cfg.MaxConnsPerIP, cfg.MaxConns)
			}
			if cfg.PublishRate <= 0 || cfg.PublishBurst <= 0 {
				t.Errorf("publish-rate %v burst %d: want a limit", cfg.PublishRate, cfg.PublishBurst)
			}
			if len(cfg.TrustedProxies) == 0 {
				t.Fatal("trusted-proxies is empty: behind the gateway every client would count as its address")
			}
			var covers bool
			for _, s := range cfg.TrustedProxies {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					t.Fatalf("trusted-proxies %q: %v", s, err)
				}
				if p.Bits() < 8 || !p.Addr().IsPrivate() {
					t.Errorf("trusted-proxies %s: want the gateway's private subnet, not a wide or public range", p)
				}
				covers = covers || (p.Contains(subnet.Addr()) && p.Bits() <= subnet.Bits())
			}
			if !covers {
				t.Errorf("trusted-proxies %v does not cover the guide's gateway subnet %s", cfg.TrustedProxies, subnet)
			}
		})
	}
}

// TestImageSetInOnePlace: the shipped overlays render an image that
// cannot be pulled and says what to do (a .invalid registry), and the
// README's own overlay (examples/my-loopcast) replaces it with the
// registry and the tag the guide's `az acr build` pushes.
func TestImageSetInOnePlace(t *testing.T) {
	const placeholder = "your-registry.invalid/loopcast:v1"
	for dir := range overlays {
		r := render(t, dir)
		if len(r.Deployments) == 0 {
			continue
		}
		img := podOf(t, r).c.Image
		switch {
		case dir == "examples/my-loopcast":
			if img == placeholder || !strings.HasSuffix(strings.SplitN(img, "/", 2)[0], ".azurecr.io") {
				t.Errorf("%s: image %q, want the registry the overlay sets", dir, img)
			}
			m := regexp.MustCompile(`az acr build -r \$ACR -t (\S+) \.`).FindStringSubmatch(readme(t))
			if m == nil {
				t.Fatal("deploy/README.md: no `az acr build -r $ACR -t IMAGE .` step")
			}
			if _, tag, _ := strings.Cut(img, ":"); "loopcast:"+tag != m[1] {
				t.Errorf("%s: image %q, the guide builds %s", dir, img, m[1])
			}
		case img != placeholder:
			t.Errorf("%s: image %q, want the placeholder %s (set the image in your overlay only)", dir, img, placeholder)
		}
	}
}

// TestTLSExamples: the AGIC examples serve wss:// with the certificate
// from a Secret (spec.tls) or from the gateway, i.e. Key Vault
// (appgw-ssl-certificate), redirect http://, keep every probe and timeout
// annotation of deploy/agic and the backend; the AGC example adds an
// HTTPS listener with the Secret, moves the route to it, and redirects
// the HTTP listener.
func TestTLSExamples(t *testing.T) {
	base := render(t, "nats").Ingresses[0]
	checkIngress := func(dir string, ing networkingv1.Ingress) string {
		t.Helper()
		for k, v := range base.Annotations {
			if ing.Annotations[k] != v {
				t.Errorf("%s: annotation %s = %q, want deploy/agic's %q", dir, k, ing.Annotations[k], v)
			}
		}
		if ing.Annotations["appgw.ingress.kubernetes.io/ssl-redirect"] != "true" {
			t.Errorf("%s: want ssl-redirect", dir)
		}
		if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host == "" {
			t.Fatalf("%s: want one rule with the certificate's host", dir)
		}
		if !slices.EqualFunc(ing.Spec.Rules[0].HTTP.Paths, base.Spec.Rules[0].HTTP.Paths, func(a, b networkingv1.HTTPIngressPath) bool {
			return a.Path == b.Path && *a.PathType == *b.PathType && *a.Backend.Service == *b.Backend.Service
		}) {
			t.Errorf("%s: paths %+v differ from deploy/agic's", dir, ing.Spec.Rules[0].HTTP.Paths)
		}
		return ing.Spec.Rules[0].Host
	}

	secret := render(t, "examples/agic-tls").Ingresses[0]
	host := checkIngress("agic-tls", secret)
	if len(secret.Spec.TLS) != 1 || secret.Spec.TLS[0].SecretName == "" || !slices.Equal(secret.Spec.TLS[0].Hosts, []string{host}) {
		t.Errorf("agic-tls: tls %+v, want the Secret for %s", secret.Spec.TLS, host)
	}

	kv := render(t, "examples/agic-tls-keyvault").Ingresses[0]
	checkIngress("agic-tls-keyvault", kv)
	if kv.Annotations["appgw.ingress.kubernetes.io/appgw-ssl-certificate"] == "" || len(kv.Spec.TLS) != 0 {
		t.Errorf("agic-tls-keyvault: want appgw-ssl-certificate and no spec.tls (the key stays in Key Vault)")
	}

	agc := render(t, "examples/agc-tls")
	plain := render(t, "nats-agc")
	if len(agc.Gateways) != 1 {
		t.Fatal("agc-tls: want one Gateway")
	}
	var https *gwv1.Listener
	for i, l := range agc.Gateways[0].Spec.Listeners {
		if l.Protocol == gwv1.HTTPSProtocolType {
			https = &agc.Gateways[0].Spec.Listeners[i]
		}
	}
	if https == nil || https.Port != 443 || https.Hostname == nil || https.TLS == nil ||
		https.TLS.Mode == nil || *https.TLS.Mode != gwv1.TLSModeTerminate || len(https.TLS.CertificateRefs) != 1 {
		t.Fatalf("agc-tls: want an HTTPS listener on 443 terminating TLS with one certificate, got %+v", https)
	}
	if ref := https.TLS.CertificateRefs[0]; ref.Kind == nil || *ref.Kind != "Secret" || ref.Name == "" {
		t.Errorf("agc-tls: certificateRef %+v, want a Secret", ref)
	}
	if !maps2Equal(agc.Gateways[0].Annotations, plain.Gateways[0].Annotations) {
		t.Error("agc-tls: the Gateway lost its ALB annotations")
	}
	var routed, redirected bool
	for _, rt := range agc.HTTPRoutes {
		if len(rt.Spec.ParentRefs) != 1 || rt.Spec.ParentRefs[0].SectionName == nil {
			t.Fatalf("agc-tls: route %s: want one parentRef with a sectionName", rt.Name)
		}
		section := string(*rt.Spec.ParentRefs[0].SectionName)
		if !slices.Equal(rt.Spec.Hostnames, []gwv1.Hostname{*https.Hostname}) {
			t.Errorf("agc-tls: route %s hostnames %v, want %s", rt.Name, rt.Spec.Hostnames, *https.Hostname)
		}
		switch {
		case rt.Name == "loopcast":
			routed = section == string(https.Name) && len(rt.Spec.Rules) == 1 &&
				len(rt.Spec.Rules[0].BackendRefs) == 1 && rt.Spec.Rules[0].BackendRefs[0].Name == plain.HTTPRoutes[0].Spec.Rules[0].BackendRefs[0].Name
		case len(rt.Spec.Rules) == 1 && len(rt.Spec.Rules[0].Filters) == 1:
			f := rt.Spec.Rules[0].Filters[0]
			redirected = section == "http" && f.Type == gwv1.HTTPRouteFilterRequestRedirect &&
				f.RequestRedirect.Scheme != nil && *f.RequestRedirect.Scheme == "https" && len(rt.Spec.Rules[0].BackendRefs) == 0
		}
	}
	if !routed || !redirected {
		t.Errorf("agc-tls: route on the HTTPS listener %v, redirect on http %v", routed, redirected)
	}
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestEntraIDExample: the JWT settings load with the server's own flags
// and pass its validation, and name one tenant's Microsoft Entra ID v2.0
// keys and issuer.
func TestEntraIDExample(t *testing.T) {
	p := podOf(t, render(t, "examples/entra-id"))
	cfg := p.config(t)
	u, err := url.Parse(cfg.JWTJWKSURL)
	if err != nil || u.Scheme != "https" || u.Host != "login.microsoftonline.com" {
		t.Fatalf("%s = %q: want https://login.microsoftonline.com/TENANT/discovery/v2.0/keys", flags.EnvName("jwt-jwks-url"), cfg.JWTJWKSURL)
	}
	tenant, ok := strings.CutSuffix(strings.TrimPrefix(u.Path, "/"), "/discovery/v2.0/keys")
	if !ok || tenant == "" || strings.Contains(tenant, "/") {
		t.Errorf("JWKS path %q: want /TENANT/discovery/v2.0/keys", u.Path)
	}
	if want := "https://login.microsoftonline.com/" + tenant + "/v2.0"; cfg.JWTIssuer != want {
		t.Errorf("issuer %q, want %q (the v2.0 tokens' iss for the same tenant)", cfg.JWTIssuer, want)
	}
	if cfg.JWTAudience == "" {
		t.Error("no audience: any token of the tenant, for any app, would do")
	}
	cfg.PublishTokenFile, cfg.PublishToken = "", "x" // a mounted Secret in the cluster
	if _, err := server.New(cfg, nil); err != nil {
		t.Errorf("the server refuses the configuration: %v", err)
	}
}
