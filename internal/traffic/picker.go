package traffic

import (
	"math"
	"sync"
	"sync/atomic"
)

// Picker chooses a version per request by smooth weighted round-robin (as nginx does):
// deterministic, and within any window the counts stay within one pick of the exact
// shares, with picks of one version spread out rather than bunched. Safe for concurrent use.
type Picker struct {
	mu      sync.Mutex
	names   []string
	weights []int64
	current []int64
	total   int64
}

// NewPicker builds a picker over the versions' effective shares; versions whose share is
// zero are never picked. Shares are weighted in hundredths of a percent.
func NewPicker(versions []Version) *Picker {
	shares := Effective(versions)
	p := &Picker{}
	for _, v := range versions {
		w := int64(math.Round(shares[v.Name] * 100))
		if w <= 0 {
			continue
		}
		p.names = append(p.names, v.Name)
		p.weights = append(p.weights, w)
		p.total += w
	}
	p.current = make([]int64, len(p.names))
	return p
}

// Pick returns the next version, or false when no version has a share.
func (p *Picker) Pick() (string, bool) {
	if len(p.names) == 0 {
		return "", false
	}
	p.mu.Lock()
	best := 0
	for i, w := range p.weights {
		p.current[i] += w
		if p.current[i] > p.current[best] {
			best = i
		}
	}
	p.current[best] -= p.total
	p.mu.Unlock()
	return p.names[best], true
}

// Mirror decides which versions get a copy of a request: each version with a mirror
// percentile P receives exactly ⌊n·P/100⌋ of the first n requests, evenly spaced,
// without randomness. Safe for concurrent use and lock-free.
type Mirror struct {
	targets []mirrorTarget
}

type mirrorTarget struct {
	name string
	ppm  uint64 // parts per million of requests to copy
	n    atomic.Uint64
}

// NewMirror builds a mirror decider over the versions' mirror percentiles.
func NewMirror(versions []Version) *Mirror {
	m := &Mirror{}
	for _, v := range versions {
		if ppm := uint64(math.Round(v.MirrorPercentile * 1e4)); ppm > 0 {
			m.targets = append(m.targets, mirrorTarget{name: v.Name, ppm: min(ppm, 1e6)})
		}
	}
	return m
}

// Targets appends to dst the versions that should receive a copy of this request.
func (m *Mirror) Targets(dst []string) []string {
	for i := range m.targets {
		t := &m.targets[i]
		n := t.n.Add(1)
		// Copy when the running quota ⌊n·ppm/1e6⌋ steps up: exact, evenly spread.
		// n·ppm overflows only after ~1.8e13 requests.
		if n*t.ppm/1e6 != (n-1)*t.ppm/1e6 {
			dst = append(dst, t.name)
		}
	}
	return dst
}
