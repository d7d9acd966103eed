package clients

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testutil"
)

// toolTimeout bounds each external command (go build, npm ci, tsc, the
// Node test run) only so a hung one fails the test instead of hanging
// it: it holds on a cold build cache, a cold npm cache and a loaded
// machine.
const toolTimeout = 10 * time.Minute

// TestJSClient builds cmd/loopcast and runs clients/js's tests (Node's
// test runner) against it: reconnect and resume through gateway drops and
// a drain, 503 Retry-After, token refresh, refusals.
func TestJSClient(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("Node is needed for the JavaScript client's tests (.ci/run installs it)")
	}
	bin := filepath.Join(t.TempDir(), "loopcast")
	build := testutil.Command(t, toolTimeout, "go", "build", "-o", bin, "../cmd/loopcast")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join("js", "node_modules", "typescript")); err != nil {
		npm := testutil.Command(t, toolTimeout, "npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = "js"
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in clients/js: %v\n%s", err, out)
		}
	}
	// The types: the README's examples compile against index.d.ts.
	tsc := testutil.Command(t, toolTimeout, filepath.Join("node_modules", ".bin", "tsc"), "-p", ".")
	tsc.Dir = "js"
	if out, err := tsc.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	cmd := testutil.Command(t, toolTimeout, "node", "--test", "--test-reporter=spec", "test/")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(), "TEST_LOOPCAST_BIN="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("the JavaScript client's tests failed: %v", err)
	}
}
