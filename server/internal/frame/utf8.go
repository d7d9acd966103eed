package frame

import "encoding/binary"

// UTF8 validates UTF-8 incrementally: a code point may be split across
// fragments and TCP reads. The zero value is ready; it holds three bytes
// of state and does not allocate. It accepts exactly what
// unicode/utf8.Valid accepts (no surrogates, no overlong forms, nothing
// above U+10FFFF) and fails as soon as a byte cannot continue valid
// text, so a connection can be failed fast (RFC 6455 §8.1).
type UTF8 struct {
	need   uint8 // continuation bytes still expected
	lo, hi byte  // allowed range of the next continuation byte
}

// Write feeds p and reports whether the text so far is valid or a valid
// prefix. After it returns false the state is unspecified; Reset it.
func (v *UTF8) Write(p []byte) bool {
	need, lo, hi := v.need, v.lo, v.hi
	i := 0
	for i < len(p) {
		if need == 0 {
			// ASCII fast path, eight bytes at a time.
			for i+8 <= len(p) && binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 == 0 {
				i += 8
			}
			if i == len(p) {
				break
			}
			b := p[i]
			i++
			switch {
			case b < 0x80:
			case b < 0xC2: // continuation byte or overlong 2-byte lead
				return false
			case b < 0xE0:
				need, lo, hi = 1, 0x80, 0xBF
			case b == 0xE0: // no overlong 3-byte forms
				need, lo, hi = 2, 0xA0, 0xBF
			case b == 0xED: // no surrogates U+D800..U+DFFF
				need, lo, hi = 2, 0x80, 0x9F
			case b < 0xF0:
				need, lo, hi = 2, 0x80, 0xBF
			case b == 0xF0: // no overlong 4-byte forms
				need, lo, hi = 3, 0x90, 0xBF
			case b < 0xF4:
				need, lo, hi = 3, 0x80, 0xBF
			case b == 0xF4: // nothing above U+10FFFF
				need, lo, hi = 3, 0x80, 0x8F
			default:
				return false
			}
			continue
		}
		b := p[i]
		i++
		if b < lo || b > hi {
			return false
		}
		need--
		lo, hi = 0x80, 0xBF
	}
	v.need, v.lo, v.hi = need, lo, hi
	return true
}

// Complete reports whether the text fed so far ends on a code point
// boundary: a message is valid when every Write returned true and
// Complete is true at its end.
func (v *UTF8) Complete() bool { return v.need == 0 }

// Reset makes v ready for a new message.
func (v *UTF8) Reset() { *v = UTF8{} }
