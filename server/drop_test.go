package server_test

import (
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// The Application Gateway drop, for real: a publisher keeps publishing to
// several rooms at a steady rate while a gateway in front of the server
// cuts every client's TCP connection at once, twice. Each client
// reconnects with jittered backoff and resumes each of its rooms from the
// last message it received: every client ends with every message exactly
// once, in order. (Across nodes over JetStream: package cluster.)
func TestGatewayDropLosesNothing(t *testing.T) {
	t.Parallel()
	srv := startServer(t, testConfig())
	gw := testutil.StartGateway(t, srv.Addr().String())
	testutil.Drop{
		Rooms: 6, Clients: 120, RoomsPerClient: 3, Messages: 300, Interval: 5 * time.Millisecond,
		Publish: func(room, payload string) error {
			_, err := srv.Publish(room, server.Text, []byte(payload))
			return err
		},
	}.Run(t, gw)
}
