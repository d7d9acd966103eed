package server

import "testing"

func TestSubdomainOrigins(t *testing.T) {
	for _, tc := range []struct {
		origin, pattern string
		ok              bool
	}{
		{"https://app.example.com", "https://*.example.com", true},
		{"https://a.b.example.com", "https://*.example.com", true},
		{"HTTPS://App.Example.COM", "https://*.example.com", true},
		{"https://example.com", "https://*.example.com", false},
		{"http://app.example.com", "https://*.example.com", false},
		{"https://app.example.com:8443", "https://*.example.com", false},
		{"https://app.example.com:8443", "https://*.example.com:8443", true},
		{"https://evil-example.com", "https://*.example.com", false},
		{"https://app.example.com.evil.net", "https://*.example.com", false},
		{"https://.example.com", "https://*.example.com", false},
		{"https://a b.example.com", "https://*.example.com", false},
		{"https://app.example.com", "https://app.example.com", false}, // not a wildcard: compared whole elsewhere
	} {
		if got := subdomainOf([]byte(tc.origin), tc.pattern); got != tc.ok {
			t.Errorf("%s against %s: %v", tc.origin, tc.pattern, got)
		}
	}
	for o, ok := range map[string]bool{"https://*.example.com": true, "https://*.example.com:8443": true, "https://a.*.example.com": false, "https://*example.com": false} {
		if err := checkOrigin(o); (err == nil) != ok {
			t.Errorf("checkOrigin(%q) = %v", o, err)
		}
	}
}
