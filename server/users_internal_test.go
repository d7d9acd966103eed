package server

import (
	"testing"
)

func TestUserActionRoundTrip(t *testing.T) {
	for _, act := range []userAction{
		{op: actDisconnect, user: "ana", code: 4000, reason: "bye"},
		{op: actSubscribe, user: "ana", room: "feed.eu"},
		{op: actUnsubscribe, user: "bo", room: "x"},
	} {
		from, got, err := parseUserAction(appendUserActionFrom(nil, 7, act))
		if err != nil || from != 7 || got != act {
			t.Fatalf("%+v: %d %+v %v", act, from, got, err)
		}
	}
	for name, act := range map[string]userAction{
		"no user":        {op: actDisconnect, code: 4000},
		"bad code":       {op: actDisconnect, user: "a", code: 1006},
		"bad room":       {op: actSubscribe, user: "a", room: "a b"},
		"unknown op":     {op: 'x', user: "a", room: "r"},
		"reason too big": {op: actDisconnect, user: "a", code: 4000, reason: string(make([]byte, 124))},
	} {
		if _, _, err := parseUserAction(appendUserActionFrom(nil, 1, act)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	good := appendUserActionFrom(nil, 1, userAction{op: actDisconnect, user: "a", code: 4000})
	for i := range good {
		if _, _, err := parseUserAction(good[:i]); err == nil {
			t.Errorf("cut at %d: accepted", i)
		}
	}
	if _, _, err := parseUserAction(append(good, 0)); err == nil {
		t.Error("a trailing byte: accepted")
	}
}

func FuzzParseUserAction(f *testing.F) {
	f.Add(appendUserActionFrom(nil, 1, userAction{op: actDisconnect, user: "ana", code: 4000, reason: "bye"}))
	f.Add(appendUserActionFrom(nil, 2, userAction{op: actSubscribe, user: "ana", room: "r"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		from, act, err := parseUserAction(b)
		if err != nil {
			return
		}
		from2, act2, err := parseUserAction(appendUserActionFrom(nil, from, act))
		if err != nil || from2 != from || act2 != act {
			t.Fatalf("%q: %+v re-encoded as %+v (%v)", b, act, act2, err)
		}
	})
}

func TestEnvelope(t *testing.T) {
	env := appendEnvelope(nil, []byte("one"), nil, []byte("three"))
	var parts []string
	if err := openEnvelope(env, func(p []byte) { parts = append(parts, string(p)) }); err != nil || len(parts) != 3 || parts[0] != "one" || parts[1] != "" || parts[2] != "three" {
		t.Fatalf("%q %v", parts, err)
	}
	for i := 1; i < len(env); i++ {
		if i == 2 || i == 6 || i == 7 {
			continue // cut between parts: a shorter, valid envelope
		}
		if err := openEnvelope(env[:i], func([]byte) {}); err == nil {
			t.Errorf("cut at %d: accepted", i)
		}
	}
}

func FuzzOpenEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, []byte("a"), []byte("bc")))
	f.Fuzz(func(t *testing.T, b []byte) {
		var parts [][]byte
		if openEnvelope(b, func(p []byte) { parts = append(parts, p) }) != nil {
			return
		}
		again := appendEnvelope(nil, parts...)
		var parts2 [][]byte
		if err := openEnvelope(again, func(p []byte) { parts2 = append(parts2, p) }); err != nil || len(parts2) != len(parts) {
			t.Fatalf("re-encoded: %v", err)
		}
	})
}
