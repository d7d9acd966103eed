package command

import (
	"bytes"
	"strconv"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		err  *Error
	}{
		{in: "sub 1 news", want: Command{Op: OpSub, ID: 1, Room: []byte("news")}},
		{in: "sub 1 news\n", want: Command{Op: OpSub, ID: 1, Room: []byte("news")}},
		{in: "sub 4294967295 a.b_c-D 00000000000000ff 18446744073709551615",
			want: Command{Op: OpSub, ID: 1<<32 - 1, Room: []byte("a.b_c-D"), Resume: true, Epoch: 255, Offset: 1<<64 - 1}},
		{in: "sub 7 news 0123456789abcdef 0", want: Command{Op: OpSub, ID: 7, Room: []byte("news"), Resume: true, Epoch: 0x0123456789abcdef}},
		{in: "unsub 2 news", want: Command{Op: OpUnsub, ID: 2, Room: []byte("news")}},
		{in: "pub 0 news\nhello\nworld", want: Command{Op: OpPub, Room: []byte("news"), Body: []byte("hello\nworld")}},
		{in: "pub 3 news\n", want: Command{Op: OpPub, ID: 3, Room: []byte("news"), Body: []byte{}}},

		{in: "", err: ErrEmpty},
		{in: "\nsub 1 a", err: ErrEmpty},
		{in: "SUB 1 a", err: ErrUnknownOp},
		{in: "subscribe 1 a", err: ErrUnknownOp},
		{in: "sub", err: ErrFields},
		{in: "sub 1", want: Command{ID: 1, Op: OpSub}, err: ErrFields},
		{in: "sub 01 a", err: ErrID},
		{in: "sub -1 a", err: ErrID},
		{in: "sub 4294967296 a", err: ErrID},
		{in: "sub 99999999999999999999999 a", err: ErrID},
		{in: "sub  1 a", err: ErrID},
		{in: "sub 1 a ", want: Command{ID: 1, Op: OpSub, Room: []byte("a")}, err: ErrFields},
		{in: "sub 1 ..", want: Command{ID: 1, Op: OpSub}, err: ErrRoom},
		{in: "sub 1 a/b", want: Command{ID: 1, Op: OpSub}, err: ErrRoom},
		{in: "sub 1 " + string(bytes.Repeat([]byte("r"), 65)), want: Command{ID: 1, Op: OpSub}, err: ErrRoom},
		{in: "sub 1 a 0123456789ABCDEF 1", want: Command{ID: 1, Op: OpSub, Room: []byte("a")}, err: ErrEpoch},
		{in: "sub 1 a 0123 1", want: Command{ID: 1, Op: OpSub, Room: []byte("a")}, err: ErrEpoch},
		{in: "sub 1 a 0123456789abcdef 18446744073709551616", want: Command{ID: 1, Op: OpSub, Room: []byte("a"), Epoch: 0x0123456789abcdef}, err: ErrOffset},
		{in: "sub 1 a 0123456789abcdef", want: Command{ID: 1, Op: OpSub, Room: []byte("a")}, err: ErrFields},
		{in: "sub 1 a\nbody", want: Command{ID: 1, Op: OpSub, Room: []byte("a")}, err: ErrTrailing},
		{in: "unsub 1 a 0123456789abcdef 1", want: Command{ID: 1, Op: OpUnsub, Room: []byte("a")}, err: ErrFields},
		{in: "pub 1 a", want: Command{ID: 1, Op: OpPub, Room: []byte("a")}, err: ErrNoBody},
		{in: "pub 1 a b\nx", want: Command{ID: 1, Op: OpPub, Room: []byte("a"), Body: []byte("x"), MsgID: []byte("b")}},
		{in: "pub 1 a b c\nx", want: Command{ID: 1, Op: OpPub, Room: []byte("a")}, err: ErrFields},
		{in: "pub 1 a b/c\nx", want: Command{ID: 1, Op: OpPub, Room: []byte("a")}, err: ErrMsgID},
		{in: "pub 1 a " + string(bytes.Repeat([]byte("k"), 65)) + "\nx", want: Command{ID: 1, Op: OpPub, Room: []byte("a")}, err: ErrMsgID},
		{in: "pub 1 a " + string(bytes.Repeat([]byte("k"), 64)) + "\nx", want: Command{ID: 1, Op: OpPub, Room: []byte("a"), Body: []byte("x"), MsgID: bytes.Repeat([]byte("k"), 64)}},
		{in: "sub 1 a 1 2 3 4 5 6", want: Command{}, err: ErrFields},
		{in: "occupancy 5 news", want: Command{Op: OpOccupancy, ID: 5, Room: []byte("news")}},
		{in: "occupancy 5 news x", want: Command{ID: 5, Op: OpOccupancy, Room: []byte("news")}, err: ErrFields},
		{in: "occupancy 5 news\nx", want: Command{ID: 5, Op: OpOccupancy, Room: []byte("news")}, err: ErrTrailing},
		{in: "watch 6 news occupancy", want: Command{Op: OpWatch, ID: 6, Room: []byte("news"), What: WhatOccupancy}},
		{in: "watch 6 news occupancy\n", want: Command{ID: 6, Op: OpWatch, Room: []byte("news"), What: WhatOccupancy}},
		{in: "watch 6 news", want: Command{ID: 6, Op: OpWatch, Room: []byte("news")}, err: ErrFields},
		{in: "watch 6 news presence", want: Command{ID: 6, Op: OpWatch, Room: []byte("news"), What: WhatPresence}},
		{in: "watch 6 news everything", want: Command{ID: 6, Op: OpWatch, Room: []byte("news")}, err: ErrWhat},
		{in: "presence 8 news", want: Command{Op: OpPresence, ID: 8, Room: []byte("news")}},
		{in: "presence 8 news x", want: Command{ID: 8, Op: OpPresence, Room: []byte("news")}, err: ErrFields},
		{in: "unwatch 7 news occupancy", want: Command{Op: OpUnwatch, ID: 7, Room: []byte("news"), What: WhatOccupancy}},
		{in: "unwatch 7 news occupancy\nx", want: Command{ID: 7, Op: OpUnwatch, Room: []byte("news")}, err: ErrTrailing},
		{in: "sub 1 " + string(bytes.Repeat([]byte("r"), 300)), err: ErrLongLine},
	} {
		got, err := Parse([]byte(tc.in))
		if err != tc.err {
			t.Errorf("%q: error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if got.Op != tc.want.Op && tc.err == nil || got.ID != tc.want.ID || !bytes.Equal(got.Room, tc.want.Room) ||
			got.Resume != tc.want.Resume || got.Epoch != tc.want.Epoch || got.Offset != tc.want.Offset || !bytes.Equal(got.Body, tc.want.Body) ||
			!bytes.Equal(got.MsgID, tc.want.MsgID) || got.What != tc.want.What && tc.err == nil {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// Replies read back as what they say.
func TestReplies(t *testing.T) {
	const room = "news"
	for _, tc := range []struct{ got, want string }{
		{string(AppendSubscribed(nil, 9, room, 0xab, 42, StatusRecovered)), "sub 9 news 00000000000000ab 42 recovered"},
		{string(AppendUnsubscribed(nil, 9, []byte(room))), "unsub 9 news"},
		{string(AppendPublished(nil, 1<<32-1, room, 1<<64-1, 1<<64-1)), "pub 4294967295 news ffffffffffffffff 18446744073709551615"},
		{string(AppendError(nil, 0, ErrUnknownOp)), "err 0 unknown_op unknown op (sub, unsub, pub, occupancy, presence, watch, unwatch)"},
		{string(AppendOccupancy(nil, 3, []byte(room), 1_000_000)), "occupancy 3 news 1000000"},
		{string(AppendWatching(nil, 4, []byte(room), 0)), "watch 4 news occupancy 0"},
		{string(AppendUnwatched(nil, 5, []byte(room), WhatOccupancy)), "unwatch 5 news occupancy"},
		{string(AppendUnwatched(nil, 6, []byte(room), WhatPresence)), "unwatch 6 news presence"},
		{string(AppendMessageHeader(nil, room, 1, 7)), "msg news 0000000000000001 7\n"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, off := range []uint64{0, 9, 10, 99, 1 << 40, 1<<64 - 1} {
		if n, want := MessageHeaderLen(room, off), len(AppendMessageHeader(nil, room, 5, off)); n != want {
			t.Errorf("MessageHeaderLen(%d) = %d, want %d", off, n, want)
		}
	}
	// What a resume sends back is what a "sub" reply and a "msg" line say.
	c, err := Parse(AppendSubscribed([]byte(""), 3, room, 0xfeed, 12, StatusLive)[:len("sub 3 news 000000000000feed 12")])
	if err != nil || c.Epoch != 0xfeed || c.Offset != 12 {
		t.Fatalf("a sub reply's epoch and offset do not parse as a resume: %+v %v", c, err)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	in := []byte("sub 12 prices.eu 0123456789abcdef 123456\n")
	pub := []byte("pub 13 prices.eu\n{\"p\":1}")
	if n := testing.AllocsPerRun(100, func() {
		_, _ = Parse(in)
		_, _ = Parse(pub)
	}); n != 0 {
		t.Fatalf("%v allocations per parse", n)
	}
}

// FuzzParse: Parse never panics, a success re-encodes to a line that
// parses the same, and every error is one of the documented ones.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"sub 1 a", "sub 1 a 0123456789abcdef 5", "unsub 2 b", "pub 0 c\nx", "pub 1 c\n", "pub 2 c k-1\nx", "sub 01 a", "x", "", "sub 1 a\n\n", "occupancy 3 r", "watch 4 r occupancy", "unwatch 5 r occupancy\n", "presence 6 r", "watch 7 r presence"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if err.Code == "" || err.Reason == "" {
				t.Fatalf("undocumented error %+v", err)
			}
			return
		}
		var line []byte
		switch c.Op {
		case OpSub:
			line = append([]byte("sub "), strconv.FormatUint(uint64(c.ID), 10)...)
			line = append(append(line, ' '), c.Room...)
			if c.Resume {
				line = AppendEpoch(append(line, ' '), c.Epoch)
				line = strconv.AppendUint(append(line, ' '), c.Offset, 10)
			}
		case OpUnsub:
			line = AppendUnsubscribed(nil, c.ID, c.Room)
		case OpPub:
			line = append([]byte("pub "), strconv.FormatUint(uint64(c.ID), 10)...)
			line = append(append(line, ' '), c.Room...)
			if c.MsgID != nil {
				line = append(append(line, ' '), c.MsgID...)
			}
			line = append(append(line, '\n'), c.Body...)
		case OpOccupancy:
			line = append(append([]byte("occupancy "), strconv.FormatUint(uint64(c.ID), 10)...), ' ')
			line = append(line, c.Room...)
		case OpPresence:
			line = append(append([]byte("presence "), strconv.FormatUint(uint64(c.ID), 10)...), ' ')
			line = append(line, c.Room...)
		case OpWatch:
			line = append(append([]byte("watch "), strconv.FormatUint(uint64(c.ID), 10)...), ' ')
			line = append(append(append(line, c.Room...), ' '), c.What...)
		case OpUnwatch:
			line = AppendUnwatched(nil, c.ID, c.Room, c.What)
		default:
			t.Fatalf("op %d", c.Op)
		}
		d, err := Parse(line)
		if err != nil || d.Op != c.Op || d.ID != c.ID || d.What != c.What || !bytes.Equal(d.Room, c.Room) || d.Resume != c.Resume ||
			d.Epoch != c.Epoch || d.Offset != c.Offset || !bytes.Equal(d.Body, c.Body) || !bytes.Equal(d.MsgID, c.MsgID) {
			t.Fatalf("%q parsed as %+v; re-encoded %q parsed as %+v, %v", b, c, line, d, err)
		}
	})
}
