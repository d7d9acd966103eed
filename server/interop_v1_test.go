package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"

	"github.com/loopcast/loopcast/server"
)

// loopcast.v1 with independent clients: Node's ws and coder/websocket
// (gorilla speaks it in the drop test). Each subscribes, publishes text
// and binary with acknowledgements and reads the room's messages.

// nodeDir holds the Node interop client; its ws dependency is installed
// (npm ci) on first use when missing.
var nodeDir = filepath.Join("testdata", "node")

var npmOnce sync.Once

func nodeModules(t *testing.T) {
	t.Helper()
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "ws")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = nodeDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("npm ci in %s: %v\n%s", nodeDir, err, out)
		}
	})
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "ws")); err != nil {
		t.Fatalf("Node's ws is not installed in %s (npm ci there; needs Node and npm): %v", nodeDir, err)
	}
}

func TestInteropNodeWsSpeaksV1(t *testing.T) {
	nodeModules(t)
	srv := startServer(t, testConfig())
	watcher := dialProto(t, srv, "/ws/lobby")
	epoch, _ := watcher.subscribed(0, "lobby", "live")

	cmd := exec.Command("node", "v1.mjs", "ws://"+srv.Addr().String()+"/ws", "lobby")
	cmd.Dir = nodeDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s\n%s", err, out, stderr.String())
	}
	type line struct {
		Protocol *string
		Binary   bool
		Data     string
		Close    *int
		Error    string
	}
	var lines []line
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("node printed %q", sc.Text())
		}
		lines = append(lines, l)
	}
	if len(lines) != 7 || lines[0].Protocol == nil || *lines[0].Protocol != "loopcast.v1" || lines[6].Close == nil || *lines[6].Close != 1000 {
		t.Fatalf("node session: %s", out)
	}
	if lines[1].Binary || !strings.HasPrefix(lines[1].Data, "sub 1 lobby "+epoch+" 0 live") {
		t.Fatalf("sub reply %+v", lines[1])
	}
	// Its own messages (subscribed) and both acknowledgements, each
	// message before its acknowledgement.
	bin := base64.StdEncoding.EncodeToString([]byte("msg lobby " + epoch + " 2\n\x00\x01\x02\xff"))
	want := []line{
		{Data: "msg lobby " + epoch + " 1\nhéllo from node"},
		{Data: "pub 2 lobby " + epoch + " 1"},
		{Binary: true, Data: bin},
		{Data: "pub 3 lobby " + epoch + " 2"},
	}
	for i, w := range want {
		if g := lines[2+i]; g.Binary != w.Binary || g.Data != w.Data {
			t.Fatalf("frame %d: %+v, want %+v", i, g, w)
		}
	}
	watcher.msg("lobby", opText, "héllo from node")
	watcher.msg("lobby", opBinary, "\x00\x01\x02\xff")
}

func TestInteropCoderSpeaksV1(t *testing.T) {
	srv := startServer(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := coder.Dial(ctx, "ws://"+srv.Addr().String()+"/ws", &coder.DialOptions{Subprotocols: []string{"other", "loopcast.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if c.Subprotocol() != "loopcast.v1" || resp.Header.Get("Sec-WebSocket-Protocol") != "loopcast.v1" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	read := func() (coder.MessageType, string) {
		t.Helper()
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return typ, string(b)
	}
	for _, room := range []string{"a", "b"} {
		if err := c.Write(ctx, coder.MessageText, []byte("sub 1 "+room)); err != nil {
			t.Fatal(err)
		}
		if typ, s := read(); typ != coder.MessageText || !strings.HasPrefix(s, "sub 1 "+room+" ") || !strings.HasSuffix(s, " 0 live") {
			t.Fatalf("sub reply %v %q", typ, s)
		}
	}
	// coder writes a large message in one frame; a 200 KiB binary payload.
	big := bytes.Repeat([]byte{0xfe, 0x00}, 100<<10)
	if err := c.Write(ctx, coder.MessageBinary, append([]byte("pub 0 b\n"), big...)); err != nil {
		t.Fatal(err)
	}
	typ, s := read()
	if line, body, _ := strings.Cut(s, "\n"); typ != coder.MessageBinary || !strings.HasPrefix(line, "msg b ") || !strings.HasSuffix(line, " 1") || body != string(big) {
		t.Fatalf("got %v %q…", typ, s[:min(40, len(s))])
	}
	if _, err := srv.Publish("a", server.Text, []byte("from the API")); err != nil {
		t.Fatal(err)
	}
	if typ, s := read(); typ != coder.MessageText || !strings.HasSuffix(s, " 1\nfrom the API") {
		t.Fatalf("got %v %q", typ, s)
	}
	if err := c.Close(coder.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}
