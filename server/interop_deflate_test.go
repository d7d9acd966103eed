package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/loopcast/loopcast/server"
)

// permessage-deflate with independent clients that compress: gorilla
// (EnableCompression), coder/websocket (both of its compression modes) and
// Node's ws (perMessageDeflate). Each sends compressed text and binary to
// /echo and gets them back, and gets a room's large message compressed.

func compressibleJSON(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString(`{"symbol":"EURUSD","bid":1.0842,"ask":1.0844,"ts":1733000000},`)
	}
	return b.Bytes()[:n]
}

func TestInteropGorillaDeflate(t *testing.T) {
	srv := startServer(t, testConfig())
	d := gorilla.Dialer{EnableCompression: true, HandshakeTimeout: ioTimeout}
	c, resp, err := d.Dial("ws://"+srv.Addr().String()+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("not negotiated: %q", ext)
	}
	c.EnableWriteCompression(true)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, m := range []struct {
		typ  int
		data []byte
	}{{gorilla.TextMessage, compressibleJSON(100_000)}, {gorilla.BinaryMessage, bytes.Repeat([]byte{1, 2, 3, 0}, 5000)}, {gorilla.TextMessage, []byte("é")}} {
		if err := c.WriteMessage(m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.ReadMessage()
		if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
			t.Fatalf("echo: %d, %d bytes, %v", typ, len(got), err)
		}
	}
	if srv.Stats().Inflated < 3 {
		t.Fatalf("gorilla's messages did not come compressed: %+v", srv.Stats().Inflated)
	}
	// A room: the large message arrives compressed and gorilla inflates it.
	m, _, err := d.Dial("ws://"+srv.Addr().String()+"/ws/feed", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, ioTimeout, "member", func() bool { return srv.Stats().WebSockets == 2 })
	big := compressibleJSON(1024)
	if _, err := srv.Publish("feed", server.Text, big); err != nil {
		t.Fatal(err)
	}
	_ = m.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, got, err := m.ReadMessage(); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("room message: %d bytes, %v", len(got), err)
	}
	if srv.Stats().CompressedMessages == 0 {
		t.Fatal("the room message was not compressed")
	}
}

func TestInteropCoderDeflate(t *testing.T) {
	srv := startServer(t, testConfig())
	for _, mode := range []coder.CompressionMode{coder.CompressionContextTakeover, coder.CompressionNoContextTakeover} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, resp, err := coder.Dial(ctx, "ws://"+srv.Addr().String()+"/echo", &coder.DialOptions{CompressionMode: mode, CompressionThreshold: 64})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "client_no_context_takeover") {
			t.Fatalf("mode %v: %q", mode, ext)
		}
		before := srv.Stats().Inflated
		for i := range 3 { // several messages: context takeover would show on the second
			for _, m := range []struct {
				typ  coder.MessageType
				data []byte
			}{{coder.MessageText, compressibleJSON(20_000 + i)}, {coder.MessageBinary, bytes.Repeat([]byte{9, 8, 7}, 3000)}} {
				if err := c.Write(ctx, m.typ, m.data); err != nil {
					t.Fatal(err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
					t.Fatalf("mode %v: echo %v, %d bytes, %v", mode, typ, len(got), err)
				}
			}
		}
		if srv.Stats().Inflated-before < 6 {
			t.Fatalf("mode %v: coder's messages did not come compressed", mode)
		}
		_ = c.Close(coder.StatusNormalClosure, "")
		cancel()
	}
}

func TestInteropNodeWsDeflate(t *testing.T) {
	nodeModules(t)
	srv := startServer(t, testConfig())
	cmd := exec.Command("node", "deflate.mjs", "ws://"+srv.Addr().String())
	cmd.Dir = nodeDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan []byte, 1)
	go func() {
		out, _ := cmd.Output()
		done <- out
	}()
	// The script joins /ws/feed, then says so; publish then.
	waitFor(t, 10*time.Second, "node's member in feed", func() bool {
		for _, r := range srv.Rooms() {
			if r.Name == "feed" && r.Members == 1 {
				return true
			}
		}
		return false
	})
	big := compressibleJSON(2048)
	if _, err := srv.Publish("feed", server.Text, big); err != nil {
		t.Fatal(err)
	}
	var out []byte
	select {
	case out = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("node did not finish: %s", stderr.String())
	}
	var res struct {
		Extensions string
		Echoes     []bool
		Room       int
		Error      string
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil || res.Error != "" {
		t.Fatalf("node: %q %v\n%s", out, err, stderr.String())
	}
	if !strings.HasPrefix(res.Extensions, "permessage-deflate") || len(res.Echoes) != 2 || !res.Echoes[0] || !res.Echoes[1] || res.Room != len(big) {
		t.Fatalf("node: %+v", res)
	}
	if st := srv.Stats(); st.Inflated < 2 || st.CompressedMessages == 0 {
		t.Fatalf("nothing went compressed: %+v", st)
	}
}

// chromiumBinary finds headless Chromium (apt: chromium).
func chromiumBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found (apt-get install chromium; .ci/run installs it)")
	return ""
}

// Headless Chromium, driven over the DevTools protocol: a browser offers
// permessage-deflate on every WebSocket, compresses what it sends and
// inflates what loopcast compressed.
func TestInteropChromiumDeflate(t *testing.T) {
	nodeModules(t)
	bin := chromiumBinary(t)
	srv := startServer(t, testConfig())
	cmd := exec.Command("node", "chromium.mjs", bin, srv.Addr().String())
	cmd.Dir = nodeDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res struct {
		Extensions                 string
		TextEcho, BinaryEcho, Room bool
		Error                      string
	}
	if jerr := json.Unmarshal(bytes.TrimSpace(out), &res); jerr != nil || err != nil || res.Error != "" {
		t.Fatalf("chromium: %v %q\n%s", err, out, stderr.String())
	}
	if res.Extensions != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" || !res.TextEcho || !res.BinaryEcho || !res.Room {
		t.Fatalf("chromium saw %+v", res)
	}
	if st := srv.Stats(); st.Inflated < 3 || st.CompressedMessages < 1 {
		t.Fatalf("compression did not happen both ways: inflated %d, compressed %d", st.Inflated, st.CompressedMessages)
	}
}
