package server_test

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"

	"github.com/loopcast/loopcast/internal/testutil"
	"github.com/loopcast/loopcast/server"
)

// TestMain fails the package if a test leaves goroutines behind. gnet's
// shared worker pool (ants) keeps idle workers for a while by design;
// they are not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"),
	)
}

// testConfig is the configuration tests start from: loopback, port 0,
// no admin listener, two event loops so cross-loop paths are exercised,
// and no publish rate limit: the fan-out tests publish far faster than a
// person (TestPublishRateLimit covers the default limit).
func testConfig() server.Config {
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.AdminAddr = ""
	cfg.EventLoops = 2
	cfg.PublishRate = 0
	return cfg
}

// startServer runs a server for the test and closes it at cleanup.
func startServer(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	return startServerLog(t, cfg, nil)
}

// startServerLog is startServer with a logger (nil: discard).
func startServerLog(t testing.TB, cfg server.Config, log *slog.Logger) *server.Server {
	t.Helper()
	srv, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return srv
}

// waitFor polls cond until it holds or the timeout passes.
var waitFor = testutil.WaitFor

func TestStartServesHealth(t *testing.T) {
	srv := startServer(t, testConfig())
	if srv.Addr() == nil {
		t.Fatal("Addr is nil after Start")
	}
}
