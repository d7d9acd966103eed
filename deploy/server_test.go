package deploy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/server"
)

// startFromManifest starts the real server in-process with the manifest's
// configuration, except that it binds 127.0.0.1:0 and leaves the admin
// listener off (so the publish token, a Secret mounted in the cluster,
// is not read: TestPublishTokenFromSecret checks where it comes from).
func startFromManifest(t *testing.T, p pod) *server.Server {
	t.Helper()
	cfg := p.config(t)
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = ""
	cfg.PublishTokenFile = ""
	return startServer(t, cfg)
}

// startServer runs the real server with cfg until the test ends.
func startServer(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// get does one probe-like request, as the kubelet and the gateway do: no
// keep-alive, Host as the gateway's default probe sends it.
func get(t *testing.T, addr, path string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost"
	req.Close = true
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestProbesServedByServer: the paths the kubelet, AGIC's copy of the
// readiness probe, the AGIC annotation and AGC's HealthCheckPolicy use are
// answered 200 by the server, on the port the manifests name; readiness
// turns 503 once draining while liveness stays 200.
func TestProbesServedByServer(t *testing.T) {
	agic, agc := render(t, "agic"), render(t, "agc")
	p := podOf(t, agic)
	srv := startFromManifest(t, p)
	addr := srv.Addr().String()

	paths := map[string]string{
		"readinessProbe":              p.c.ReadinessProbe.HTTPGet.Path,
		"livenessProbe":               p.c.LivenessProbe.HTTPGet.Path,
		"AGIC health-probe-path":      agic.Ingresses[0].Annotations["appgw.ingress.kubernetes.io/health-probe-path"],
		"AGC HealthCheckPolicy":       agc.HealthCheck[0].Spec.Default.HTTP.Path,
		"Application Gateway default": "/",
	}
	for what, path := range paths {
		if code := get(t, addr, path); code != http.StatusOK {
			t.Errorf("%s GET %s: %d, want 200", what, path, code)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	ready := p.c.ReadinessProbe.HTTPGet.Path
	deadline := time.Now().Add(20 * time.Second)
	for get(t, addr, ready) != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatalf("GET %s still not 503 while draining", ready)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := get(t, addr, p.c.LivenessProbe.HTTPGet.Path); code != http.StatusOK {
		t.Errorf("liveness %s while draining: %d, want 200", p.c.LivenessProbe.HTTPGet.Path, code)
	}
	cancel() // the manifest's drain-delay is 15 s; cut it short
	<-done
}

// TestReadmeCurlCheck: the curl check in README.md carries a valid key
// and the Sec-WebSocket-Accept it shows is what the server answers.
func TestReadmeCurlCheck(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	check := regexp.MustCompile(`Sec-WebSocket-Key: ([A-Za-z0-9+/=]+)"? *\\\n *http://[^/\s]+(/\S*)`).FindSubmatch(b)
	accept := regexp.MustCompile(`Sec-WebSocket-Accept: ([A-Za-z0-9+/=]+)`).FindSubmatch(b)
	if check == nil || accept == nil {
		t.Fatal("README.md: want a curl check whose last header is Sec-WebSocket-Key before the URL, and the expected Sec-WebSocket-Accept")
	}
	key, path := check[1], check[2]
	if raw, err := base64.StdEncoding.DecodeString(string(key)); err != nil || len(raw) != 16 {
		t.Fatalf("Sec-WebSocket-Key %s: RFC 6455 4.2.1 wants base64 of 16 bytes", key)
	}
	sum := sha1.Sum([]byte(string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if want := base64.StdEncoding.EncodeToString(sum[:]); string(accept[1]) != want {
		t.Errorf("README shows Sec-WebSocket-Accept %s, RFC 6455 gives %s", accept[1], want)
	}

	srv := startFromManifest(t, podOf(t, render(t, "agic")))
	c, err := net.DialTimeout("tcp", srv.Addr().String(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: ws.contoso.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Origin: http://localhost\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", path, key)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("curl check against %s: %s, want 101", path, resp.Status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != string(accept[1]) {
		t.Errorf("server's Sec-WebSocket-Accept %s, README shows %s", got, accept[1])
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Errorf("Upgrade: %q", resp.Header.Get("Upgrade"))
	}
}
