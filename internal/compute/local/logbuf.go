package local

import (
	"bytes"
	"os"
	"strings"
	"sync"
)

// logBuffer keeps a replica's output: the last maxLines lines in memory (for get-logs) and every
// line appended to a file. Lines before the replica first became ready are its init log.
type logBuffer struct {
	mu      sync.Mutex
	lines   []string
	dropped int // lines that fell off the front
	initEnd int // absolute line index where the replica became ready; -1 until then
	partial bytes.Buffer
	file    *os.File
	onLine  func(string)
}

const maxLines = 5000

func newLogBuffer(path string, onLine func(string)) *logBuffer {
	b := &logBuffer{initEnd: -1, onLine: onLine}
	if path != "" {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			b.file = f
		}
	}
	return b
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.file != nil {
		b.file.Write(p)
	}
	b.partial.Write(p)
	var complete []string
	for {
		line, err := b.partial.ReadString('\n')
		if err != nil {
			// Put back the unfinished line.
			rest := line
			b.partial.Reset()
			b.partial.WriteString(rest)
			break
		}
		complete = append(complete, strings.TrimRight(line, "\r\n"))
	}
	for _, l := range complete {
		b.lines = append(b.lines, l)
	}
	if over := len(b.lines) - maxLines; over > 0 {
		b.lines = append([]string(nil), b.lines[over:]...)
		b.dropped += over
	}
	onLine := b.onLine
	b.mu.Unlock()
	if onLine != nil {
		for _, l := range complete {
			onLine(l)
		}
	}
	return len(p), nil
}

// markReady records where the init log ends.
func (b *logBuffer) markReady() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.initEnd < 0 {
		b.initEnd = b.dropped + len(b.lines)
	}
}

// text returns the kept lines: all, or only the init part, at most tail of them (0 = no limit).
func (b *logBuffer) text(initOnly bool, tail int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := b.lines
	if initOnly && b.initEnd >= 0 {
		end := b.initEnd - b.dropped
		if end < 0 {
			end = 0
		}
		lines = lines[:end]
	}
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func (b *logBuffer) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		b.file.Close()
		b.file = nil
	}
}
