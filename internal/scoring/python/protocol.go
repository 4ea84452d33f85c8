package python

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frame kinds; they must match mlship_worker.py.
const (
	kindRun      byte = 'R'
	kindHTTP     byte = 'H'
	kindReady    byte = 'I'
	kindInitErr  byte = 'E'
	kindJSON     byte = 'J'
	kindRaw      byte = 'A'
	kindRaised   byte = 'X'
	kindBadInput byte = 'B'
	kindExpired  byte = 'T' // the deadline had passed when a worker took the request: not run

	// pollBit turns kindRun/kindHTTP into lower case: poll for the next request after answering.
	pollBit byte = 0x20
	// fdBit: the payload is in the memfd passed with the message.
	fdBit byte = 0x80
)

// answerHead is what every answer's payload starts with: the request id and the nanoseconds run()
// took (0 if it did not run), 8 bytes each, big-endian.
const answerHead = 16

// maxFrame bounds what a worker may send back, so a broken worker cannot make the replica allocate without limit.
const maxFrame = 1 << 30

// appendFrame appends a frame header (4-byte big-endian length, kind) and payload to dst.
func appendFrame(dst []byte, kind byte, payload ...[]byte) []byte {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, kind)
	for _, p := range payload {
		dst = append(dst, p...)
	}
	return dst
}

// readFrame reads one frame and nothing after it; the payload is freshly allocated because results
// outlive the call.
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("worker sent a %d-byte frame, over the %d limit", n, maxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[4], payload, nil
}
