// Command coder is the coder/websocket peer, built after coder's chat
// example: a room is a set of subscribers, each with a buffered queue drained
// by its own writer goroutine; a subscriber whose queue is full is closed
// (StatusPolicyViolation, as the example does for slow subscribers).
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

const (
	maxMessageSize = 1 << 20 // loopcast's --max-message default
	sendQueue      = 256     // same queue as the gorilla peer (coder's example: 16)
	writeWait      = 10 * time.Second
)

type message struct {
	op   websocket.MessageType
	data []byte
}

type subscriber struct {
	msgs      chan message
	closeSlow func()
}

type room struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
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
		r = &room{subs: map[*subscriber]struct{}{}}
		rooms[name] = r
	}
	return r
}

func (rm *room) publish(m message) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for s := range rm.subs {
		select {
		case s.msgs <- m:
		default:
			go s.closeSlow()
		}
	}
}

var acceptOptions = &websocket.AcceptOptions{
	InsecureSkipVerify: true, // any origin, like loopcast's default
	CompressionMode:    websocket.CompressionDisabled,
}

func serveRoom(w http.ResponseWriter, r *http.Request, name string) {
	c, err := websocket.Accept(w, r, acceptOptions)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(maxMessageSize)
	rm := roomFor(name)
	s := &subscriber{
		msgs:      make(chan message, sendQueue),
		closeSlow: func() { c.Close(websocket.StatusPolicyViolation, "connection too slow to keep up with messages") },
	}
	rm.mu.Lock()
	rm.subs[s] = struct{}{}
	rm.mu.Unlock()
	defer func() {
		rm.mu.Lock()
		delete(rm.subs, s)
		rm.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		defer cancel()
		for {
			op, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			rm.publish(message{op, data})
		}
	}()
	for {
		select {
		case m := <-s.msgs:
			wctx, wcancel := context.WithTimeout(ctx, writeWait)
			err := c.Write(wctx, m.op, m.data)
			wcancel()
			if err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func serveEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, acceptOptions)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(maxMessageSize)
	ctx := r.Context()
	for {
		op, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, op, data); err != nil {
			return
		}
	}
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func handler(w http.ResponseWriter, r *http.Request) {
	upgrade := isUpgrade(r)
	switch {
	case upgrade && r.URL.Path == "/echo":
		serveEcho(w, r)
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
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(handler)))
}
