package flags

import (
	"io"
	"strings"
	"testing"
)

// --conns-per-ipv6-prefix has its LOOPCAST_ variable like every flag,
// defaults to 64 and is range-checked.
func TestConnsPerIPv6PrefixFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		want int
		err  string
	}{
		{nil, nil, 64, ""},
		{[]string{"--conns-per-ipv6-prefix", "48"}, nil, 48, ""},
		{nil, []string{"LOOPCAST_CONNS_PER_IPV6_PREFIX=56"}, 56, ""},
		{[]string{"--conns-per-ipv6-prefix=128"}, []string{"LOOPCAST_CONNS_PER_IPV6_PREFIX=56"}, 128, ""},
		{[]string{"--conns-per-ipv6-prefix", "0"}, nil, 0, "conns-per-ipv6-prefix 0"},
		{nil, []string{"LOOPCAST_CONNS_PER_IPV6_PREFIX=/64"}, 0, "LOOPCAST_CONNS_PER_IPV6_PREFIX"},
	} {
		cfg, _, err := Load(c.args, c.env, io.Discard)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v %v: %v, want an error mentioning %q", c.args, c.env, err, c.err)
			}
		case err != nil:
			t.Errorf("%v %v: %v", c.args, c.env, err)
		case cfg.ConnsPerIPv6Prefix != c.want:
			t.Errorf("%v %v: %d, want %d", c.args, c.env, cfg.ConnsPerIPv6Prefix, c.want)
		}
	}
}
