package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/loopcast/loopcast/server/internal/bus"
	"github.com/loopcast/loopcast/server/internal/command"
	"github.com/loopcast/loopcast/server/internal/fanout"
	"github.com/loopcast/loopcast/server/internal/hook"
)

// The admin listener is plain net/http: it is for operators and
// publishers, not the hot path. Never expose it through the Ingress.
//
//	GET  /metrics          Prometheus metrics (open)
//	GET  /stats            Stats as JSON (token)
//	GET  /rooms            rooms with their member counts, as JSON (token)
//	POST /publish/{room}   body = message: text frame for text/*, binary otherwise;
//	                       202 {"members": N} (token)
//	     /debug/pprof/     runtime profiles, with Config.Pprof only; never cmdline (token)
//
// (token): the publish token as a bearer token, when one is set. Without
// one the admin listener is loopback only (Config.Validate).
//
// The listener bounds what a client can hold (limits.go): the request
// head within adminReadHeaderTimeout and adminMaxHeaderBytes, the whole
// request within adminReadTimeout, the response within adminWriteTimeout
// (pprof's profile and trace extend it by their ?seconds=), an idle
// keep-alive connection for adminIdleTimeout, and adminMaxConns
// connections at once.

// AdminHandler returns the admin listener's handler, for embedding the
// server's admin routes in another mux or testing them directly.
func (s *Server) AdminHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(s))
	if c, ok := s.cfg.Broker.(prometheus.Collector); ok {
		reg.MustRegister(c) // the broker's own metrics (package cluster)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveAdminIndex)                                // open: routes only, no secrets
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) // open: no secrets, Prometheus convention
	mux.HandleFunc("GET /stats", s.withToken(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.Stats()) }))
	mux.HandleFunc("GET /rooms", s.withToken(s.serveRooms))
	mux.HandleFunc("GET /rooms/{room}", s.withToken(s.serveRoom))
	mux.HandleFunc("POST /publish/{room}", s.withToken(s.servePublish))
	mux.HandleFunc("POST /publish", s.withToken(s.servePublish)) // ?rooms=a,b,c
	mux.HandleFunc("POST /users/{user}/disconnect", s.withToken(s.serveDisconnect))
	mux.HandleFunc("POST /connections/{id}/disconnect", s.withToken(s.serveDisconnect))
	mux.HandleFunc("POST /users/{user}/subscribe/{room}", s.withToken(s.serveUserRoom))
	mux.HandleFunc("POST /users/{user}/unsubscribe/{room}", s.withToken(s.serveUserRoom))
	if s.cfg.Pprof {
		// Behind the token like /stats: profiles show what the process
		// holds (heap, goroutine stacks with their arguments), and a CPU
		// profile or trace costs the event loops while it runs. Never
		// /debug/pprof/cmdline: the command line may hold secrets.
		mux.HandleFunc("/debug/pprof/", s.withToken(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/debug/pprof/cmdline" {
				http.NotFound(w, r)
				return
			}
			pprof.Index(w, r)
		}))
		mux.HandleFunc("/debug/pprof/profile", s.withToken(pprof.Profile))
		mux.HandleFunc("/debug/pprof/symbol", s.withToken(pprof.Symbol))
		mux.HandleFunc("/debug/pprof/trace", s.withToken(pprof.Trace))
	}
	return rejectDotSegments(mux)
}

// adminRoutes lists the admin API for GET / (what each does; "token":
// the publish token is required when one is set).
var adminRoutes = []struct {
	Route string `json:"route"`
	Auth  string `json:"auth"`
	What  string `json:"what"`
}{
	{"GET /metrics", "open", "Prometheus metrics"},
	{"GET /stats", "token", "the counters as JSON"},
	{"GET /rooms", "token", "rooms with members here, occupancy on every instance, epoch, offset, history; ?names=a,b for those rooms"},
	{"GET /rooms/{room}", "token", "one room, with its presence list in a presence room"},
	{"POST /publish/{room}", "token", "publish the body (Idempotency-Key for exactly once)"},
	{"POST /publish?rooms=a,b,c", "token", "publish the body to each room"},
	{"POST /users/{user}/disconnect", "token", "close a user's connections on every instance (?code=&reason=)"},
	{"POST /connections/{id}/disconnect", "token", "close one connection the connect hook named"},
	{"POST /users/{user}/subscribe/{room}", "token", "subscribe a user's loopcast.v1 connections"},
	{"POST /users/{user}/unsubscribe/{room}", "token", "unsubscribe them"},
	{"GET /debug/pprof/", "token", "Go profiles (only with --pprof)"},
}

