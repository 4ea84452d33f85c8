package monitor

import (
	"sync/atomic"
)

const (
	// ReservoirSize is the number of raw latencies kept per version per bucket for the
	// Mann-Whitney test.
	ReservoirSize = 256
	// maxCodes distinct status codes are counted exactly per bucket; more go to their class only.
	maxCodes  = 16
	codeShift = 48
	countMask = 1<<codeShift - 1
)

// slot is one time bucket of one version. Every field is an atomic so that Observe takes no
// lock; only reusing a slot for a new bucket takes the version's mutex.
type slot struct {
	idx          atomic.Int64 // bucket number (Unix time / bucket width); -1 while being reset
	count        atomic.Uint64
	failures     atomic.Uint64 // status >= 500
	clientErrors atomic.Uint64 // 400 <= status < 500
	sumNs        atomic.Uint64
	minNs        atomic.Int64 // latency+1; 0 = none yet
	maxNs        atomic.Int64
	classes      [6]atomic.Uint64        // by status/100; index 0 holds codes outside 100..599
	codes        [maxCodes]atomic.Uint64 // code<<48 | count; 0 = free
	hist         [histBuckets]atomic.Uint32
	res          [ReservoirSize]atomic.Int64 // latency+1; 0 = empty
}

func (s *slot) add(status int, ns int64) {
	n := s.count.Add(1)
	class := status / 100
	if status < 100 || status > 599 {
		class = 0
	}
	s.classes[class].Add(1)
	switch class {
	case 5:
		s.failures.Add(1)
	case 4:
		s.clientErrors.Add(1)
	}
	if class != 0 {
		s.addCode(uint64(status))
	}
	if ns < 0 {
		ns = 0
	}
	s.sumNs.Add(uint64(ns))
	s.hist[histIndex(ns)].Add(1)
	for cur := s.minNs.Load(); cur == 0 || ns+1 < cur; cur = s.minNs.Load() {
		if s.minNs.CompareAndSwap(cur, ns+1) {
			break
		}
	}
	for cur := s.maxNs.Load(); ns > cur; cur = s.maxNs.Load() {
		if s.maxNs.CompareAndSwap(cur, ns) {
			break
		}
	}
	// Algorithm R with a PRNG seeded by the request's ordinal in the bucket: a uniform sample,
	// reproducible for a given arrival order, and no shared RNG state to contend on.
	if n <= ReservoirSize {
		s.res[n-1].Store(ns + 1)
	} else if j := splitmix64(n^uint64(s.idx.Load())*0x9e3779b97f4a7c15) % n; j < ReservoirSize {
		s.res[j].Store(ns + 1)
	}
}

func (s *slot) addCode(code uint64) {
	for i := range s.codes {
		c := &s.codes[i]
		v := c.Load()
		if v == 0 && c.CompareAndSwap(0, code<<codeShift|1) {
			return
		}
		if v = c.Load(); v>>codeShift == code {
			c.Add(1)
			return
		}
	}
}

// reset empties the slot for bucket idx. The caller holds the version's mutex.
func (s *slot) reset(idx int64) {
	s.idx.Store(-1)
	s.count.Store(0)
	s.failures.Store(0)
	s.clientErrors.Store(0)
	s.sumNs.Store(0)
	s.minNs.Store(0)
	s.maxNs.Store(0)
	for i := range s.classes {
		s.classes[i].Store(0)
	}
	for i := range s.codes {
		s.codes[i].Store(0)
	}
	for i := range s.hist {
		s.hist[i].Store(0)
	}
	for i := range s.res {
		s.res[i].Store(0)
	}
	s.idx.Store(idx)
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// bucketData is a plain copy of a slot (or a sum of slots), read by queries and snapshots.
type bucketData struct {
	Idx          int64               `json:"idx"`
	Count        uint64              `json:"count"`
	Failures     uint64              `json:"failures"`
	ClientErrors uint64              `json:"clientErrors"`
	SumNs        uint64              `json:"sumNs"`
	MinNs        int64               `json:"minNs"` // valid when Count > 0
	MaxNs        int64               `json:"maxNs"`
	Classes      [6]uint64           `json:"classes"`
	Codes        map[int]uint64      `json:"codes,omitempty"`
	Hist         [histBuckets]uint64 `json:"hist"`
	Samples      []int64             `json:"samples,omitempty"` // nanoseconds
}

// read copies the slot if it still holds bucket idx, and reports whether it did.
func (s *slot) read(idx int64) (bucketData, bool) {
	if s.idx.Load() != idx {
		return bucketData{}, false
	}
	d := bucketData{
		Idx:          idx,
		Count:        s.count.Load(),
		Failures:     s.failures.Load(),
		ClientErrors: s.clientErrors.Load(),
		SumNs:        s.sumNs.Load(),
		MinNs:        s.minNs.Load() - 1,
		MaxNs:        s.maxNs.Load(),
	}
	for i := range s.classes {
		d.Classes[i] = s.classes[i].Load()
	}
	for i := range s.codes {
		if v := s.codes[i].Load(); v != 0 {
			if d.Codes == nil {
				d.Codes = map[int]uint64{}
			}
			d.Codes[int(v>>codeShift)] += v & countMask
		}
	}
	for i := range s.hist {
		d.Hist[i] = uint64(s.hist[i].Load())
	}
	for i := range s.res {
		if v := s.res[i].Load(); v != 0 {
			d.Samples = append(d.Samples, v-1)
		}
	}
	// A slot reused while we read it held the oldest bucket of the window: leave it out.
	return d, s.idx.Load() == idx
}

// write loads d into the slot. The caller holds the version's mutex.
func (s *slot) write(d bucketData) {
	s.reset(-1)
	s.count.Store(d.Count)
	s.failures.Store(d.Failures)
	s.clientErrors.Store(d.ClientErrors)
	s.sumNs.Store(d.SumNs)
	if d.Count > 0 {
		s.minNs.Store(d.MinNs + 1)
		s.maxNs.Store(d.MaxNs)
	}
	for i := range s.classes {
		s.classes[i].Store(d.Classes[i])
	}
	i := 0
	for code, n := range d.Codes {
		if i < maxCodes && code >= 100 && code <= 599 {
			s.codes[i].Store(uint64(code)<<codeShift | n&countMask)
			i++
		}
	}
	for i := range s.hist {
		s.hist[i].Store(uint32(d.Hist[i]))
	}
	for i, v := range d.Samples {
		if i < ReservoirSize {
			s.res[i].Store(v + 1)
		}
	}
	s.idx.Store(d.Idx)
}
