package clients

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestJSClient builds cmd/loopcast and runs clients/js's tests (Node's
// test runner) against it: reconnect and resume through gateway drops and
// a drain, 503 Retry-After, token refresh, refusals.
func TestJSClient(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("Node is needed for the JavaScript client's tests (.ci/run installs it)")
	}
	bin := filepath.Join(t.TempDir(), "loopcast")
	build := exec.Command("go", "build", "-o", bin, "../cmd/loopcast")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join("js", "node_modules", "typescript")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = "js"
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in clients/js: %v\n%s", err, out)
		}
	}
	// The types: the README's examples compile against index.d.ts.
	tsc := exec.Command(filepath.Join("node_modules", ".bin", "tsc"), "-p", ".")
	tsc.Dir = "js"
	if out, err := tsc.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	cmd := exec.Command("node", "--test", "--test-reporter=spec", "test/")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(), "TEST_LOOPCAST_BIN="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("the JavaScript client's tests failed: %v", err)
	}
}
