package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// A real HTTP backend for the hooks: answer decides each call from its
// JSON body; calls counts them.
type backend struct {
	*httptest.Server
	calls  atomic.Int64
	answer func(req map[string]any) (status int, body any)
}

func startBackend(t *testing.T, answer func(req map[string]any) (int, any)) *backend {
	t.Helper()
	b := &backend{answer: answer}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		var req map[string]any
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil || r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", 400)
			return
		}
		status, out := b.answer(req)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(b.Close)
	return b
}

// upgradeWith sends an upgrade to path with extra header lines and
// returns the answer's status and body (the client, when 101).
func upgradeWith(t *testing.T, srv *server.Server, path string, headers ...string) (int, string, v1) {
	t.Helper()
	c := dialRaw(t, srv.Addr())
	req := strings.TrimSuffix(upgradeRequest(path, newKey()), "\r\n") + "Sec-WebSocket-Protocol: loopcast.v1\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	c.write([]byte(req + "\r\n"))
	resp := c.readResponse(false)
	return resp.status, string(resp.body), v1{c}
}

func TestConnectHook(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(req map[string]any) (int, any) {
		h, _ := req["headers"].(map[string]any)
		switch h["Cookie"] {
		case "session=ana; theme=dark":
			return 200, map[string]any{"allow": true, "user": "ana", "info": map[string]string{"name": "Ana"},
				"rooms": []string{"chat*"}, "subs": []string{"user.ana"}}
		case "session=expired":
			return 200, map[string]any{"allow": false, "status": 401, "reason": "session expired\r\nX-Injected: 1"}
		}
		return 200, map[string]any{"allow": false}
	})
	cfg := presenceConfig()
	cfg.JWTSecret = "" // the hook authorizes alone
	cfg.HookConnectURL = be.URL
	srv := startServer(t, cfg)

	status, _, c := upgradeWith(t, srv, "/ws", "Cookie: session=ana", "Cookie: theme=dark")
	if status != 101 {
		t.Fatalf("allowed upgrade: %d", status)
	}
	c.subscribed(0, "user.ana", "live") // the hook's subs
	c.cmd("sub 1 chat")
	c.subscribed(1, "chat", "live")
	c.cmd("sub 2 news")
	c.expectErr(2, "forbidden") // the hook's rooms
	c.cmd("presence 3 chat")
	if _, _, users := c.presenceReply("presence 3 chat"); len(users) != 1 || users[0].User != "ana" || string(users[0].Info) != `{"name":"Ana"}` {
		t.Fatalf("presence by the hook's user: %+v", users)
	}

	status, body, _ := upgradeWith(t, srv, "/ws", "Cookie: session=expired")
	if status != 401 || !strings.Contains(body, "session expired  X-Injected: 1") {
		t.Fatalf("denied upgrade: %d %q", status, body)
	}
	if status, _, _ := upgradeWith(t, srv, "/ws"); status != 403 {
		t.Fatalf("no cookie: %d, want 403", status)
	}
	if be.calls.Load() != 3 {
		t.Fatalf("%d hook calls, want 3", be.calls.Load())
	}
}

// A backend that fails denies (503), unless the hook fails open.
func TestConnectHookFails(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(map[string]any) (int, any) { return 500, "down" })
	for _, open := range []bool{false, true} {
		cfg := testConfig()
		cfg.HookConnectURL = be.URL
		if open {
			cfg.HookFailOpen = []string{"connect"}
		}
		srv := startServer(t, cfg)
		want := 503
		if open {
			want = 101
		}
		if status, _, _ := upgradeWith(t, srv, "/ws"); status != want {
			t.Errorf("fail open %v: %d, want %d", open, status, want)
		}
	}
}

