package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// centrifugo speaks Centrifugo's JSON protocol on /connection/websocket:
// {"id":1,"connect":{"token":…}}, then {"id":N,"subscribe":{"channel":…}}
// and {"id":N,"unsubscribe":{"channel":…}}. A reply carries the command's
// id (first key) and "error" on failure; a frame may hold several
// newline-separated replies and pushes; "{}" is a ping, answered with
// "{}". A watcher subscribes with "join_leave":true, so it gets
// {"push":{"channel":…,"join":{…}}} / {"push":{…,"leave":{…}}} for every
// subscribe and unsubscribe in its channel (and, with the namespace's
// force_push_join_leave, so does every subscriber).
type centrifugo struct{ secret []byte }

func (cf *centrifugo) room(i int) string   { return fmt.Sprintf("bench:r%d", i) }
func (cf *centrifugo) path(string) string  { return "/connection/websocket" }
func (cf *centrifugo) subprotocol() string { return "" }

// hello sends connect with the user's token and waits for its reply.
func (cf *centrifugo) hello(c *client, user string) error {
	tok, _ := json.Marshal(token(cf.secret, user))
	c.id++
	return c.call(cf, fmt.Appendf(nil, `{"id":%d,"connect":{"token":%s}}`, c.id, tok))
}

func (cf *centrifugo) subCmd(b []byte, id int, room string) []byte {
	return fmt.Appendf(b[:0], `{"id":%d,"subscribe":{"channel":"%s"}}`, id, room)
}

func (cf *centrifugo) unsubCmd(b []byte, id int, room string) []byte {
	return fmt.Appendf(b[:0], `{"id":%d,"unsubscribe":{"channel":"%s"}}`, id, room)
}

func (cf *centrifugo) watchCmd(b []byte, id int, room string) []byte {
	return fmt.Appendf(b[:0], `{"id":%d,"subscribe":{"channel":"%s","join_leave":true}}`, id, room)
}

var (
	cfID    = []byte(`{"id":`)
	cfPush  = []byte(`{"push":`)
	cfJoin  = []byte(`"join":{`)
	cfLeave = []byte(`"leave":{`)
	cfError = []byte(`"error":{`)
)

func (cf *centrifugo) scan(msg []byte, replies []reply) ([]reply, int, int, bool) {
	var joins, leaves int
	var ping bool
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		switch {
		case len(line) == 0:
		case string(line) == "{}":
			ping = true
		case bytes.HasPrefix(line, cfID):
			rest := line[len(cfID):]
			n := 0
			for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
				n++
			}
			id, _ := strconv.Atoi(string(rest[:n]))
			r := reply{id: id, bad: bytes.HasPrefix(rest[n:], []byte(","+string(cfError)))}
			if r.bad {
				r.text = string(line)
			}
			replies = append(replies, r)
		case bytes.HasPrefix(line, cfPush):
			// {"push":{"channel":"bench:r0","join":{"info":{…}}}}: the
			// event key follows the channel, whose name has no quotes.
			if i := bytes.Index(line[len(cfPush):], []byte(`",`)); i >= 0 {
				ev := line[len(cfPush)+i+2:]
				switch {
				case bytes.HasPrefix(ev, cfJoin):
					joins++
				case bytes.HasPrefix(ev, cfLeave):
					leaves++
				}
			}
		}
	}
	return replies, joins, leaves, ping
}
