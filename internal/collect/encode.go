package collect

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Room kept for the truncation marks: `,"inputTruncated":true,"inputBytes":N` and the output's.
const markReserve = 2 * len(`,"outputTruncated":true,"outputBytes":18446744073709551615`)

// encode appends r as one JSON line. A body that is valid JSON is embedded as JSON (compacted,
// so the line holds no newline); any other body is a JSON string. When the line would pass
// MaxLineBytes, bodies are cut into JSON strings and marked. It reports whether it cut.
func (c *Collector) encode(dst []byte, r *record) ([]byte, bool) {
	dst = append(dst, `{"time":"`...)
	dst = r.t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","service":"`...)
	dst = append(dst, r.service...) // names are [a-z0-9-]: nothing to escape
	dst = append(dst, `","version":"`...)
	dst = append(dst, r.version...)
	dst = append(dst, `","status":`...)
	dst = strconv.AppendInt(dst, int64(r.status), 10)
	dst = append(dst, `,"latencyMs":`...)
	dst = strconv.AppendFloat(dst, float64(r.latency)/float64(time.Millisecond), 'f', 3, 64)

	inFull, outFull := r.inLen == len(r.in), r.outLen == len(r.out)
	in, out := body(c.inBuf[:0], r.in, inFull), body(c.outBuf[:0], r.out, outFull)
	c.inBuf, c.outBuf = in, out
	const fixed = len(`,"input":,"output":}` + "\n")
	avail := c.opts.MaxLineBytes - len(dst) - fixed
	if !inFull || !outFull || len(in)+len(out) > avail {
		// Cut: a body that fits in half the room keeps it whole, the other gets the rest.
		avail = max(avail-markReserve, 4)
		inMax, outMax := avail/2, avail-avail/2
		if inFull && len(in) <= inMax {
			outMax = avail - len(in)
		} else if outFull && len(out) <= outMax {
			inMax = avail - len(out)
		}
		in, inFull = cut(in, r.in, inFull, inMax)
		out, outFull = cut(out, r.out, outFull, outMax)
	}
	dst = append(dst, `,"input":`...)
	dst = append(dst, in...)
	dst = append(dst, `,"output":`...)
	dst = append(dst, out...)
	if !inFull {
		dst = append(dst, `,"inputTruncated":true,"inputBytes":`...)
		dst = strconv.AppendInt(dst, int64(r.inLen), 10)
	}
	if !outFull {
		dst = append(dst, `,"outputTruncated":true,"outputBytes":`...)
		dst = strconv.AppendInt(dst, int64(r.outLen), 10)
	}
	dst = append(dst, "}\n"...)
	return dst, !inFull || !outFull
}

// body encodes a whole body as compact JSON when it is valid JSON, else as a JSON string.
func body(dst, b []byte, whole bool) []byte {
	if whole && json.Valid(b) {
		buf := bytes.NewBuffer(dst)
		if json.Compact(buf, b) == nil {
			return buf.Bytes()
		}
	}
	out, _ := appendString(dst, b, -1)
	return out
}

// cut returns enc when the body is whole and enc fits in limit bytes; otherwise the body as a
// JSON string of at most limit bytes, and whether nothing was cut.
func cut(enc, b []byte, whole bool, limit int) ([]byte, bool) {
	if whole && len(enc) <= limit {
		return enc, true
	}
	out, all := appendString(nil, b, limit)
	return out, whole && all
}

// appendString appends b as a JSON string of at most limit bytes (no limit when negative),
// cutting at a character boundary, and reports whether all of b fit. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func appendString(dst, b []byte, limit int) ([]byte, bool) {
	start := len(dst)
	dst = append(dst, '"')
	var esc [6]byte
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		var piece []byte
		switch {
		case r == '"' || r == '\\':
			piece = append(esc[:0], '\\', byte(r))
		case r == '\n':
			piece = append(esc[:0], '\\', 'n')
		case r == '\r':
			piece = append(esc[:0], '\\', 'r')
		case r == '\t':
			piece = append(esc[:0], '\\', 't')
		case r < 0x20 || r == 0x2028 || r == 0x2029 || r == utf8.RuneError && size == 1:
			if r == utf8.RuneError {
				r = 0xfffd
			}
			const hex = "0123456789abcdef"
			piece = append(esc[:0], '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			piece = b[i : i+size]
		}
		if limit >= 0 && len(dst)-start+len(piece)+1 > limit {
			return append(dst, '"'), false
		}
		dst = append(dst, piece...)
		i += size
	}
	return append(dst, '"'), true
}