// serveAdminIndex answers GET / with the admin routes, so that a curl of
// the admin port says what it serves.
func (s *Server) serveAdminIndex(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, map[string]any{"loopcast admin": adminRoutes, "token_required": s.cfg.PublishToken != ""})
}

// rejectDotSegments answers 400 to a path with a . or .. segment
// (/publish/.., /users/ana/subscribe/.), which
// ServeMux would otherwise clean into a redirect to another path: those
// are not room names.
func rejectDotSegments(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") || strings.Contains(p, "/./") || strings.Contains(p, "/../") {
			writeJSON(w, 400, map[string]string{"error": ErrBadRoom.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withToken requires the publish token, when one is set, as a bearer
// token: 401 with WWW-Authenticate otherwise.
func (s *Server) withToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tok := s.cfg.PublishToken; tok != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="loopcast admin"`)
				writeJSON(w, 401, map[string]string{"error": "missing or wrong bearer token (--publish-token)"})
				return
			}
		}
		h(w, r)
	}
}

// adminLimits are the admin listener's limits (limits.go), read when it
// starts. A variable only so that tests can shorten them
// (export_test.go); nothing else writes it.
var adminLimits = struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes, maxConns      int
}{adminReadHeaderTimeout, adminReadTimeout, adminWriteTimeout, adminIdleTimeout, adminMaxHeaderBytes, adminMaxConns}

// startAdmin binds the admin listener when configured.
func (s *Server) startAdmin() error {
	if s.cfg.AdminAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", s.cfg.AdminAddr, err)
	}
	s.adminAddr = ln.Addr()
	lim := adminLimits
	ln = netutil.LimitListener(ln, lim.maxConns)
	s.admin = &http.Server{
		Handler:           s.AdminHandler(),
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    lim.maxHeaderBytes,
	}
	go func() {
		if err := s.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

// AdminAddr is the admin listener's bound address, or nil without one.
func (s *Server) AdminAddr() net.Addr { return s.adminAddr }

// RoomInfo is one entry of GET /rooms.
type RoomInfo struct {
	Name    string `json:"name"`
	Members int64  `json:"members"` // subscriptions on this instance
	// Occupancy is the room's subscriptions on every instance: this
	// one's now, the others' as they last reported (Server.Occupancy).
	Occupancy int64 `json:"occupancy"`
	// Epoch (16 hex digits) and Offset (the last message's) are where the
	// room's order stands here; History and HistoryBytes what it keeps
	// for resumes. A room with members only on other instances has no
	// epoch here ("").
	Epoch        string `json:"epoch"`
	Offset       uint64 `json:"offset"`
	History      int64  `json:"history"`
	HistoryBytes int64  `json:"history_bytes"`
	// Presence lists a presence room's users (GET /rooms/{room} only;
	// nil for other rooms and in lists).
	Presence *Presence `json:"presence,omitempty"`
}

// Presence is a presence room's users on every instance: Total of
// them, Users sorted by user, at most Config.PresenceMaxList.
type Presence struct {
	Total int            `json:"total"`
	Users []PresenceUser `json:"users"`
}

// PresenceUser is one user of a presence room: its token's sub and
// info claims.
type PresenceUser struct {
	User string          `json:"user"`
	Info json.RawMessage `json:"info,omitempty"`
}

// Presence lists room's users on every instance; nil when room is not
// one of Config.PresenceRooms.
func (s *Server) Presence(room string) *Presence {
	if !s.isPresenceRoom([]byte(room)) {
		return nil
	}
	set := s.pres.list(room)
	users := make([]PresenceUser, 0, len(set))
	for u, info := range set {
		users = append(users, PresenceUser{u, info})
	}
	slices.SortFunc(users, func(a, b PresenceUser) int { return strings.Compare(a.User, b.User) })
	return &Presence{Total: len(set), Users: users[:min(len(users), s.cfg.PresenceMaxList)]}
}

// maxRoomsQuery bounds the names of one GET /rooms?names= request.
const maxRoomsQuery = 1000

// Rooms lists the rooms (with members or history), by name.
func (s *Server) Rooms() []RoomInfo {
	out := []RoomInfo{}
	s.engine.EachRoom(func(ri fanout.RoomInfo) { out = append(out, roomInfo(ri)) })
	for i := range out {
		out[i].Occupancy = out[i].Members + s.occ.table.Remote(out[i].Name)
	}
	slices.SortFunc(out, func(a, b RoomInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Room describes one room, whether or not this instance has it (then
// only its occupancy on the others).
func (s *Server) Room(name string) RoomInfo {
	info := RoomInfo{Name: name}
	if ri, ok := s.engine.Room(name); ok {
		info = roomInfo(ri)
	}
	info.Occupancy = info.Members + s.occ.table.Remote(name)
	return info
}

func roomInfo(ri fanout.RoomInfo) RoomInfo {
	return RoomInfo{Name: ri.Name, Members: ri.Members, Epoch: string(command.AppendEpoch(nil, ri.Epoch)), Offset: ri.Offset, History: ri.History, HistoryBytes: ri.HistoryBytes}
}

// serveRooms answers GET /rooms: every room this instance has, or with
// ?names=a,b,c (at most maxRoomsQuery) those rooms, in that order.
func (s *Server) serveRooms(w http.ResponseWriter, r *http.Request) {
	var rooms []RoomInfo
	if q := r.URL.Query(); q.Has("names") {
		names := strings.Split(q.Get("names"), ",")
		if len(names) > maxRoomsQuery {
			writeJSON(w, 400, map[string]string{"error": fmt.Sprintf("names: at most %d rooms", maxRoomsQuery)})
			return
		}
		rooms = make([]RoomInfo, 0, len(names))
		for _, n := range names {
			if !command.ValidRoom([]byte(n)) {
				writeJSON(w, 400, map[string]string{"error": fmt.Sprintf("names: %q: %v", n, ErrBadRoom)})
				return
			}
			rooms = append(rooms, s.Room(n))
		}
	} else {
		rooms = s.Rooms()
	}
	body := map[string]any{"count": len(rooms), "rooms": rooms}
	if b, ok := s.cfg.Broker.(bus.Status); ok {
		body["cluster"] = b.ClusterStatus()
	}
	writeJSON(w, 200, body)
}

// serveRoom answers GET /rooms/{room}: the room's RoomInfo.
func (s *Server) serveRoom(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("room")
	if !command.ValidRoom([]byte(name)) {
		writeJSON(w, 400, map[string]string{"error": ErrBadRoom.Error()})
		return
	}
	info := s.Room(name)
	info.Presence = s.Presence(name)
	writeJSON(w, 200, info)
}

// servePublish is the admin door onto the one publishing path
// (publish.go). Body: the message (text frame for a text/* Content-Type,
// binary otherwise); Idempotency-Key: the publisher's key. Answers: 202
// with the place; 400/413 for a bad message; 503 with Retry-After when
// the message was not published (the log refused it, max-rooms,
// draining); 504 when the log did not answer in time and the outcome is
// unknown (send it again with the same Idempotency-Key).
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		// Leaving: publishers move to another instance now, rather than
		// meet a closed listener later.
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		writeJSON(w, 503, map[string]string{"error": "draining: publish to another instance"})
		return
	}
	room := r.PathValue("room")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxMessage)))
	if err != nil {
		writeJSON(w, 413, map[string]string{"error": fmt.Sprintf("body over max-message (%d bytes)", s.cfg.MaxMessage)})
		return
	}
	t := Binary
	if textual(r.Header.Get("Content-Type")) {
		t = Text // and so checked to be UTF-8
	}
	key := r.Header.Get("Idempotency-Key")
	if room == "" {
		s.servePublishMany(w, r, Message{Type: t, Payload: body, Key: key})
		return
	}
	p, err := s.PublishMessage(r.Context(), Message{Room: room, Type: t, Payload: body, Key: key})
	status, resp := publishAnswer(p, err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, resp)
}

// textual reports whether a Content-Type is text for POST /publish: the
// message then goes out in a text frame (a browser's m.data is a
// string). text/*, JSON (application/json, any +json), JavaScript, XML
// (application/xml, any +xml), form data and YAML are text; anything
// else, or none, is binary.
func textual(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/json", "application/javascript", "application/ecmascript", "application/xml",
		"application/x-www-form-urlencoded", "application/yaml", "application/x-ndjson":
		return true
	}
	return false
}

// maxPublishRooms bounds the rooms of one POST /publish?rooms=.
const maxPublishRooms = 100

// servePublishMany answers POST /publish?rooms=a,b,c: m to each room, at
// once; 202 when every room took it, else 207 with each room's own
// answer (and status).
func (s *Server) servePublishMany(w http.ResponseWriter, r *http.Request, m Message) {
	rooms := strings.Split(r.URL.Query().Get("rooms"), ",")
	if len(rooms) > maxPublishRooms || rooms[0] == "" {
		writeJSON(w, 400, map[string]string{"error": fmt.Sprintf("rooms: 1 to %d comma-separated rooms", maxPublishRooms)})
		return
	}
	results := s.PublishMany(r.Context(), rooms, m)
	out := make(map[string]any, len(results))
	status := http.StatusAccepted
	for _, res := range results {
		st, body := publishAnswer(res.Published, res.Err)
		if st != http.StatusAccepted {
			status = http.StatusMultiStatus
			body["status"] = st
		}
		out[res.Room] = body
	}
	writeJSON(w, status, map[string]any{"rooms": out})
}

// publishAnswer is the admin API's status and body for a publish's
// outcome.
func publishAnswer(p Published, err error) (int, map[string]any) {
	if err != nil {
		status := http.StatusBadRequest
		for _, pe := range []*publishError{errPubStopped, errPubRooms, errPubUnavailable, errPubUnknown, errPubTooBig} {
			if errors.Is(err, pe.err) {
				status = pe.status
			}
		}
		body := map[string]any{"error": err.Error()}
		if status == http.StatusGatewayTimeout {
			body["outcome"] = "unknown"
			body["retry"] = "send the same request again with the same Idempotency-Key: it is then published once"
		}
		return status, body
	}
	// Offset and epoch as loopcast.v1 clients see them.
	resp := map[string]any{"members": p.Members, "offset": p.Offset, "epoch": string(command.AppendEpoch(nil, p.Epoch))}
	if p.Duplicate {
		resp["duplicate"] = true
	}
	if p.NotForwarded != nil {
		resp["not_forwarded"] = p.NotForwarded.Error() // published here only
	}
	return http.StatusAccepted, resp
}

// serveDisconnect answers POST /users/{user}/disconnect?code=&reason=
// and POST /connections/{id}/disconnect?code=&reason=.
func (s *Server) serveDisconnect(w http.ResponseWriter, r *http.Request) {
	code := 0
	if c := r.URL.Query().Get("code"); c != "" {
		var err error
		if code, err = strconv.Atoi(c); err != nil {
			writeJSON(w, 400, map[string]string{"error": ErrBadCloseCode.Error()})
			return
		}
	}
	reason := r.URL.Query().Get("reason")
	if id := r.PathValue("id"); id != "" {
		here, err := s.DisconnectConnection(id, code, reason)
		if err != nil {
			writeJSON(w, 400, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]bool{"here": here})
		return
	}
	n, err := s.DisconnectUser(r.PathValue("user"), code, reason)
	if err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, 200, map[string]int{"connections": n})
}

// serveUserRoom answers POST /users/{user}/subscribe/{room} and
// /unsubscribe/{room}.
func (s *Server) serveUserRoom(w http.ResponseWriter, r *http.Request) {
	act := s.SubscribeUser
	if strings.Contains(r.URL.Path, "/unsubscribe/") {
		act = s.UnsubscribeUser
	}
	n, err := act(r.PathValue("user"), r.PathValue("room"))
	if err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, 200, map[string]int{"connections": n})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// collector turns Stats into Prometheus metrics at scrape time, so the
// hot path only bumps its per-loop atomic counters.
type collector struct {
	s                                                       *Server
	conns, websockets, rooms, draining                      *prometheus.Desc
	accepted, handshakes, health, msgsIn, bytesIn, delivers *prometheus.Desc
	bytesOut, published, closes                             *prometheus.Desc
	subscribes, resumes, replayed, commandErrors            *prometheus.Desc
	historyMessages, historyBytes                           *prometheus.Desc
	compressed, compressedBytes, compressionRatio, inflated *prometheus.Desc
	maxConns, peers, roomsSplit, untrustedForwarded         *prometheus.Desc
	lost, logRoomsRefused, dedupeEvicted, brokerErrors      *prometheus.Desc
	assembling                                              *prometheus.Desc
	occInstances, occBatches, occUpdates, occWatched        *prometheus.Desc
	presUsers, presBatches, presAnnouncements               *prometheus.Desc
	hookCalls, hookCacheHits, hookLatency                   *prometheus.Desc
}

func newCollector(s *Server) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("loopcast_"+name, help, labels, nil)
	}
	return &collector{
		s:          s,
		conns:      d("connections", "Open TCP connections on the main listener."),
		websockets: d("websockets", "Open WebSocket sessions."),
		rooms:      d("rooms", "Rooms (with members, or with history)."),
		draining:   d("draining", "1 once shutdown began."),
		accepted:   d("accepted_total", "TCP connections accepted."),
		handshakes: d("handshakes_total", "WebSocket handshakes by result: ok, or the status code of the refusal.", "result"),
		health:     d("health_requests_total", "Health responses."),
		msgsIn:     d("messages_in_total", "Data messages received."),
		bytesIn:    d("bytes_in_total", "Payload bytes of data messages received."),
		delivers:   d("deliveries_total", "Data frames written to WebSockets."),
		bytesOut:   d("bytes_out_total", "Bytes of data frames written."),
		published:  d("published_total", "Room messages sequenced."),
		closes:     d("closes_total", "Closed connections by reason.", "reason"),

		subscribes:      d("subscribes_total", "loopcast.v1 subscriptions made."),
		resumes:         d("resumes_total", "loopcast.v1 resumes by outcome: recovered, epoch_changed, history_passed.", "outcome"),
		replayed:        d("replayed_total", "Messages replayed from history to resuming subscriptions."),
		commandErrors:   d("command_errors_total", "loopcast.v1 commands refused, by error code.", "code"),
		historyMessages: d("history_messages", "Messages kept in rooms' history."),
		historyBytes:    d("history_bytes", "Bytes of rooms' history (payload buffers plus 64 bytes a message), bounded by history-max-bytes."),

		compressed:         d("compression_messages_total", "Room messages for compressing clients, by how they went: compressed (once per message, lane and loop), or plain (under compression-min-size).", "result"),
		compressedBytes:    d("compression_bytes_total", "Bytes of the room messages compressed, before and after compression.", "stage"),
		compressionRatio:   d("compression_ratio", "Bytes before compression divided by bytes after, since start (0 before the first)."),
		inflated:           d("inflated_messages_total", "Client messages that came compressed (permessage-deflate)."),
		maxConns:           d("max_connections", "--max-conns: WebSocket sessions at most (0: no cap), for alerts on how near a pod is."),
		peers:              d("peers", "Instances the --peers-dns name resolved to at the last lookup (0: not set, or no answer yet)."),
		untrustedForwarded: d("forwarded_untrusted_total", "Handshakes with X-Forwarded-For from a peer outside --trusted-proxies: a gateway subnet missing from the list makes its clients share one address for --max-conns-per-ip."),
		roomsSplit:         d("rooms_split", "1 while --peers-dns finds more than one instance and no broker (--nats-url) joins them: each room's members are split."),
		lost:               d("lost_total", "Losses noticed in messages from other instances (core NATS): each started a new epoch for its room here, so loopcast.v1 clients are told."),
		logRoomsRefused:    d("log_rooms_refused_total", "JetStream messages not kept here because the rooms held only for the stream reached --max-rooms (counted apart from rooms with members)."),
		dedupeEvicted:      d("dedupe_evicted_total", "Publication keys (msgid, Idempotency-Key) forgotten before their two-minute window passed, for want of room (one instance, without JetStream)."),
		brokerErrors:       d("broker_errors_total", "Publications that reached only this instance (the broker refused to forward them) or that the cluster log refused at once."),
		occInstances:       d("occupancy_instances", "Other instances whose room counts this one adds up (heard from within the last 5 s)."),
		occBatches:         d("occupancy_batches_total", "Occupancy batches: shared (sent to the other instances, one a second), share_failed (NATS away), bad (received and refused as malformed), expired (instances dropped for silence).", "result"),
		occUpdates:         d("occupancy_updates_total", "occ frames encoded: one per watched room whose count changed, per second at most."),
		occWatched:         d("occupancy_watched_rooms", "Rooms whose occupancy some connection here watches."),
		presUsers:          d("presence_users", "Users listed in presence rooms on this instance (per room, one per user; in their grace too)."),
		presBatches:        d("presence_batches_total", "Presence batches: shared, share_failed, bad (received, refused as malformed), expired (instances dropped for silence).", "result"),
		presAnnouncements:  d("presence_announcements_total", "pres frames encoded: one per watched presence room whose users changed, per second at most."),
		hookCalls:          d("hook_calls_total", "Backend hook calls by hook (connect, subscribe) and result: allowed, denied, failed (timeout, error, a status other than 200), busy (refused at once: too many waiting).", "hook", "result"),
		hookCacheHits:      d("hook_cache_hits_total", "Subscribe answers reused from the cache (the backend's cache_ttl).", "hook"),
		hookLatency:        d("hook_latency_seconds", "Backend hook call durations.", "hook"),
		assembling:         d("assembling_bytes", "Bytes held by messages in progress (fragments, frames still arriving) on every connection; past max(64 MiB, 16 x --max-message) a connection is closed with 1013."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	g := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	n := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g(c.conns, st.Connections)
	g(c.websockets, st.WebSockets)
	g(c.rooms, st.Rooms)
	draining := int64(0)
	if st.Draining {
		draining = 1
	}
	g(c.draining, draining)
	g(c.maxConns, int64(c.s.maxConns))
	ps := c.s.peerState()
	split := int64(0)
	if ps.split {
		split = 1
	}
	g(c.peers, int64(ps.count))
	g(c.roomsSplit, split)
	n(c.untrustedForwarded, st.UntrustedForwarded)
	n(c.lost, st.Lost)
	n(c.logRoomsRefused, st.LogRoomsRefused)
	n(c.dedupeEvicted, st.DedupeEvicted)
	n(c.brokerErrors, st.BrokerErrors)
	g(c.assembling, c.s.assembling.Load())
	o := c.s.occ
	g(c.occInstances, int64(o.table.Instances()))
	n(c.occBatches, o.shared.Load(), "shared")
	n(c.occBatches, o.shareErrors.Load(), "share_failed")
	n(c.occBatches, o.badBatches.Load(), "bad")
	n(c.occBatches, o.table.Dropped(), "expired")
	n(c.occUpdates, o.updates.Load())
	g(c.occWatched, int64(o.watchedRooms()))
	p := c.s.pres
	g(c.presUsers, int64(p.localUsers()))
	n(c.presBatches, p.shared.Load(), "shared")
	n(c.presBatches, p.shareErrors.Load(), "share_failed")
	n(c.presBatches, p.badBatches.Load(), "bad")
	n(c.presBatches, p.table.Dropped(), "expired")
	n(c.presAnnouncements, p.announcements.Load())
	for _, hc := range []*hook.Client{c.s.hooks.connect, c.s.hooks.subscribe, c.s.hooks.publish} {
		if hc == nil {
			continue
		}
		n(c.hookCalls, hc.Allowed.Load(), hc.Name, "allowed")
		n(c.hookCalls, hc.Denied.Load(), hc.Name, "denied")
		n(c.hookCalls, hc.Failed.Load(), hc.Name, "failed")
		n(c.hookCalls, hc.Busy.Load(), hc.Name, "busy")
		n(c.hookCacheHits, hc.CacheHits.Load(), hc.Name)
		buckets, sum, count := hc.Latency()
		ch <- prometheus.MustNewConstHistogram(c.hookLatency, count, sum, buckets, hc.Name)
	}
	n(c.accepted, st.Accepted)
	n(c.handshakes, st.Upgrades, "ok")
	for status, v := range st.Rejects {
		n(c.handshakes, v, strconv.Itoa(status))
	}
	n(c.health, st.Health)
	n(c.msgsIn, st.MessagesIn)
	n(c.bytesIn, st.BytesIn)
	n(c.delivers, st.Deliveries)
	n(c.bytesOut, st.BytesOut)
	n(c.published, st.Published)
	n(c.subscribes, st.Subscribes)
	for outcome, v := range st.Resumes {
		n(c.resumes, v, outcome)
	}
	n(c.replayed, st.Replayed)
	for code, v := range st.CommandErrors {
		n(c.commandErrors, v, code)
	}
	g(c.historyMessages, st.HistoryMessages)
	g(c.historyBytes, st.HistoryBytes)
	n(c.compressed, st.CompressedMessages, "compressed")
	n(c.compressed, st.CompressedPlain, "plain")
	n(c.compressedBytes, st.CompressedBytesIn, "before")
	n(c.compressedBytes, st.CompressedBytesOut, "after")
	ratio := 0.0
	if st.CompressedBytesOut > 0 {
		ratio = float64(st.CompressedBytesIn) / float64(st.CompressedBytesOut)
	}
	ch <- prometheus.MustNewConstMetric(c.compressionRatio, prometheus.GaugeValue, ratio)
	n(c.inflated, st.Inflated)
	for reason, v := range st.Closes {
		n(c.closes, v, reason)
	}
}
