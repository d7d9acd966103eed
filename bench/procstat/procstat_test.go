package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseRSS(t *testing.T) {
	st := []byte("Name:\tloopcast\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n")
	if n, err := parseRSS(st); err != nil || n != 12345*1024 {
		t.Fatalf("got %d %v", n, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseRSS([]byte(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// Field 2 with a space and a parenthesis, utime=250 stime=50 ticks.
	st := []byte("4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200")
	if d, err := parseStatCPU(st); err != nil || d != 3*time.Second {
		t.Fatalf("got %v %v", d, err)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
}

func TestSelf(t *testing.T) {
	if n, err := RSS(os.Getpid()); err != nil || n <= 0 {
		t.Fatalf("RSS(self) = %d %v", n, err)
	}
	if _, err := CPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	SelfCPU()
}
