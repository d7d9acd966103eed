package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/loopcast/loopcast/server/cluster"
)

// TestBugAppendsStallBehindALostAck is the regression test for the
// head-of-line stall of issue 31: acknowledgements were awaited in order
// without a deadline, so one lost with a dead stream leader blocked every
// later pub's answer forever while the messages were still delivered.
// Now each append is answered by itself: the one whose acknowledgement
// never comes gets "unknown" within the deadline, the others their
// acknowledgements as they come; a refusal is true (the message never
// reached the stream); the instance publishes again once the stream
// answers.
func TestBugAppendsStallBehindALostAck(t *testing.T) {
	ns := runJetStream(t, 0, "")
	n := startJSNode(t, natsURL(ns), jetstream.MemoryStorage)
	c := dialV1(t, n.addr(), "")
	js := startPublisher(t, natsURL(ns))
	stored := func() uint64 {
		st, err := js.Stream(context.Background(), cluster.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	restore, err := cluster.LoseAcks(n.stream)
	if err != nil {
		t.Fatal(err)
	}
	c.send(t, "pub 1 r lost-1\nlost") // stored, its acknowledgement lost
	waitFor(t, 10*time.Second, "the stream to have it", func() bool { return stored() == 1 })
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	c.send(t, "pub 2 r ok-1\nfine")
	if line := c.read(t); !strings.HasPrefix(line, "pub 2 r ") {
		t.Fatalf("the pub after the lost one: %q, want its acknowledgement first", line)
	}
	if line := c.read(t); !strings.HasPrefix(line, "err 1 unknown ") {
		t.Fatalf("the pub whose acknowledgement was lost: %q", line)
	}
	before := stored()

	// The stream did not answer in time: pubs are refused (truly: never
	// sent), one probe at a time goes through, and its acknowledgement
	// opens the way again.
	acked, refusedN := 0, 0
	for i := 0; acked < 2; i++ {
		if i > 1000 {
			t.Fatal("publishing never came back")
		}
		id := 10 + i
		c.send(t, fmt.Sprintf("pub %d r ok-%d\nm", id, id))
		line := c.read(t)
		switch {
		case strings.HasPrefix(line, fmt.Sprintf("pub %d r ", id)):
			acked++
		case strings.HasPrefix(line, fmt.Sprintf("err %d unavailable ", id)):
			if acked > 0 {
				t.Fatalf("refused after the stream answered again: %q", line)
			}
			refusedN++
			time.Sleep(10 * time.Millisecond)
		default:
			t.Fatalf("pub %d: %q", id, line)
		}
	}
	if got := stored() - before; got != uint64(acked) {
		t.Fatalf("%d refused and %d acknowledged, but the stream got %d: a refusal reached it", refusedN, acked, got)
	}
	if st := n.stream.ClusterStatus().(cluster.StreamStatus); st.Unknown != 1 || st.Pending != 0 || !st.Answering {
		t.Fatalf("status %+v: want 1 unknown, none pending, answering", st)
	}
	// The retry of the unknown one, with its msgid: the first message's
	// place, stored once.
	c.send(t, "pub 99 r lost-1\nlost")
	if line := c.read(t); !strings.HasPrefix(line, "pub 99 r ") || !strings.HasSuffix(line, " 1") {
		t.Fatalf("the retry of the unknown pub: %q, want offset 1", line)
	}
	if got := stored() - before; got != uint64(acked) {
		t.Fatalf("the retry was stored again")
	}
}

// A retry with the same msgid, on any instance, is acknowledged with the
// first message's place and delivered once; POST /publish's
// Idempotency-Key does the same and says "duplicate".
func TestJetStreamMsgIDDeduplicates(t *testing.T) {
	ns := runJetStream(t, 0, "")
	url := natsURL(ns)
	a, b := startJSNode(t, url, jetstream.MemoryStorage), startJSNode(t, url, jetstream.MemoryStorage)
	sub := dialV1(t, b.addr(), "r")
	epoch, _ := sub.subscribed(t, "r")
	pa, pb := dialV1(t, a.addr(), ""), dialV1(t, b.addr(), "")
	pa.send(t, "pub 1 r k-1\nonce")
	first := pa.read(t)
	pb.send(t, "pub 7 r k-1\nonce") // the retry, on another instance
	second := pb.read(t)
	if !strings.HasPrefix(first, "pub 1 r "+epoch+" ") || strings.TrimPrefix(first, "pub 1") != strings.TrimPrefix(second, "pub 7") {
		t.Fatalf("acknowledgements %q and %q: want the same place", first, second)
	}
	sub.msg(t, "r", "once")
	pa.send(t, "pub 2 r k-2\nnext")
	pa.read(t)
	sub.msg(t, "r", "next") // not "once" again
	// The admin door: the key in a header.
	for i, want := range []string{"", `"duplicate":true`} {
		rec := adminPost(t, a, "/publish/r", "by admin", "Idempotency-Key", "admin-1")
		if rec.Code != 202 || (want != "" && !strings.Contains(rec.Body.String(), want)) {
			t.Fatalf("admin publish %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	sub.msg(t, "r", "by admin")
	pa.send(t, "pub 3 r k-3\nlast")
	pa.read(t)
	sub.msg(t, "r", "last") // nothing else came between
}
