package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageAndUnknown(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &out, &errb); err != nil {
		t.Fatalf("help: %v %q", err, errb.String())
	}
	// Every command run dispatches is listed.
	for _, name := range []string{"echo", "fanout", "conns", "storm", "health", "resume", "cluster", "report"} {
		if !strings.Contains(errb.String(), "\n  "+name+" ") && !strings.Contains(errb.String(), "\n"+name+" ") {
			t.Errorf("-h does not list %s:\n%s", name, errb.String())
		}
	}
	if err := run(context.Background(), []string{"bogus"}, &out, &errb); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestServerDownIsAClearError(t *testing.T) {
	// A port nothing listens on: bind one, close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"echo", "--addr", addr, "--quiet", "--duration", "100ms"}, &out, &errb)
	var ce codeError
	if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "is the server running") {
		t.Fatalf("err = %v", err)
	}
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	res := `{"scenario":"echo","server":"loopcast","addr":"x","metrics":{"msgs_per_s":1000},"latency":{"rtt":{"count":1,"min_us":1,"mean_us":1,"p50_us":1,"p90_us":1,"p99_us":1,"p999_us":1,"max_us":1}}}`
	os.WriteFile(filepath.Join(dir, "loopcast-echo.json"), []byte(res+"\n"), 0o644)
	md := filepath.Join(dir, "B.md")
	os.WriteFile(md, []byte("# B\n<!-- results:start -->\nold\n<!-- results:end -->\n"), 0o644)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"report", "--results", dir, "--md", md, "--charts", filepath.Join(dir, "c")}, &out, &errb); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	b, _ := os.ReadFile(md)
	if strings.Contains(string(b), "old") || !strings.Contains(string(b), "| loopcast | 1.0k | ×1.00 |") {
		t.Fatalf("document:\n%s", b)
	}
}
