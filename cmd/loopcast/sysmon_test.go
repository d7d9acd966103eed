package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// environWithout is the test's environment without GODEBUG.
func environWithout() []string {
	return withoutGODEBUG(os.Environ())
}

// procEnv reads the environment the kernel holds for pid.
func procEnv(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// sysmonSwitches reads the voluntary context switches (wakeups from
// sleep) of pid's sysmon thread: the first thread the Go runtime starts,
// before any other, so the lowest thread ID after the main thread's.
func sysmonSwitches(t *testing.T, pid int) int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
	if err != nil {
		t.Fatal(err)
	}
	sysmon := 0
	for _, d := range dirs {
		if tid, err := strconv.Atoi(filepath.Base(d)); err == nil && tid != pid && (sysmon == 0 || tid < sysmon) {
			sysmon = tid
		}
	}
	if sysmon == 0 {
		t.Fatal("no thread besides the main one")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(sysmon) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no voluntary_ctxt_switches")
	return 0
}

// idleWakeups counts the sysmon thread's wakeups over one idle second.
func idleWakeups(t *testing.T, p *proc) int {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // past start-up
	before := sysmonSwitches(t, p.cmd.Process.Pid)
	time.Sleep(time.Second)
	return sysmonSwitches(t, p.cmd.Process.Pid) - before
}

// TestSysmonKeptAwake: the binary executes itself again (same PID,
// arguments) with GODEBUG=schedtrace=2147483647 added to what GODEBUG
// says, unless GODEBUG sets schedtrace already; the runtime takes it: on
// one P, idle, its sysmon thread wakes every 10 ms instead of sleeping
// deeply.
func TestSysmonKeptAwake(t *testing.T) {
	wakeups := map[bool][]int{} // by awake
	for _, tc := range []struct {
		name, godebug, want string
		awake               bool
	}{
		{"unset", "", sysmonAwake, true},
		{"other settings kept", "madvdontneed=1", "madvdontneed=1," + sysmonAwake, true},
		{"opted out", "schedtrace=0", "schedtrace=0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One P, as on a pinned core or a CPU limit of 1: the case
			// where sysmon sleeps deeply whenever the loop waits.
			env := append(environWithout(), "GOMAXPROCS=1")
			if tc.godebug != "" {
				env = append(env, "GODEBUG="+tc.godebug)
			}
			p := startBinaryEnv(t, env, "--event-loops", "1")
			if got := procEnv(t, p.cmd.Process.Pid)["GODEBUG"]; got != tc.want {
				t.Errorf("GODEBUG of pid %d is %q, want %q", p.cmd.Process.Pid, got, tc.want)
			}
			if !strings.Contains(p.stderr.String(), `godebug=`+strconv.Quote(tc.want)) {
				t.Errorf("the serving line does not say godebug=%q", tc.want)
			}
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/cmdline")
			if got := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"); strings.Join(got[1:], " ") != strings.Join(p.cmd.Args[1:], " ") {
				t.Errorf("arguments after exec %q, want %q", got[1:], p.cmd.Args[1:])
			}
			w := idleWakeups(t, p)
			t.Logf("sysmon woke %d times in an idle second", w)
			wakeups[tc.awake] = append(wakeups[tc.awake], w)
		})
	}
	// Awake, sysmon sleeps 10 ms at a time when idle: ~100 a second (155
	// measured on one P). Deeply asleep it wakes only when a P becomes
	// busy (the server's 1 s tick, timers): ~20 on a quiet machine, but
	// up to ~70 when other processes load it (the loop's own wakeups then
	// come late and in more pieces), so only the awake side is asserted.
	if len(wakeups[false]) != 1 || len(wakeups[true]) != 2 {
		return // a subtest failed before measuring
	}
	for _, w := range wakeups[true] {
		if w < 40 {
			t.Errorf("with the setting sysmon woke %d times in an idle second (without it %d): want at least 40, it should never sleep deeply", w, wakeups[false][0])
		}
	}
}

func TestHasSchedtrace(t *testing.T) {
	for in, want := range map[string]bool{
		"": false, "schedtrace=0": true, "madvdontneed=1, schedtrace=1000": true,
		"scheddetail=1": false, "xschedtrace=1": false,
	} {
		if got := hasSchedtrace(in); got != want {
			t.Errorf("hasSchedtrace(%q) = %v, want %v", in, got, want)
		}
	}
}

// The re-exec keeps the process's name: pgrep loopcast finds it.
func TestProcessKeepsItsName(t *testing.T) {
	p := startBinaryEnv(t, environWithout(), "--event-loops", "1")
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != filepath.Base(binary) {
		t.Fatalf("process name %q, want %q", got, filepath.Base(binary))
	}
	if got := procEnv(t, p.cmd.Process.Pid)["GODEBUG"]; got != sysmonAwake {
		t.Fatalf("GODEBUG %q: the re-exec did not happen", got)
	}
}
