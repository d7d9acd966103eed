// Command gorilla is the gorilla/websocket peer, built after gorilla's chat
// example: one hub goroutine per room, a 256-slot send queue per client, a
// client whose queue is full is dropped, a read pump and a write pump
// goroutine per connection. Unlike the chat example it keeps each message in
// its own frame with its opcode (the example joins queued text with '\n'),
// because the benchmark checks frames.
package main

import (
	"flag"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	writeWait      = 10 * time.Second // chat example
	pongWait       = 60 * time.Second // chat example
	pingPeriod     = (pongWait * 9) / 10
	maxMessageSize = 1 << 20 // loopcast's --max-message default (chat example: 512)
	sendQueue      = 256     // chat example
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

type message struct {
	op   int
	data []byte
}

type client struct {
	hub  *hub
	conn *websocket.Conn
	send chan message
}

type hub struct {
	clients    map[*client]bool
	broadcast  chan message
	register   chan *client
	unregister chan *client
}

func newHub() *hub {
	return &hub{
		clients:    make(map[*client]bool),
		broadcast:  make(chan message, sendQueue),
		register:   make(chan *client),
		unregister: make(chan *client),
	}
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if h.clients[c] {
				delete(h.clients, c)
				close(c.send)
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- m:
				default: // slow client: dropped, as in the chat example
					close(c.send)
					delete(h.clients, c)
				}
			}
		}
	}
}

var (
	hubsMu sync.Mutex
	hubs   = map[string]*hub{}
)

func hubFor(room string) *hub {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h := hubs[room]
	if h == nil {
		h = newHub()
		hubs[room] = h
		go h.run()
	}
	return h
}

func (c *client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { c.conn.SetReadDeadline(time.Now().Add(pongWait)); return nil })
	for {
		op, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		c.conn.SetReadDeadline(time.Now().Add(pongWait))
		c.hub.broadcast <- message{op, data}
	}
}

func (c *client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case m, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WriteMessage(m.op, m.data); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func serveRoom(w http.ResponseWriter, r *http.Request, room string) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{hub: hubFor(room), conn: conn, send: make(chan message, sendQueue)}
	c.hub.register <- c
	go c.writePump()
	go c.readPump()
}

func serveEcho(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetReadLimit(maxMessageSize)
	for {
		op, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if err := conn.WriteMessage(op, data); err != nil {
			return
		}
	}
}

func handler(w http.ResponseWriter, r *http.Request) {
	upgrade := websocket.IsWebSocketUpgrade(r)
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
	deflate := flag.Bool("deflate", false, "accept permessage-deflate (gorilla compresses each message per connection)")
	flag.Parse()
	upgrader.EnableCompression = *deflate
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(handler)))
}
