package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/server"
)

// TestValidateRefusesUnsafeSettings: settings that quietly undo a
// protection are refused by Validate (so by --check and at start-up) with
// a message that says why and what to do.
func TestValidateRefusesUnsafeSettings(t *testing.T) {
	t.Parallel()
	const secret32 = "0123456789abcdef0123456789abcdef"
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	const jwks = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/discovery/v2.0/keys"
	for _, tc := range []struct {
		name string
		set  func(*server.Config)
		want []string // substrings of the error; none: valid
	}{
		// --trusted-proxies that trusts everyone, with a per-address cap.
		{"trust every IPv4 address", func(c *server.Config) {
			c.MaxConnsPerIP, c.TrustedProxies = 10, []string{"0.0.0.0/0"}
		}, []string{"trusted-proxies", "0.0.0.0/0", "every", "max-conns-per-ip", "gateway's subnet"}},
		{"trust every IPv6 address", func(c *server.Config) {
			c.MaxConnsPerIP, c.TrustedProxies = 10, []string{"10.225.0.0/16", "::/0"}
		}, []string{"trusted-proxies", "::/0"}},
		{"a /0 not written as the zero address", func(c *server.Config) {
			c.MaxConnsPerIP, c.TrustedProxies = 10, []string{"10.1.2.3/0"}
		}, []string{"trusted-proxies", "10.1.2.3/0"}},
		{"trust everyone without a per-address cap", func(c *server.Config) {
			c.TrustedProxies = []string{"0.0.0.0/0"}
		}, nil},
		{"trust a subnet with a cap", func(c *server.Config) {
			c.MaxConnsPerIP, c.TrustedProxies = 10, []string{"10.225.0.0/16", "fd00::/8"}
		}, nil},

		// HS256 keys shorter than the hash (RFC 7518 §3.2).
		{"secret of 31 bytes", func(c *server.Config) { c.JWTSecret = secret32[:31] },
			[]string{"jwt-secret", "31 bytes", "32", "RFC 7518"}},
		{"secret of 1 byte", func(c *server.Config) { c.JWTSecret = "k" }, []string{"jwt-secret", "1 bytes"}},
		{"secret of 32 bytes", func(c *server.Config) { c.JWTSecret = secret32 }, nil},
		// The file's secret wins and is checked when New reads it.
		{"short secret overridden by a file", func(c *server.Config) { c.JWTSecret, c.JWTSecretFile = "k", "/run/secrets/jwt" }, nil},

		// jwt-leeway: at most 5 minutes.
		{"leeway above 5m", func(c *server.Config) { c.JWTSecret, c.JWTLeeway = secret32, 5*time.Minute+time.Second },
			[]string{"jwt-leeway", "5m1s", "5m0s"}},
		{"leeway of an hour", func(c *server.Config) { c.JWTLeeway = time.Hour }, []string{"jwt-leeway"}},
		{"leeway of 5m", func(c *server.Config) { c.JWTSecret, c.JWTLeeway = secret32, 5*time.Minute }, nil},

		// One source of keys.
		{"secret and public key", func(c *server.Config) { c.JWTSecret, c.JWTPublicKey = secret32, pubKey },
			[]string{"jwt-secret", "jwt-public-key", "one"}},
		{"secret and JWKS", func(c *server.Config) { c.JWTSecret, c.JWTJWKSURL = secret32, jwks },
			[]string{"jwt-secret", "jwt-jwks-url", "one"}},
		{"secret file and public key", func(c *server.Config) { c.JWTSecretFile, c.JWTPublicKey = "/run/secrets/jwt", pubKey },
			[]string{"jwt-secret-file", "jwt-public-key", "one"}},
		{"secret file and JWKS", func(c *server.Config) { c.JWTSecretFile, c.JWTJWKSURL = "/run/secrets/jwt", jwks },
			[]string{"jwt-secret-file", "jwt-jwks-url", "one"}},
		{"public key and JWKS", func(c *server.Config) { c.JWTPublicKey, c.JWTJWKSURL = pubKey, jwks },
			[]string{"jwt-public-key", "jwt-jwks-url", "one"}},
		{"public key alone", func(c *server.Config) { c.JWTPublicKey = pubKey }, nil},

		// The prefix IPv6 clients are counted by.
		{"IPv6 prefix 0", func(c *server.Config) { c.ConnsPerIPv6Prefix = 0 }, []string{"conns-per-ipv6-prefix", "1 to 128"}},
		{"IPv6 prefix 129", func(c *server.Config) { c.ConnsPerIPv6Prefix = 129 }, []string{"conns-per-ipv6-prefix"}},
		{"IPv6 prefix 128", func(c *server.Config) { c.ConnsPerIPv6Prefix = 128 }, nil},
		{"IPv6 prefix 1", func(c *server.Config) { c.ConnsPerIPv6Prefix = 1 }, nil},
		{"JWKS alone", func(c *server.Config) { c.JWTJWKSURL = jwks }, nil},
	} {
		cfg := server.DefaultConfig()
		tc.set(&cfg)
		err := cfg.Validate()
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != nil && err == nil:
			t.Errorf("%s: accepted, want an error mentioning %q", tc.name, tc.want)
		case err != nil:
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %q, want it to mention %q", tc.name, err, w)
				}
			}
		}
	}
}

// A secret read from --jwt-secret-file is held to the same length as one
// given directly, when New (or --check) reads it; the error names the
// flag and the file, never the secret.
func TestNewRefusesShortSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		secret string
		ok     bool
	}{
		{"short-secret-from-a-file", false},
		{"a-32-byte-secret-from-a-file-xyz", true},
	} {
		file := filepath.Join(dir, "jwt")
		if err := os.WriteFile(file, []byte(c.secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig()
		cfg.JWTSecretFile = file
		_, err := server.New(cfg, nil) // not started: nothing to close
		if c.ok {
			if err != nil {
				t.Errorf("%d-byte secret from a file: %v", len(c.secret), err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "jwt-secret-file "+file) || !strings.Contains(err.Error(), "24 bytes") || strings.Contains(err.Error(), c.secret) {
			t.Errorf("%d-byte secret from a file: %v, want an error naming jwt-secret-file and not the secret", len(c.secret), err)
		}
	}
}
