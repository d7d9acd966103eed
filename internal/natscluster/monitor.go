//go:build linux

package natscluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// live are the nodes that run and are not frozen: those whose monitoring
// endpoint can answer.
func (c *Cluster) live() []*node {
	var l []*node
	for _, n := range c.nodes {
		n.mu.Lock()
		if n.running && !n.frozen {
			l = append(l, n)
		}
		n.mu.Unlock()
	}
	return l
}

// Healthy reports whether node name answers /healthz with 200 (its
// JetStream is current).
func (c *Cluster) Healthy(name string) bool {
	n := c.node(name)
	if n == nil {
		return false
	}
	resp, err := c.http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor))
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// jszInfo is the part of a node's /jsz read here (the fields of
// nats-server's JSInfo, declared here so that importers do not link
// nats-server).
type jszInfo struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	AccountDetails []struct {
		Streams []StreamView `json:"stream_detail"`
	} `json:"account_details"`
}

// StreamView is one node's view of a stream, from its /jsz (nats-server's
// StreamDetail): the replica it holds.
type StreamView struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Cluster *struct {
		Leader string `json:"leader"` // whom this node takes for the leader
	} `json:"cluster"`
	Config json.RawMessage `json:"config"` // the stream's configuration as this node has it
	State  struct {
		Msgs     uint64 `json:"messages"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"state"`
}

func (c *Cluster) jsz(n *node, query string) (*jszInfo, error) {
	var info jszInfo
	if err := c.getJSON(n, "/jsz?"+query, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

func (c *Cluster) getJSON(n *node, path string, v any) error {
	resp, err := c.http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", n.monitor, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", n.name, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// StreamReplicas is each live node's view of stream (a node that does not
// answer, or holds no replica, is left out).
func (c *Cluster) StreamReplicas(stream string) map[string]StreamView {
	views := map[string]StreamView{}
	for _, n := range c.live() {
		info, err := c.jsz(n, "accounts=true&streams=true&config=true")
		if err != nil {
			continue
		}
		for _, a := range info.AccountDetails {
			for _, s := range a.Streams {
				if s.Name == stream {
					views[n.name] = s
				}
			}
		}
	}
	return views
}

// StreamLeader is the server name of stream's leader, when every live
// node holding a replica names the same one, and that one is live and
// says so itself; "" otherwise (an election, or a frozen leader the
// others have not voted out yet). Poll it.
func (c *Cluster) StreamLeader(stream string) string {
	views := c.StreamReplicas(stream)
	leader := ""
	for _, v := range views {
		if v.Cluster == nil || v.Cluster.Leader == "" {
			return ""
		}
		if leader != "" && v.Cluster.Leader != leader {
			return ""
		}
		leader = v.Cluster.Leader
	}
	if _, ok := views[leader]; !ok {
		return "" // named by the others, but not answering
	}
	return leader
}

// MoveStreamLeader asks stream's leader to step down in favour of node
// to ($JS.API.STREAM.LEADER.STEPDOWN with a preferred placement), and
// waits (ReadyTimeout, or ctx) until every live replica names to as the
// leader.
func (c *Cluster) MoveStreamLeader(ctx context.Context, stream, to string) error {
	if c.StreamLeader(stream) == to {
		return nil
	}
	nc, err := nats.Connect(c.URLs(), nats.Name("natscluster"), nats.Timeout(MonitorTimeout))
	if err != nil {
		return fmt.Errorf("move the leader of %s: %w", stream, err)
	}
	defer nc.Close()
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, to)
	msg, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req), 5*time.Second)
	if err != nil {
		return fmt.Errorf("move the leader of %s to %s: %w", stream, to, err)
	}
	var resp struct {
		Success bool            `json:"success"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil || !resp.Success {
		return fmt.Errorf("move the leader of %s to %s: %s (%v)", stream, to, msg.Data, err)
	}
	return Poll(ctx, ReadyTimeout, fmt.Sprintf("%s leading %s", to, stream), func() bool { return c.StreamLeader(stream) == to })
}

// MetaLeader is the JetStream meta leader every live node names, or "".
func (c *Cluster) MetaLeader() string {
	leader := ""
	for _, n := range c.live() {
		info, err := c.jsz(n, "")
		if err != nil || info.Meta == nil || info.Meta.Leader == "" {
			return ""
		}
		if leader != "" && info.Meta.Leader != leader {
			return ""
		}
		leader = info.Meta.Leader
	}
	return leader
}

// ClientServer is the name of the live node that holds a client
// connection named clientName (nats.Name), or "".
func (c *Cluster) ClientServer(clientName string) string {
	for _, n := range c.live() {
		var cz struct {
			Conns []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		if err := c.getJSON(n, "/connz?limit=1024", &cz); err != nil {
			continue
		}
		for _, ci := range cz.Conns {
			if ci.Name == clientName {
				return n.name
			}
		}
	}
	return ""
}
