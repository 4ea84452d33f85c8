// Package monitor keeps per service/version request time series (counts by status, failures, latency percentiles) and compares an endpoint's control version with its treatments.
package monitor

import (
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Recorder. Zero values take the defaults.
type Options struct {
	Retention time.Duration    // how long buckets are kept; default 24h
	Bucket    time.Duration    // bucket width; default 1 minute
	Now       func() time.Time // clock; default time.Now
}

// Recorder holds the time series of every service/version it has observed. It is safe for
// concurrent use; Observe takes no lock in steady state.
type Recorder struct {
	bucket int64 // nanoseconds
	slots  int   // ring length: buckets kept per version
	now    func() time.Time

	mu     sync.Mutex                            // serializes writers of series
	series atomic.Pointer[map[seriesKey]*series] // copy-on-write: Observe reads it without a lock
}

type seriesKey struct{ service, version string }

// series is one version's ring of buckets; bucket b lives in ring[b mod len(ring)].
type series struct {
	mu   sync.Mutex // taken only to install or reuse a slot
	ring []atomic.Pointer[slot]
}

// New returns a Recorder.
func New(opts Options) *Recorder {
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.Bucket <= 0 {
		opts.Bucket = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Recorder{
		bucket: int64(opts.Bucket),
		slots:  int((opts.Retention + opts.Bucket - 1) / opts.Bucket),
		now:    opts.Now,
	}
	r.series.Store(&map[seriesKey]*series{})
	return r
}

// Observe records one answered request. It is meant for the router's hot path: a map lookup,
// a clock read and a few atomic adds, no allocation once the version's bucket exists.
// A failure is a 5xx status; 4xx are counted apart as client errors. Pass only names of
// deployed versions: each new pair holds a series until Forget.
func (r *Recorder) Observe(service, version string, status int, latency time.Duration) {
	r.ObserveAt(r.now(), service, version, status, latency)
}

// ObserveAt is Observe for a request that ended at t: a router that already read the clock to
// measure the latency saves a second clock read.
func (r *Recorder) ObserveAt(t time.Time, service, version string, status int, latency time.Duration) {
	s := (*r.series.Load())[seriesKey{service, version}]
	if s == nil {
		s = r.addSeries(service, version)
	}
	if sl := s.slotFor(r.bucketOf(t)); sl != nil {
		sl.add(status, int64(latency))
	}
}

func (r *Recorder) bucketOf(t time.Time) int64 {
	ns := t.UnixNano()
	idx := ns / r.bucket
	if ns < 0 && ns%r.bucket != 0 {
		idx--
	}
	return idx
}

func (r *Recorder) addSeries(service, version string) *series {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.series.Load()
	k := seriesKey{service, version}
	if s := old[k]; s != nil {
		return s
	}
	m := make(map[seriesKey]*series, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	s := &series{ring: make([]atomic.Pointer[slot], r.slots)}
	m[k] = s
	r.series.Store(&m)
	return s
}

// slotFor returns the slot of bucket idx, installing or reusing one as needed; nil when the
// ring already holds a newer bucket there (the clock went back by more than the retention).
func (s *series) slotFor(idx int64) *slot {
	ref := &s.ring[int(uint64(idx)%uint64(len(s.ring)))]
	if sl := ref.Load(); sl != nil && sl.idx.Load() == idx {
		return sl
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := ref.Load()
	switch {
	case sl == nil:
		sl = &slot{}
		sl.idx.Store(idx)
		ref.Store(sl)
	case sl.idx.Load() > idx:
		return nil
	case sl.idx.Load() < idx:
		sl.reset(idx)
	}
	return sl
}

// Forget drops every version of a service (call it when the service is deleted).
func (r *Recorder) Forget(service string) {
	r.remove(func(k seriesKey) bool { return k.service == service })
}

// ForgetVersion drops one version of a service.
func (r *Recorder) ForgetVersion(service, version string) {
	r.remove(func(k seriesKey) bool { return k.service == service && k.version == version })
}

func (r *Recorder) remove(drop func(seriesKey) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.series.Load()
	m := make(map[seriesKey]*series, len(old))
	for k, v := range old {
		if !drop(k) {
			m[k] = v
		}
	}
	r.series.Store(&m)
}
