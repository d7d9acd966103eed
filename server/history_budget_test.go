package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/server"
)

// TestBugHistoryBudgetAttack: a publisher who sends a few large messages,
// then many tiny ones, must not wipe other rooms' history. Before, each
// tiny message was charged the capacity of the pooled buffer a large one
// had grown (a 2-byte message cost about 1 MB of history-max-bytes), and
// the room that went over the loop's share dropped its own entries while
// the others' were trimmed anyway: the victim room went from 500 entries
// to 0.
func TestBugHistoryBudgetAttack(t *testing.T) {
	cfg := testConfig()
	cfg.EventLoops = 1
	cfg.HistoryMaxBytes = 4 << 20
	srv := startServer(t, cfg)
	for i := range 500 {
		if _, err := srv.Publish("victim", server.Text, []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	big := []byte(strings.Repeat("x", 256<<10))
	for range 4 {
		if _, err := srv.Publish("attacker", server.Binary, big); err != nil {
			t.Fatal(err)
		}
	}
	for range 5000 {
		if _, err := srv.Publish("attacker", server.Text, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// The victim room publishes again, over a budget the attacker filled.
	if _, err := srv.Publish("victim", server.Text, []byte("v500")); err != nil {
		t.Fatal(err)
	}
	var victim, attacker server.RoomInfo
	for _, r := range srv.Rooms() {
		switch r.Name {
		case "victim":
			victim = r
		case "attacker":
			attacker = r
		}
	}
	if victim.History != 501 {
		t.Fatalf("the victim room keeps %d of its 501 messages (attacker: %d messages, %d bytes)", victim.History, attacker.History, attacker.HistoryBytes)
	}
	if per := attacker.HistoryBytes / max(attacker.History, 1); per > 2+2+256+64 {
		t.Fatalf("a 1-byte message costs %d bytes of history-max-bytes", per)
	}
	if st := srv.Stats(); st.HistoryBytes > int64(cfg.HistoryMaxBytes) {
		t.Fatalf("history holds %d bytes, over history-max-bytes %d", st.HistoryBytes, cfg.HistoryMaxBytes)
	}
}
