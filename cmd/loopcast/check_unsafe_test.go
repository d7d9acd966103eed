package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckRefusesUnsafeSettings runs the real binary's --check with
// settings that would quietly undo a protection, from flags and from the
// environment: each exits 2 with a message naming the setting and why.
func TestCheckRefusesUnsafeSettings(t *testing.T) {
	const secret32 = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		args    []string
		env     []string
		code    int
		message string
	}{
		{[]string{"--check", "--max-conns-per-ip", "10", "--trusted-proxies", "10.225.0.0/16,0.0.0.0/0"}, nil, 2, "trusted-proxies 0.0.0.0/0"},
		{[]string{"--check"}, []string{"LOOPCAST_MAX_CONNS_PER_IP=10", "LOOPCAST_TRUSTED_PROXIES=::/0"}, 2, "trusted-proxies ::/0"},
		{[]string{"--check", "--jwt-secret", "too-short"}, nil, 2, "RFC 7518"},
		{[]string{"--check", "--jwt-secret", secret32, "--jwt-leeway", "10m"}, nil, 2, "jwt-leeway 10m0s"},
		{[]string{"--check", "--jwt-secret", secret32, "--jwt-jwks-url", "https://login.example.com/keys"}, nil, 2, "give one"},
		{[]string{"--check", "--jwt-secret", secret32, "--jwt-leeway", "5m"}, nil, 0, "configuration ok"},
		{[]string{"--check", "--max-conns-per-ip", "10", "--trusted-proxies", "10.225.0.0/16"}, nil, 0, "configuration ok"},
	} {
		cmd := exec.Command(binary, c.args...)
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(string(out), c.message) {
			t.Errorf("loopcast %v %v: exit %d %q, want exit %d mentioning %q", c.args, c.env, code, out, c.code, c.message)
		}
		if strings.Contains(string(out), secret32) || strings.Contains(string(out), "too-short") {
			t.Errorf("loopcast %v: the output shows the secret: %q", c.args, out)
		}
	}
}

// --check reads --jwt-secret-file and holds its secret to the same
// 32 bytes as --jwt-secret's.
func TestCheckRefusesShortSecretFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(file, []byte("sixteen-bytes-xx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "--check", "--jwt-secret-file", file).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "jwt-secret-file "+file+": the HS256 secret is 16 bytes") {
		t.Fatalf("loopcast --check --jwt-secret-file (16 bytes): %v %q, want exit 2 naming the file and the length", err, out)
	}
	if strings.Contains(string(out), "sixteen-bytes-xx") {
		t.Fatalf("the output shows the secret: %q", out)
	}
}