// While the connect hook hangs, the same event loop keeps serving
// everyone else; the parked upgrade completes when the backend answers,
// or fails at the hook's timeout.
func TestConnectHookHangsLoopServes(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	be := startBackend(t, func(req map[string]any) (int, any) {
		if strings.Contains(fmt.Sprint(req["query"]), "hang") {
			<-release
		}
		return 200, map[string]any{"allow": true}
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the backend's Close waits for its handlers
	cfg := testConfig()
	cfg.EventLoops = 1
	cfg.HookConnectURL = be.URL
	srv := startServer(t, cfg)
	// A session opened before the hang.
	status, _, early := upgradeWith(t, srv, "/ws")
	if status != 101 {
		t.Fatal(status)
	}
	// The hanging upgrade.
	parked := dialRaw(t, srv.Addr())
	parked.write([]byte(strings.TrimSuffix(upgradeRequest("/ws?hang", newKey()), "\r\n") + "Sec-WebSocket-Protocol: loopcast.v1\r\n\r\n"))
	testutil.WaitFor(t, testutil.Patience, "the hook call", func() bool { return be.calls.Load() == 2 })
	// Meanwhile: a health request, a sub and a pub on the same loop.
	health := dialRaw(t, srv.Addr())
	health.write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	if r := health.readResponse(false); r.status != 200 {
		t.Fatalf("health while the hook hangs: %d", r.status)
	}
	early.cmd("sub 1 r")
	early.subscribed(1, "r", "live")
	early.cmd("pub 2 r\nhello")
	early.msg("r", opText, "hello")
	early.published(srv, 2, "r", 1)
	once.Do(func() { close(release) })
	if r := parked.readResponse(false); r.status != 101 {
		t.Fatalf("the parked upgrade: %d", r.status)
	}
}

func TestConnectHookTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	be := startBackend(t, func(map[string]any) (int, any) { <-release; return 200, map[string]any{"allow": true} })
	t.Cleanup(func() { close(release) }) // before the backend's Close waits for its handlers
	cfg := testConfig()
	cfg.HookConnectURL = be.URL
	cfg.HookConnectTimeout = 50 * time.Millisecond // the connect hook's own; hook-timeout stays 2 s
	srv := startServer(t, cfg)
	if status, body, _ := upgradeWith(t, srv, "/ws"); status != 503 || !strings.Contains(body, "connect hook did not answer") {
		t.Fatalf("a hook past its timeout: %d %q", status, body)
	}
}

func TestSubscribeHook(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	release := make(chan struct{})
	var once sync.Once
	be := startBackend(t, func(req map[string]any) (int, any) {
		room := fmt.Sprint(req["room"])
		switch {
		case down.Load():
			return 502, "down"
		case room == "slow":
			<-release
			return 200, map[string]any{"allow": true}
		case strings.HasPrefix(room, "ok"):
			return 200, map[string]any{"allow": true, "cache_ttl": 60}
		case strings.HasPrefix(room, "nc"):
			return 200, map[string]any{"allow": true} // not cached
		}
		return 200, map[string]any{"allow": false, "reason": "not a member of " + room}
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the backend's Close waits for its handlers
	cfg := presenceConfig()
	cfg.HookSubscribeURL = be.URL
	srv := startServer(t, cfg)
	c := dialUser(t, srv, "ana", nil)
	c.cmd("sub 1 ok-1")
	c.subscribed(1, "ok-1", "live")
	c.cmd("sub 2 secret")
	f := c.mustFrame()
	if string(f.payload) != "err 2 forbidden not a member of secret" {
		t.Fatalf("denied: %q", f.payload)
	}
	// Cached for the same user and room: no call.
	calls := be.calls.Load()
	c.cmd("unsub 3 ok-1")
	c.expect("unsub 3 ok-1")
	c.cmd("sub 4 ok-1")
	c.subscribed(4, "ok-1", "live")
	if be.calls.Load() != calls {
		t.Fatalf("a cached answer called the backend (%d calls, had %d)", be.calls.Load(), calls)
	}
	// A pending sub counts: the same room again is already_subscribed,
	// and other commands are answered meanwhile.
	c.cmd("sub 5 slow")
	c.cmd("sub 6 slow")
	c.expectErr(6, "already_subscribed")
	c.cmd("occupancy 7 ok-1")
	c.expect("occupancy 7 ok-1 1")
	once.Do(func() { close(release) })
	c.subscribed(5, "slow", "live")
	// The backend down: unavailable (the hook fails closed).
	down.Store(true)
	c.cmd("sub 8 ok-2")
	c.expectErr(8, "unavailable")
	// Flapping: each sub gets what the backend is at that moment; a
	// failure is never cached.
	for i := range 6 {
		down.Store(i%2 == 1)
		c.cmd(fmt.Sprintf("sub %d nc", 10+i))
		if i%2 == 1 {
			c.expectErr(uint32(10+i), "unavailable")
			continue
		}
		c.subscribed(uint32(10+i), "nc", "live")
		c.cmd(fmt.Sprintf("unsub %d nc", 20+i))
		c.expect(fmt.Sprintf("unsub %d nc", 20+i))
	}
	down.Store(true)

	// A raw member's join asks the hook too, before the 101.
	down.Store(false)
	for room, want := range map[string]int{"ok-raw": 101, "secret-raw": 403} {
		r := dialRaw(t, srv.Addr())
		r.write([]byte(strings.TrimSuffix(upgradeRequest("/ws/"+room, newKey()), "\r\n") + "Authorization: Bearer " + userToken(t, "ana", nil) + "\r\n\r\n"))
		if resp := r.readResponse(false); resp.status != want || want == 403 && !strings.Contains(string(resp.body), "not a member of secret-raw") {
			t.Errorf("raw join of %s: %d %q, want %d", room, resp.status, resp.body, want)
		}
	}
	down.Store(true)

	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range []string{
		`loopcast_hook_calls_total{hook="subscribe",result="allowed"} 6`,
		`loopcast_hook_calls_total{hook="subscribe",result="denied"} 2`,
		`loopcast_hook_calls_total{hook="subscribe",result="failed"} 4`,
		`loopcast_hook_cache_hits_total{hook="subscribe"} 1`,
		`loopcast_hook_latency_seconds_count{hook="subscribe"} 12`,
	} {
		if !strings.Contains(rec.Body.String(), line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}
}

// A connection whose connect hook's expire_at passed is closed with 4001
// at its next ping.
func TestConnectHookExpiry(t *testing.T) {
	t.Parallel()
	be := startBackend(t, func(map[string]any) (int, any) {
		return 200, map[string]any{"allow": true, "expire_at": time.Now().Unix()}
	})
	cfg := testConfig()
	cfg.HookConnectURL = be.URL
	cfg.PingInterval = 50 * time.Millisecond
	srv := startServer(t, cfg)
	status, _, c := upgradeWith(t, srv, "/ws")
	if status != 101 {
		t.Fatal(status)
	}
	for {
		f := c.mustFrame()
		if f.op == opPing {
			continue // pings before the expiry was seen
		}
		if f.op != opClose || f.closeCode() != 4001 {
			t.Fatalf("got %v, want close 4001", f)
		}
		c.write(frameBytes(true, opClose, f.payload[:2])) // answered: the server closes TCP
		c.expectEOF()
		break
	}
}

func TestPublishHook(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	var down atomic.Bool
	var sawBinary atomic.Value
	be := startBackend(t, func(req map[string]any) (int, any) {
		if down.Load() {
			return 500, "down"
		}
		if req["binary"] == true {
			sawBinary.Store(fmt.Sprint(req["data_b64"]))
			return 200, map[string]any{"allow": true}
		}
		switch data := fmt.Sprint(req["data"]); {
		case req["room"] == "ro":
			return 200, map[string]any{"allow": false, "reason": "read-only room"}
		case data == "censor me":
			return 200, map[string]any{"allow": true, "data": "***"}
		case data == "slow":
			<-release
		}
		return 200, map[string]any{"allow": true}
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the backend's Close waits for its handlers
	cfg := presenceConfig()
	cfg.JWTSecret = ""
	cfg.HookPublishURL = be.URL
	srv := startServer(t, cfg)
	c := dialProto(t, srv, "/ws")
	c.cmd("sub 1 chat")
	c.subscribed(1, "chat", "live")
	c.cmd("pub 2 chat\nhello")
	c.msg("chat", opText, "hello")
	c.published(srv, 2, "chat", 1)
	c.cmd("pub 3 chat\ncensor me")
	c.msg("chat", opText, "***") // the hook replaced it
	c.published(srv, 3, "chat", 2)
	c.cmd("pub 4 ro\nx")
	f := c.mustFrame()
	if string(f.payload) != "err 4 forbidden read-only room" {
		t.Fatalf("denied: %q", f.payload)
	}
	// A connection's messages keep their order through the hook.
	c.cmd("pub 0 chat\nslow")
	c.cmd("pub 0 chat\nafter")
	c.cmd("occupancy 5 chat") // answered meanwhile
	c.expect("occupancy 5 chat 1")
	once.Do(func() { close(release) })
	c.msg("chat", opText, "slow")
	c.msg("chat", opText, "after")
	c.send(true, opBinary, append([]byte("pub 6 chat\n"), 0, 1, 2))
	c.msg("chat", opBinary, "\x00\x01\x02")
	c.published(srv, 6, "chat", 5)
	if got := sawBinary.Load(); got != "AAEC" {
		t.Fatalf("the hook saw data_b64 %v, want AAEC", got)
	}

	// Raw members: allowed messages go out; a refusal closes 1008.
	raw := dialWS(t, tcpAddr(srv.Addr().String()), "/ws/chat")
	raw.send(true, opText, []byte("from raw"))
	c.msg("chat", opText, "from raw")
	raw.expectFrame(opText, []byte("from raw")) // a raw member gets its own messages
	ro := dialWS(t, tcpAddr(srv.Addr().String()), "/ws/ro")
	ro.send(true, opText, []byte("x"))
	ro.expectClose(1008)

	// The backend down: not published (fails closed).
	down.Store(true)
	c.cmd("pub 7 chat\nlost")
	c.expectErr(7, "unavailable")
	raw.send(true, opText, []byte("lost"))
	raw.expectClose(1013)
}

// The connect hook learns each connection's id; the admin API closes
// that one connection, and no other of the same user.
func TestDisconnectConnection(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var ids []string
	be := startBackend(t, func(req map[string]any) (int, any) {
		mu.Lock()
		ids = append(ids, fmt.Sprint(req["connection"]))
		mu.Unlock()
		return 200, map[string]any{"allow": true, "user": "ana"}
	})
	cfg := testConfig()
	cfg.HookConnectURL = be.URL
	srv := startServer(t, cfg)
	_, _, first := upgradeWith(t, srv, "/ws")
	_, _, second := upgradeWith(t, srv, "/ws")
	mu.Lock()
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("connection ids %q", ids)
	}
	id := ids[0]
	mu.Unlock()
	if here, err := srv.DisconnectConnection(id, 4005, "just this one"); err != nil || !here {
		t.Fatalf("DisconnectConnection: %v %v", here, err)
	}
	f := first.mustFrame()
	if f.op != opClose || f.closeCode() != 4005 || string(f.payload[2:]) != "just this one" {
		t.Fatalf("first: %v", f)
	}
	first.write(frameBytes(true, opClose, f.payload[:2])) // answered: the server closes TCP
	first.expectEOF()
	second.cmd("occupancy 1 r") // the other connection of ana is open
	second.expect("occupancy 1 r 0")
	post := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := post("/connections/" + id + "/disconnect"); code != 200 || body != `{"here":false}`+"\n" {
		t.Fatalf("a closed connection: %d %s", code, body)
	}
	if code, _ := post("/connections/nonsense/disconnect"); code != 400 {
		t.Fatalf("a malformed id: %d", code)
	}
}

// A sub waiting for the subscribe hook and the admin API: subscribing the
// user meanwhile does not double it; unsubscribing the user meanwhile
// cancels it.
func TestSubscribeHookPendingAndUserAPI(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	be := startBackend(t, func(map[string]any) (int, any) { <-release; return 200, map[string]any{"allow": true} })
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	cfg := presenceConfig()
	cfg.HookSubscribeURL = be.URL
	srv := startServer(t, cfg)
	c := dialUser(t, srv, "ana", nil)
	c.cmd("sub 1 kept")
	c.cmd("sub 2 cancelled")
	testutil.WaitFor(t, testutil.Patience, "both hook calls", func() bool { return be.calls.Load() == 2 })
	if n, _ := srv.SubscribeUser("ana", "kept"); n != 0 {
		t.Fatalf("SubscribeUser of a pending room: %d, want 0", n)
	}
	if n, _ := srv.UnsubscribeUser("ana", "cancelled"); n != 1 {
		t.Fatalf("UnsubscribeUser of a pending room: %d, want 1", n)
	}
	close(release)
	got := map[string]bool{}
	for range 2 {
		f := c.mustFrame()
		line := string(f.payload)
		switch {
		case strings.HasPrefix(line, "sub 1 kept "):
			got["kept"] = true
		case strings.HasPrefix(line, "err 2 forbidden "):
			got["cancelled"] = true
		default:
			t.Fatalf("unexpected %q", line)
		}
	}
	if !got["kept"] || !got["cancelled"] {
		t.Fatalf("got %v", got)
	}
	c.cmd("occupancy 3 kept")
	c.expect("occupancy 3 kept 1") // one subscription, not two
	c.cmd("occupancy 4 cancelled")
	c.expect("occupancy 4 cancelled 0")
}
