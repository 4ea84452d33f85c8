package monitor

import (
	"sort"
	"strconv"
	"time"
)

// VersionSummary is one version's traffic over a window.
type VersionSummary struct {
	Version           string
	Requests          uint64
	ByCode            map[int]uint64    // exact unless a bucket saw more than 16 distinct codes
	ByClass           map[string]uint64 // "2xx", "4xx", "5xx", ...; always exact
	Failures          uint64            // 5xx
	ClientErrors      uint64            // 4xx
	ErrorRate         float64           // Failures / Requests
	P50, P95, P99     time.Duration     // within HistErrorBound between 50 µs and 300 s
	Mean              time.Duration
	RequestsPerSecond float64       // Requests / Window
	Window            time.Duration // the span covered: whole buckets before the current one plus its elapsed part
}

// Point is one bucket of a version's series.
type Point struct {
	Start         time.Time
	Requests      uint64
	ByCode        map[int]uint64
	Failures      uint64
	ClientErrors  uint64
	P50, P95, P99 time.Duration
}

// window returns the bucket numbers a window covers, oldest first, and the span they cover.
func (r *Recorder) window(w time.Duration) (first, last int64, span time.Duration) {
	now := r.now()
	last = r.bucketOf(now)
	n := int64(w+time.Duration(r.bucket)-1) / r.bucket
	n = min(max(n, 1), int64(r.slots))
	first = last - n + 1
	span = time.Duration((n-1)*r.bucket) + now.Sub(time.Unix(0, last*r.bucket))
	return first, last, span
}

// versions returns the service's series sorted by version name.
func (r *Recorder) versions(service string) ([]string, []*series) {
	m := *r.series.Load()
	var names []string
	for k := range m {
		if k.service == service {
			names = append(names, k.version)
		}
	}
	sort.Strings(names)
	out := make([]*series, len(names))
	for i, v := range names {
		out[i] = m[seriesKey{service, v}]
	}
	return names, out
}

// buckets reads the series' buckets in [first, last] that hold data, oldest first.
func (s *series) buckets(first, last int64) []bucketData {
	var out []bucketData
	for idx := max(first, last-int64(len(s.ring))+1); idx <= last; idx++ {
		sl := s.ring[int(uint64(idx)%uint64(len(s.ring)))].Load()
		if sl == nil {
			continue
		}
		if d, ok := sl.read(idx); ok && d.Count > 0 {
			out = append(out, d)
		}
	}
	return out
}

// sum adds buckets together (samples excepted).
func sum(bs []bucketData) bucketData {
	var t bucketData
	for i, b := range bs {
		t.Count += b.Count
		t.Failures += b.Failures
		t.ClientErrors += b.ClientErrors
		t.SumNs += b.SumNs
		if i == 0 || b.MinNs < t.MinNs {
			t.MinNs = b.MinNs
		}
		t.MaxNs = max(t.MaxNs, b.MaxNs)
		for c := range b.Classes {
			t.Classes[c] += b.Classes[c]
		}
		for code, n := range b.Codes {
			if t.Codes == nil {
				t.Codes = map[int]uint64{}
			}
			t.Codes[code] += n
		}
		for k := range b.Hist {
			t.Hist[k] += b.Hist[k]
		}
	}
	return t
}

func (d *bucketData) pct(q float64) time.Duration {
	return percentile(&d.Hist, d.Count, q, d.MinNs, d.MaxNs)
}

func classes(c [6]uint64) map[string]uint64 {
	m := map[string]uint64{}
	for i, n := range c {
		if n == 0 {
			continue
		}
		if i == 0 {
			m["other"] = n
		} else {
			m[strconv.Itoa(i)+"xx"] = n
		}
	}
	return m
}

// Summary returns each known version of a service over the last window (capped at the
// retention), sorted by version name; versions without requests in the window have zeros.
func (r *Recorder) Summary(service string, window time.Duration) []VersionSummary {
	first, last, span := r.window(window)
	names, ss := r.versions(service)
	out := make([]VersionSummary, 0, len(names))
	for i, s := range ss {
		t := sum(s.buckets(first, last))
		vs := VersionSummary{
			Version:      names[i],
			Requests:     t.Count,
			ByCode:       t.Codes,
			ByClass:      classes(t.Classes),
			Failures:     t.Failures,
			ClientErrors: t.ClientErrors,
			P50:          t.pct(0.50),
			P95:          t.pct(0.95),
			P99:          t.pct(0.99),
			Window:       span,
		}
		if vs.ByCode == nil {
			vs.ByCode = map[int]uint64{}
		}
		if t.Count > 0 {
			vs.ErrorRate = float64(t.Failures) / float64(t.Count)
			vs.Mean = time.Duration(t.SumNs / t.Count)
		}
		if span > 0 {
			vs.RequestsPerSecond = float64(t.Count) / span.Seconds()
		}
		out = append(out, vs)
	}
	return out
}

// Series returns one Point per bucket of the window, oldest first, empty buckets included;
// nil for an unknown version.
func (r *Recorder) Series(service, version string, window time.Duration) []Point {
	s := (*r.series.Load())[seriesKey{service, version}]
	if s == nil {
		return nil
	}
	first, last, _ := r.window(window)
	data := s.buckets(first, last)
	out := make([]Point, 0, last-first+1)
	for idx := first; idx <= last; idx++ {
		p := Point{Start: time.Unix(0, idx*r.bucket).UTC(), ByCode: map[int]uint64{}}
		if len(data) > 0 && data[0].Idx == idx {
			d := data[0]
			data = data[1:]
			p.Requests, p.Failures, p.ClientErrors = d.Count, d.Failures, d.ClientErrors
			if d.Codes != nil {
				p.ByCode = d.Codes
			}
			p.P50, p.P95, p.P99 = d.pct(0.50), d.pct(0.95), d.pct(0.99)
		}
		out = append(out, p)
	}
	return out
}
