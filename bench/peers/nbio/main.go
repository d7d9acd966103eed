// Command nbio is the lesismal/nbio peer: nbhttp's epoll engine (no goroutine
// per connection), rooms as sets of *websocket.Conn written to directly from
// OnMessage; nbio buffers what the socket does not take and closes a
// connection whose buffer passes MaxWriteBufferSize (the slow-client rule).
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

const (
	maxMessageSize = 1 << 20 // loopcast's --max-message default
	maxPending     = 1 << 20 // loopcast's --max-pending default
)

type room struct {
	mu      sync.RWMutex
	members map[*websocket.Conn]struct{}
}

var (
	roomsMu sync.Mutex
	rooms   = map[string]*room{}
)

func roomFor(name string) *room {
	roomsMu.Lock()
	defer roomsMu.Unlock()
	r := rooms[name]
	if r == nil {
		r = &room{members: map[*websocket.Conn]struct{}{}}
		rooms[name] = r
	}
	return r
}

func newRoomUpgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.MessageLengthLimit = maxMessageSize
	u.OnMessage(func(c *websocket.Conn, op websocket.MessageType, data []byte) {
		rm, _ := c.Session().(*room)
		if rm == nil {
			return
		}
		rm.mu.RLock()
		for m := range rm.members {
			m.WriteMessage(op, data)
		}
		rm.mu.RUnlock()
	})
	u.OnClose(func(c *websocket.Conn, err error) {
		if rm, _ := c.Session().(*room); rm != nil {
			rm.mu.Lock()
			delete(rm.members, c)
			rm.mu.Unlock()
		}
	})
	return u
}

func newEchoUpgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.MessageLengthLimit = maxMessageSize
	u.OnMessage(func(c *websocket.Conn, op websocket.MessageType, data []byte) {
		c.WriteMessage(op, data)
	})
	return u
}

var (
	roomUpgrader = newRoomUpgrader()
	echoUpgrader = newEchoUpgrader()
)

func serveRoom(w http.ResponseWriter, r *http.Request, name string) {
	c, err := roomUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	rm := roomFor(name)
	rm.mu.Lock()
	c.SetSession(rm)
	rm.members[c] = struct{}{}
	rm.mu.Unlock()
}

func handler(w http.ResponseWriter, r *http.Request) {
	upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	switch {
	case upgrade && r.URL.Path == "/echo":
		echoUpgrader.Upgrade(w, r, nil)
	case upgrade && r.URL.Path == "/ws":
		serveRoom(w, r, "default")
	case upgrade && strings.HasPrefix(r.URL.Path, "/ws/") && len(r.URL.Path) > 4:
		serveRoom(w, r, r.URL.Path[4:])
	case upgrade:
		http.NotFound(w, r)
	default:
		w.Write([]byte("ok"))
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:            "tcp",
		Addrs:              []string{*addr},
		MaxLoad:            1 << 20,
		MaxWriteBufferSize: maxPending,
		Handler:            http.HandlerFunc(handler),
	})
	if err := engine.Start(); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	engine.Stop()
}
