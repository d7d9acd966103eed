package hook

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A full queue refuses at once; a status other than 200 is an error; the
// answers and failures are counted and timed.
func TestClient(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-release
		}
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
			return
		}
		_, _ = w.Write([]byte(`{"allow":true}`))
	}))
	defer srv.Close()

	ok := New("t", srv.URL+"/ok", time.Minute, 1)
	defer ok.Close()
	got := make(chan Result, 1)
	if err := ok.Call([]byte(`{}`), func(r Result) { got <- r }); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Err != nil || string(r.Body) != `{"allow":true}`+"" {
		t.Fatalf("ok: %+v", r)
	}
	fail := New("t", srv.URL+"/fail", time.Minute, 1)
	defer fail.Close()
	if err := fail.Call(nil, func(r Result) { got <- r }); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Err != ErrStatus || fail.Failed.Load() != 1 {
		t.Fatalf("fail: %+v", r)
	}

	hang := New("t", srv.URL+"/hang", time.Minute, 1)
	defer hang.Close()
	defer close(release) // before hang.Close and srv.Close wait for the call
	// One worker: at most one call in flight and queuePerWorker waiting;
	// past that a call is refused at once.
	accepted := 0
	for range 1 + queuePerWorker + 1 {
		switch err := hang.Call(nil, func(Result) {}); err {
		case nil:
			accepted++
		case ErrBusy:
		default:
			t.Fatal(err)
		}
	}
	if accepted > 1+queuePerWorker || hang.Busy.Load() != int64(1+queuePerWorker+1-accepted) || hang.Busy.Load() < 1 {
		t.Fatalf("accepted %d, busy %d", accepted, hang.Busy.Load())
	}
	_, _, count := ok.Latency()
	if count != 1 {
		t.Fatalf("latency count %d", count)
	}
}

func TestCache(t *testing.T) {
	c := Cache[int]{Max: 2}
	now := time.Now()
	c.Put("a", 1, now.Add(time.Minute))
	if v, ok := c.Get("a", now); !ok || v != 1 {
		t.Fatal("a missing")
	}
	if _, ok := c.Get("a", now.Add(time.Minute)); ok {
		t.Fatal("a after its TTL")
	}
	c.Put("b", 2, now.Add(-time.Second)) // expired already
	c.Put("c", 3, now.Add(time.Minute))  // full: the expired one goes
	if _, ok := c.Get("a", now); !ok {
		t.Fatal("a evicted while an expired entry was there")
	}
	if len(c.m) > 2 {
		t.Fatalf("%d entries, max 2", len(c.m))
	}
}
