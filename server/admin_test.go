package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/loopcast/loopcast/server"
)

func startWithAdmin(t *testing.T, token string) (*server.Server, string) {
	cfg := testConfig()
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.PublishToken = token
	srv := startServer(t, cfg)
	return srv, "http://" + srv.AdminAddr().String()
}

func TestAdminPublish(t *testing.T) {
	srv, admin := startWithAdmin(t, "s3cret")
	url := "ws://" + srv.Addr().String() + "/ws/news"
	members := []*gorilla.Conn{dialGorilla(t, url, 0), dialGorilla(t, url, 0), dialGorilla(t, url, 0)}
	waitFor(t, ioTimeout, "members", func() bool { return srv.Stats().WebSockets == 3 })

	post := func(room, ctype, token, body string) (int, string) {
		req, _ := http.NewRequest("POST", admin+"/publish/"+room, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := post("news", "text/plain", "", "x"); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, _ := post("news", "text/plain", "wrong", "x"); code != 401 {
		t.Fatalf("wrong token: %d, want 401", code)
	}
	// The answer says where the message went: members here, and its
	// offset and epoch in the room (what loopcast.v1 clients resume from).
	var epoch string
	for i, m := range []struct{ ctype, body string }{{"text/plain; charset=utf-8", "breaking"}, {"application/octet-stream", "\x00\x01"}} {
		code, body := post("news", m.ctype, "s3cret", m.body)
		var got struct {
			Members int
			Offset  uint64
			Epoch   string
		}
		if err := json.Unmarshal([]byte(body), &got); code != 202 || err != nil || got.Members != 3 || got.Offset != uint64(i+1) || len(got.Epoch) != 16 || (epoch != "" && got.Epoch != epoch) {
			t.Fatalf("publish %s: %d %s", m.ctype, code, body)
		}
		epoch = got.Epoch
	}
	// With history on (the default), a room nobody is in keeps the
	// message for those who resume.
	if code, body := post("nobody-here", "text/plain", "s3cret", "x"); code != 202 || !strings.Contains(body, `"members":0,"offset":1`) {
		t.Fatalf("publish to an empty room: %d %s", code, body)
	}
	if code, _ := post("bad%20name", "text/plain", "s3cret", "x"); code != 400 {
		t.Fatalf("bad room name: %d, want 400", code)
	}
	if code, _ := post("news", "text/plain", "s3cret", "\xff"); code != 400 {
		t.Fatalf("invalid UTF-8 as text: %d, want 400", code)
	}
	for i, m := range members {
		_ = m.SetReadDeadline(time.Now().Add(ioTimeout))
		typ, msg, err := m.ReadMessage()
		if err != nil || typ != gorilla.TextMessage || string(msg) != "breaking" {
			t.Fatalf("member %d: %d %q %v", i, typ, msg, err)
		}
		typ, msg, err = m.ReadMessage()
		if err != nil || typ != gorilla.BinaryMessage || string(msg) != "\x00\x01" {
			t.Fatalf("member %d: %d %q %v", i, typ, msg, err)
		}
	}

	// With a publish token, /rooms and /stats need it too; /metrics not.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	get := func(path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, path := range []string{"/rooms", "/stats"} {
		for token, want := range map[string]int{"": 401, "wrong": 401, "s3cret": 200} {
			resp := get(path, token)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("GET %s with token %q: %d, want %d", path, token, resp.StatusCode, want)
			}
		}
	}
	resp := get("/metrics", "")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics without a token: %d, want 200 (it stays open)", resp.StatusCode)
	}
	resp = get("/rooms", "s3cret")
	var rooms struct {
		Count int
		Rooms []server.RoomInfo
	}
	_ = json.NewDecoder(resp.Body).Decode(&rooms)
	resp.Body.Close()
	if rooms.Count != 2 || rooms.Rooms[0].Name != "news" || rooms.Rooms[0].Members != 3 || rooms.Rooms[0].Epoch != epoch ||
		rooms.Rooms[0].Offset != 2 || rooms.Rooms[0].History != 2 || rooms.Rooms[0].HistoryBytes <= 0 ||
		rooms.Rooms[1].Name != "nobody-here" || rooms.Rooms[1].Members != 0 || rooms.Rooms[1].History != 1 {
		t.Fatalf("/rooms: %+v", rooms)
	}
}

func TestAdminMetricsMove(t *testing.T) {
	srv, admin := startWithAdmin(t, "")
	scrape := func() string {
		resp, err := http.Get(admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	before := scrape()
	for _, want := range []string{"loopcast_websockets 0", "loopcast_deliveries_total 0", `loopcast_handshakes_total{result="ok"} 0`} {
		if !strings.Contains(before, want+"\n") {
			t.Fatalf("before: missing %q in\n%s", want, before)
		}
	}
	c := dialGorilla(t, "ws://"+srv.Addr().String()+"/echo", 0)
	_ = c.WriteMessage(gorilla.TextMessage, []byte("hi"))
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	resp, _ := http.Get("http://" + srv.Addr().String() + "/")
	resp.Body.Close()
	after := scrape()
	for _, want := range []string{"loopcast_websockets 1", "loopcast_deliveries_total 1", `loopcast_handshakes_total{result="ok"} 1`,
		"loopcast_messages_in_total 1", "loopcast_health_requests_total 1", "loopcast_draining 0"} {
		if !strings.Contains(after, want+"\n") {
			t.Fatalf("after: missing %q in\n%s", want, after)
		}
	}
}

// POST /publish sends textual content types (JSON and XML among them) as
// text frames, checked to be UTF-8; the rest as binary.
func TestPublishContentTypes(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	m := dialWS(t, srv.Addr(), "/ws/ct")
	post := func(ct, body string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/publish/ct", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		srv.AdminHandler().ServeHTTP(rec, req)
		return rec.Code
	}
	for ct, op := range map[string]byte{
		"application/json": opText, "application/json; charset=utf-8": opText, "application/problem+json": opText,
		"application/xml": opText, "image/svg+xml": opText, "application/javascript": opText, "text/plain": opText,
		"application/octet-stream": opBinary, "": opBinary, "image/png": opBinary,
	} {
		if code := post(ct, `{"a":1}`); code != 202 {
			t.Fatalf("%q: %d", ct, code)
		}
		m.expectFrame(op, []byte(`{"a":1}`))
	}
	if code := post("application/json", "\xff"); code != 400 {
		t.Fatalf("JSON that is not UTF-8: %d, want 400", code)
	}
}

// GET / on the admin port lists its routes, without the token.
func TestAdminIndex(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.PublishToken = "secret-token-0123456789"
	srv := startServer(t, cfg)
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	var idx struct {
		Routes []struct{ Route, Auth string } `json:"loopcast admin"`
		Token  bool                           `json:"token_required"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &idx); rec.Code != 200 || err != nil || !idx.Token || len(idx.Routes) < 10 {
		t.Fatalf("GET /: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), cfg.PublishToken) {
		t.Fatal("the index shows the token")
	}
	rec = httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/nothing-here", nil))
	if rec.Code != 404 {
		t.Fatalf("GET /nothing-here: %d", rec.Code)
	}
}
