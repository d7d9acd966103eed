package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// loopcast speaks loopcast.v1 (PROTOCOL.md): "sub <id> <room>" → "sub <id>
// <room> <epoch> <offset> <status>", "unsub <id> <room>" → "unsub <id>
// <room>", an error is "err <id> <code> <reason>". A watcher sends "watch
// <id> <room> presence" and then gets "pres <room>\n{"join":[…],"leave":[…]}"
// frames, batched and de-duplicated per room per second. The token goes in
// ?token= (the load tool's WebSocket client sends no custom headers).
type loopcast struct{ secret []byte }

func (l *loopcast) room(i int) string           { return fmt.Sprintf("bench.r%d", i) }
func (l *loopcast) path(user string) string     { return "/ws?token=" + token(l.secret, user) }
func (l *loopcast) subprotocol() string         { return "loopcast.v1" }
func (l *loopcast) hello(*client, string) error { return nil }

func (l *loopcast) subCmd(b []byte, id int, room string) []byte {
	return fmt.Appendf(b[:0], "sub %d %s", id, room)
}

func (l *loopcast) unsubCmd(b []byte, id int, room string) []byte {
	return fmt.Appendf(b[:0], "unsub %d %s", id, room)
}

func (l *loopcast) watchCmd(b []byte, id int, room string) []byte {
	return fmt.Appendf(b[:0], "watch %d %s presence", id, room)
}

// scan reads one message: a reply (its id; bad for "err"), or a pres frame
// (its joins and leaves).
func (l *loopcast) scan(msg []byte, replies []reply) ([]reply, int, int, bool) {
	op, rest, ok := bytes.Cut(msg, []byte(" "))
	if !ok {
		return replies, 0, 0, false
	}
	switch string(op) {
	case "sub", "unsub", "watch", "err":
		f, _, _ := bytes.Cut(rest, []byte(" "))
		id, err := strconv.Atoi(string(f))
		if err != nil {
			return replies, 0, 0, false
		}
		r := reply{id: id, bad: string(op) == "err"}
		if r.bad {
			r.text = string(msg)
		}
		return append(replies, r), 0, 0, false
	case "pres":
		_, body, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return replies, 0, 0, false
		}
		var ev struct {
			Join  []json.RawMessage `json:"join"`
			Leave []json.RawMessage `json:"leave"`
		}
		if json.Unmarshal(body, &ev) != nil {
			return replies, 0, 0, false
		}
		return replies, len(ev.Join), len(ev.Leave), false
	}
	return replies, 0, 0, false
}
