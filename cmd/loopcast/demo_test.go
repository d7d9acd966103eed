package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loopcast/loopcast/internal/testutil"
)

// The demo, one flag away: /demo/ and its client are served (HEAD too),
// other paths keep the health answer, and without --demo /demo/ is
// health.
func TestDemoPages(t *testing.T) {
	p := startBinary(t, "--demo")
	get := func(path string) (int, string, string) {
		resp, err := http.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, ct, body := get("/demo/"); code != 200 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "loopcast demo") {
		t.Fatalf("/demo/: %d %s", code, ct)
	}
	if code, ct, body := get("/demo/loopcast-client.js"); code != 200 || !strings.HasPrefix(ct, "text/javascript") || !strings.Contains(body, "export class Client") {
		t.Fatalf("client: %d %s", code, ct)
	}
	if code, _, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("health: %d %q", code, body)
	}
	// /demo/token signs a token for the demo.* rooms; a name it cannot
	// carry becomes a guest's.
	var tok struct{ Token, User string }
	if code, ct, body := get("/demo/token?user=ana"); code != 200 || ct != "application/json" || json.Unmarshal([]byte(body), &tok) != nil || tok.User != "ana" {
		t.Fatalf("/demo/token: %d %s %s", code, ct, body)
	}
	var guest struct{ User string }
	if _, _, body := get("/demo/token?user=%3Cscript%3E"); json.Unmarshal([]byte(body), &guest) != nil || !strings.HasPrefix(guest.User, "guest-") {
		t.Fatalf("/demo/token for <script>: %s", body)
	}
	d := websocket.Dialer{Subprotocols: []string{"loopcast.v1"}}
	if _, resp, err := d.Dial("ws://"+p.addr+"/ws", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("the demo's /ws without a token: %v %v", resp, err)
	}
	c, _, err := d.Dial("ws://"+p.addr+"/ws?token="+tok.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, cmd := range []string{"sub 1 demo.chat", "sub 2 secret", "presence 3 demo.chat"} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}
	var replies []string
	for range 3 {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, string(b))
	}
	if !strings.HasPrefix(replies[0], "sub 1 demo.chat ") || !strings.HasPrefix(replies[1], "err 2 forbidden ") ||
		replies[2] != `presence 3 demo.chat 1 1`+"\n"+`[{"user":"ana","info":{"name":"ana"}}]` {
		t.Fatalf("replies %q", replies)
	}
	q := startBinary(t)
	resp, err := http.Get("http://" + q.addr + "/demo/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok\n" {
		t.Fatalf("/demo/ without --demo: %q", b)
	}
}

// Two headless Chromium pages on the demo chat; then every connection is
// cut (the gateway in front of the binary) while the ticker runs; both
// pages resume and end with every ticker message once, in order, nothing
// missed. With DEMO_SCREENSHOT=path the first page is saved as a PNG
// (README's screenshot: DEMO_SCREENSHOT=docs/demo.png).
func TestDemoInChromium(t *testing.T) {
	// Chromium offers permessage-deflate on every WebSocket: with
	// compression on it is negotiated (and Chromium compresses what it
	// sends), with it off the same test passes without.
	for _, tc := range []struct {
		name     string
		flags    []string
		inflated bool
	}{{"compression on", nil, true}, {"compression off", []string{"--compression=false"}, false}} {
		t.Run(tc.name, func(t *testing.T) { demoInChromium(t, tc.flags, tc.inflated) })
	}
}

func demoInChromium(t *testing.T, flags []string, wantInflated bool) {
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		t.Fatal("Chromium not found (apt-get install chromium; .ci/run installs it)")
	}
	nodeDir := filepath.Join("..", "..", "server", "testdata", "node")
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "ws")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = nodeDir
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	// A grace long enough for every reconnect after the drop (no leave),
	// short enough that bo's closed page leaves within the test.
	p := startBinary(t, append([]string{"--demo", "--presence-grace", "5s"}, flags...)...)
	gw := testutil.StartGateway(t, p.addr)
	args := []string{"demo.mjs", chromium, "http://" + gw.Addr() + "/demo/"}
	if shot := os.Getenv("DEMO_SCREENSHOT"); shot != "" && wantInflated {
		abs, _ := filepath.Abs(shot)
		args = append(args, abs)
	}
	cmd := exec.Command("node", args...)
	cmd.Dir = nodeDir
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("node: %q\n%s", lines.Text(), stderr.String())
	}
	time.Sleep(700 * time.Millisecond)  // a tick or two published while connected
	gw.DropAll()                        // every connection cut, as a gateway update does
	time.Sleep(1200 * time.Millisecond) // ticks published while the pages reconnect
	io.WriteString(stdin, "dropped\n")
	if !lines.Scan() {
		t.Fatalf("node ended: %s", stderr.String())
	}
	var res struct {
		Pages []struct {
			Ticker     []uint64
			Chat       []uint64
			Missed     int
			Replayed   int
			Reconnects int
			Resume     string
			Leaves     []string
			Here       []string
		}
		AnaSawLeave []string
		Error       string
	}
	if err := json.Unmarshal(lines.Bytes(), &res); err != nil || res.Error != "" || len(res.Pages) != 2 {
		t.Fatalf("node: %s %v\n%s", lines.Text(), err, stderr.String())
	}
	for i, pg := range res.Pages {
		if pg.Missed != 0 || pg.Reconnects < 1 || len(pg.Chat) != 1 {
			t.Fatalf("page %d: %+v", i, pg)
		}
		for j := 1; j < len(pg.Ticker); j++ {
			if pg.Ticker[j] != pg.Ticker[j-1]+1 {
				t.Fatalf("page %d: ticker offsets %v: a gap or a duplicate at %d", i, pg.Ticker, j)
			}
		}
		if !strings.HasPrefix(pg.Resume, "reconnected: ") || !strings.HasSuffix(pg.Resume, ", 0 missed") {
			t.Fatalf("page %d says %q", i, pg.Resume)
		}
		// The drop was a reconnect, not a leave: both still listed, and
		// nobody announced leaving.
		if len(pg.Leaves) != 0 || strings.Join(pg.Here, ",") != "ana,bo" {
			t.Fatalf("page %d after the drop: here %v, leaves %v", i, pg.Here, pg.Leaves)
		}
	}
	if strings.Join(res.AnaSawLeave, ",") != "bo" {
		t.Fatalf("ana saw leaves %v, want bo's once his page closed", res.AnaSawLeave)
	}
	var st struct {
		Inflated int64 `json:"inflated_messages"`
	}
	if err := json.Unmarshal([]byte(adminGet(t, p, "/stats")), &st); err != nil {
		t.Fatal(err)
	}
	if (st.Inflated > 0) != wantInflated {
		t.Fatalf("compressed client messages: %d, want them %v", st.Inflated, wantInflated)
	}
}
