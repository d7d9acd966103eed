package main

import (
	"os"
	"strings"
	"syscall"
)

// sysmonAwake is the GODEBUG setting that keeps the Go runtime's sysmon
// thread from sleeping deeply: a scheduler trace every 2^31-1 ms (24.8
// days), the longest period there is. The runtime has no setting for
// this by itself, and it cannot be changed once the process runs (the
// runtime reads schedtrace once, at start), hence keepSysmonAwake.
//
// Why: when every P is idle (an event loop waiting in epoll_wait), sysmon
// sleeps deeply; the loop's return from epoll_wait wakes it, and it then
// polls every 20 µs for a millisecond. On a pinned core, or any single
// CPU, each poll preempts the loop in the middle of a fan-out burst: at
// low message rates that is a context switch every 20 µs exactly when a
// message goes out to thousands of members. With the setting sysmon never
// sleeps deeply and polls at its idle pace (every 10 ms) instead.
// BENCHMARKS.md, "Low-rate tail", has the measurements.
//
// Side effects: sysmon wakes every 10 ms while the process is idle
// (~100 wakeups a second: an idle server used 70 ms of CPU in 10 s
// against 10 ms without, 0.6 % of a core, on the project's VM), and the
// runtime prints one line ("SCHED 2147483647ms: gomaxprocs=…") to stderr
// every 24.8 days of the host's uptime (the runtime's clock counts from
// boot, so on a host up longer than that the first line comes at start).
const sysmonAwake = "schedtrace=2147483647"

// sysmonExe is the running binary, when its path cannot be read.
const sysmonExe = "/proc/self/exe"

// selfPath is the running binary's path (what /proc/self/exe points to).
// Executing it by that path keeps the process's name ("loopcast", what
// pgrep, top and ss -p show); executing /proc/self/exe would name it
// "exe". The exec happens first thing at start, so the path is the file
// that just started.
func selfPath() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return sysmonExe
}

// keepSysmonAwake executes the binary again, same PID, arguments and
// environment, with sysmonAwake added to GODEBUG, unless GODEBUG already
// sets schedtrace (GODEBUG=schedtrace=0 keeps Go's default). It returns
// only when it did not: already set, or the exec failed (no /proc), in
// which case the server runs as it would have without it.
func keepSysmonAwake() {
	godebug, set := os.LookupEnv("GODEBUG")
	if hasSchedtrace(godebug) {
		return
	}
	if set && godebug != "" {
		godebug += ","
	}
	env := append(withoutGODEBUG(os.Environ()), "GODEBUG="+godebug+sysmonAwake)
	_ = syscall.Exec(selfPath(), os.Args, env)
}

func hasSchedtrace(godebug string) bool {
	for _, kv := range strings.Split(godebug, ",") {
		if strings.HasPrefix(strings.TrimSpace(kv), "schedtrace=") {
			return true
		}
	}
	return false
}

func withoutGODEBUG(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			out = append(out, kv)
		}
	}
	return out
}
