package testutil

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Command is exec.Command for an external tool a test runs (go build, npm
// ci, node, tsc), given at most limit: less when the test binary's
// -timeout ends sooner, keeping a minute to report (a test past -timeout
// panics with every goroutine's stack and no word about the tool). The
// limit only keeps a hung tool from hanging the test, so make it hold on
// a cold cache and a loaded machine (minutes for a build or a download).
// At the deadline, or when the test ends, the tool's whole process group
// is killed (a go build's compilers and linker, npm's scripts), and the
// output pipes are given up 10 s later whatever still holds them.
func Command(t testing.TB, limit time.Duration, name string, args ...string) *exec.Cmd {
	t.Helper()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := d.Deadline(); ok {
			limit = min(limit, time.Until(end)-time.Minute)
		}
	}
	if limit <= 0 {
		t.Fatalf("%s: no time left before the test binary's -timeout", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}
