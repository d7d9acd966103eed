// Package procstat reads a process's memory and CPU use from /proc (Linux),
// so the load generator can report server RSS per connection and whether the
// server or the load generator itself was the one out of CPU.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is 100
// on every Linux architecture Go supports.
const clockTick = 100

// RSS returns the resident set size of pid in bytes (VmRSS in
// /proc/PID/status).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseRSS(b)
}

func parseRSS(status []byte) (int64, error) {
	for _, line := range bytes.Split(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("procstat: odd VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("procstat: no VmRSS (kernel thread or zombie?)")
}

// CPU returns the user+system CPU time pid has used (/proc/PID/stat).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields after the last ')' start at field 3 (state).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: odd stat %q", stat)
	}
	f := bytes.Fields(stat[i+1:])
	// utime and stime are fields 14 and 15: indexes 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: short stat")
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("procstat: bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// SelfCPU returns this process's user+system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
