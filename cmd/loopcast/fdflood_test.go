package main

import (
	"bufio"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// floodLimit is the open-file limit the flood test gives the server (the
// issue's reproduction: ulimit -n 1024), and floodConns how many idle TCP
// connections it opens, more than the limit.
const (
	floodLimit = 1024
	floodConns = 1100
)

// TestFDFloodKeepsListener is the regression test for the file-descriptor
// flood: with RLIMIT_NOFILE 1024, 1,100 idle TCP connections used to make
// accept fail with EMFILE, gnet stopped the engine, and the main port
// refused everything (/livez too) while the process ran on. Now the
// connections beyond the budget get 503 at accept and are closed at once,
// counted as over_capacity; a session opened before keeps working; and
// once the flood is gone the port serves again.
func TestFDFloodKeepsListener(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash for ulimit")
	}
	if fdLimit() < 2*floodConns {
		t.Skipf("this test process may open only %d files", fdLimit())
	}
	cmd := exec.Command("bash", "-c", `ulimit -n `+strconv.Itoa(floodLimit)+` && exec "$0" "$@"`,
		binary, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--event-loops", "2")
	p := startProc(t, cmd)

	echo, _, err := gorilla.DefaultDialer.Dial("ws://"+p.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()

	flood := make([]net.Conn, 0, floodConns)
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range floodConns {
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(flood), err)
		}
		flood = append(flood, c)
	}
	// The ones beyond the budget were answered 503 and closed: wait
	// until the server counted them all (every connection was accepted:
	// accepted counts them, the budget's share stays open).
	var refused int
	waitMetric(t, p, func(m map[string]float64) bool {
		refused = int(m[`loopcast_closes_total{reason="over_capacity"}`])
		return m["loopcast_accepted_total"] >= floodConns+1 && refused > 0
	})
	held := floodConns - refused
	if held <= 0 || held >= floodLimit {
		t.Fatalf("%d of %d idle connections held under an open-file limit of %d", held, floodConns, floodLimit)
	}
	// A refused one read the 503.
	if line := firstLine(flood[len(flood)-1]); !strings.HasPrefix(line, "HTTP/1.1 503 ") {
		t.Fatalf("the last flood connection read %q, want a 503", line)
	}
	if err := echo.WriteMessage(gorilla.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := echo.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("echo during the flood: %q %v", msg, err)
	}

	for _, c := range flood {
		c.Close()
	}
	flood = flood[:0]
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/livez")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/livez after the flood: %v (the listener was lost)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ws, _, err := gorilla.DefaultDialer.Dial("ws://"+p.addr+"/ws/after", nil)
	if err != nil {
		t.Fatalf("upgrade after the flood: %v", err)
	}
	ws.Close()
	t.Logf("open-file limit %d: %d idle connections held, %d refused with 503 at accept", floodLimit, held, refused)
}

func firstLine(c net.Conn) string {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

var metricLine = regexp.MustCompile(`(?m)^(loopcast_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$`)

// waitMetric polls the admin /metrics until cond holds for its values
// (keyed by name and labels), for at most 30 s.
func waitMetric(t *testing.T, p *proc, cond func(map[string]float64) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := map[string]float64{}
		for _, kv := range metricLine.FindAllStringSubmatch(adminGet(t, p, "/metrics"), -1) {
			m[kv[1]], _ = strconv.ParseFloat(kv[2], 64)
		}
		if cond(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never got there: %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
