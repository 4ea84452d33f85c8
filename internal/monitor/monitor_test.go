package monitor

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

// clock is an injected, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)} }
func ms(f float64) time.Duration     { return time.Duration(f * float64(time.Millisecond)) }
func newRec(c *clock, ret time.Duration) *Recorder {
	return New(Options{Retention: ret, Now: c.Now})
}

func TestHistBuckets(t *testing.T) {
	if histBounds[0] != int64(histMin) || histBounds[histTop] < int64(300*time.Second) || histBounds[histTop-1] >= int64(300*time.Second) {
		t.Fatalf("bounds %v .. %v do not span 50µs..300s tightly", histBounds[0], histBounds[histTop])
	}
	for k := 1; k <= histTop; k++ {
		lo, hi := histBounds[k-1], histBounds[k]
		if r := float64(hi) / float64(lo); math.Abs(r-histGrowth) > 1e-4 {
			t.Fatalf("bucket %d grows %v", k, r)
		}
		for _, ns := range []int64{lo, lo + 1, (lo + hi) / 2, hi - 1} {
			if got := histIndex(ns); got != k {
				t.Fatalf("histIndex(%d) = %d, want %d", ns, got, k)
			}
		}
	}
	for ns, want := range map[int64]int{0: 0, 49999: 0, int64(time.Hour): histTop + 1} {
		if got := histIndex(ns); got != want {
			t.Errorf("histIndex(%d) = %d, want %d", ns, got, want)
		}
	}
}

// nearestRank is the exact percentile the histogram approximates.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(math.Ceil(q*float64(len(sorted))))-1]
}

func TestPercentileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, med := range []float64{0.08, 3, 250, 40000} { // milliseconds: 80 µs to 40 s
		c := newClock()
		r := newRec(c, 0)
		var lat []time.Duration
		for range 20000 {
			d := ms(med * math.Exp(rng.NormFloat64()*0.8))
			lat = append(lat, d)
			r.Observe("svc", "v1", 200, d)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		s := r.Summary("svc", time.Minute)[0]
		for _, c := range []struct {
			q   float64
			got time.Duration
		}{{0.5, s.P50}, {0.95, s.P95}, {0.99, s.P99}} {
			want := nearestRank(lat, c.q)
			if rel := math.Abs(float64(c.got-want)) / float64(want); rel > HistErrorBound+1e-6 {
				t.Errorf("median %vms: p%v = %v, exact %v: error %.2f%% > %.2f%%", med, c.q*100, c.got, want, rel*100, HistErrorBound*100)
			}
		}
	}
}

func TestSummaryCounts(t *testing.T) {
	c := newClock()
	r := newRec(c, 0)
	c.Add(30 * time.Second) // half-way through a bucket
	obs := []struct {
		status int
		n      int
	}{{200, 50}, {201, 10}, {400, 5}, {404, 3}, {502, 2}, {503, 4}, {504, 1}, {0, 1}}
	for _, o := range obs {
		for range o.n {
			r.Observe("svc", "blue", o.status, 10*time.Millisecond)
		}
	}
	r.Observe("svc", "green", 200, time.Second)
	r.Observe("other", "blue", 200, time.Second)

	got := r.Summary("svc", 2*time.Minute)
	if len(got) != 2 || got[0].Version != "blue" || got[1].Version != "green" {
		t.Fatalf("versions %+v", got)
	}
	b := got[0]
	wantCodes := map[int]uint64{200: 50, 201: 10, 400: 5, 404: 3, 502: 2, 503: 4, 504: 1}
	wantClasses := map[string]uint64{"2xx": 60, "4xx": 8, "5xx": 7, "other": 1}
	if b.Requests != 76 || b.Failures != 7 || b.ClientErrors != 8 || !reflect.DeepEqual(b.ByCode, wantCodes) || !reflect.DeepEqual(b.ByClass, wantClasses) {
		t.Errorf("counts %+v", b)
	}
	if b.ErrorRate != 7.0/76 {
		t.Errorf("error rate %v, want %v", b.ErrorRate, 7.0/76)
	}
	// Window 2m: the previous whole bucket plus the 30 s elapsed of the current one.
	if b.Window != 90*time.Second || b.RequestsPerSecond != 76.0/90 {
		t.Errorf("window %v rate %v, want 1m30s and %v", b.Window, b.RequestsPerSecond, 76.0/90)
	}
	if b.Mean != 10*time.Millisecond || b.P50 != 10*time.Millisecond || b.P99 != 10*time.Millisecond {
		t.Errorf("latency mean %v p50 %v p99 %v, want 10ms (clamped to min/max)", b.Mean, b.P50, b.P99)
	}
	if r.Summary("nosuch", time.Minute) == nil || len(r.Summary("nosuch", time.Minute)) != 0 {
		t.Error("unknown service: want an empty summary")
	}
}

func TestManyCodes(t *testing.T) {
	r := newRec(newClock(), 0)
	for code := 200; code < 220; code++ {
		r.Observe("svc", "v", code, time.Millisecond)
	}
	s := r.Summary("svc", time.Minute)[0]
	if len(s.ByCode) != maxCodes || s.ByClass["2xx"] != 20 || s.Requests != 20 {
		t.Errorf("20 codes: byCode %d entries, 2xx %d, requests %d; want %d, 20, 20", len(s.ByCode), s.ByClass["2xx"], s.Requests, maxCodes)
	}
}

func TestRetentionAndRollover(t *testing.T) {
	c := newClock()
	r := newRec(c, 5*time.Minute) // a ring of 5 one-minute buckets
	for i := range 7 {
		for range i + 1 {
			r.Observe("svc", "v", 200, time.Millisecond)
		}
		if i < 6 {
			c.Add(time.Minute)
		}
	}
	// Buckets 0..6 received 1..7 requests; only the last 5 (3..7) are kept.
	pts := r.Series("svc", "v", time.Hour)
	var got []uint64
	for _, p := range pts {
		got = append(got, p.Requests)
	}
	if want := []uint64{3, 4, 5, 6, 7}; !reflect.DeepEqual(got, want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	if !pts[4].Start.Equal(c.Now().Truncate(time.Minute)) || !pts[0].Start.Equal(pts[4].Start.Add(-4*time.Minute)) {
		t.Errorf("point times %v .. %v", pts[0].Start, pts[4].Start)
	}
	if s := r.Summary("svc", 2*time.Minute)[0]; s.Requests != 13 {
		t.Errorf("2m window: %d requests, want 13", s.Requests)
	}
	// A quiet gap longer than the retention empties everything; gaps show as zero points.
	c.Add(10 * time.Minute)
	r.Observe("svc", "v", 503, time.Millisecond)
	pts = r.Series("svc", "v", 3*time.Minute)
	if len(pts) != 3 || pts[0].Requests != 0 || pts[1].Requests != 0 || pts[2].Requests != 1 || pts[2].Failures != 1 || pts[2].ByCode[503] != 1 {
		t.Errorf("after the gap: %+v", pts)
	}
	if s := r.Summary("svc", time.Hour)[0]; s.Requests != 1 {
		t.Errorf("after the gap: %d requests, want 1", s.Requests)
	}
	// A clock stepped back beyond the retention drops the observation instead of corrupting a bucket.
	c.Add(-time.Hour)
	r.Observe("svc", "v", 200, time.Millisecond)
	c.Add(time.Hour)
	if s := r.Summary("svc", time.Hour)[0]; s.Requests != 1 {
		t.Errorf("after a clock step back: %d requests, want 1", s.Requests)
	}
	if r.Series("svc", "nosuch", time.Minute) != nil {
		t.Error("unknown version: want nil series")
	}
}

func TestForget(t *testing.T) {
	r := newRec(newClock(), 0)
	for _, v := range []string{"a", "b"} {
		r.Observe("svc", v, 200, time.Millisecond)
	}
	r.Observe("keep", "a", 200, time.Millisecond)
	r.ForgetVersion("svc", "a")
	if s := r.Summary("svc", time.Minute); len(s) != 1 || s[0].Version != "b" {
		t.Errorf("after ForgetVersion: %+v", s)
	}
	r.Forget("svc")
	if len(r.Summary("svc", time.Minute)) != 0 || len(r.Summary("keep", time.Minute)) != 1 {
		t.Error("Forget dropped the wrong services")
	}
}

func TestReservoir(t *testing.T) {
	run := func() []int64 {
		r := newRec(newClock(), 0)
		for i := range 10000 {
			r.Observe("svc", "v", 200, time.Duration(i+1)*time.Microsecond)
		}
		s := (*r.series.Load())[seriesKey{"svc", "v"}]
		return s.buckets(0, r.bucketOf(r.now()))[0].Samples
	}
	a, b := run(), run()
	if len(a) != ReservoirSize || !reflect.DeepEqual(a, b) {
		t.Fatalf("reservoir: %d samples, deterministic %v", len(a), reflect.DeepEqual(a, b))
	}
	// A uniform sample of 1..10000 µs: its mean is near 5000 µs (sd of the mean ≈ 180 µs).
	var sum int64
	for _, v := range a {
		sum += v
	}
	if mean := time.Duration(sum / int64(len(a))); mean < 4400*time.Microsecond || mean > 5600*time.Microsecond {
		t.Errorf("sample mean %v, want about 5ms", mean)
	}
}

func TestCompare(t *testing.T) {
	c := newClock()
	r := newRec(c, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	lat := func(median float64) time.Duration { return ms(median * math.Exp(rng.NormFloat64()*0.3)) }
	for minute := range 5 {
		for i := range 400 {
			status := 200
			if i%100 == 0 { // 1 % errors
				status = 503
			}
			r.Observe("ep", "control", status, lat(20))
			r.Observe("ep", "fast", status, lat(15))
			r.Observe("ep", "same", status, lat(20))
			errStatus := status
			if i%20 == 1 { // +5 % errors
				errStatus = 502
			}
			r.Observe("ep", "flaky", errStatus, lat(20))
		}
		for range 5 {
			r.Observe("ep", "tiny", 200, lat(20))
		}
		if minute < 4 {
			c.Add(time.Minute)
		}
	}
	got := r.Compare("ep", "control", 15*time.Minute)
	want := map[string][2]string{ // treatment: error verdict prefix, latency verdict prefix
		"fast":  {"no significant difference", "treatment is faster (p<0.001)"},
		"flaky": {"treatment has more errors (p<0.001)", "no significant difference"},
		"same":  {"no significant difference", "no significant difference"},
		"tiny":  {notEnough, notEnough},
	}
	if len(got) != len(want) {
		t.Fatalf("%d comparisons, want %d: %+v", len(got), len(want), got)
	}
	for _, g := range got {
		w := want[g.Treatment]
		if g.Control != "control" || !hasPrefix(g.ErrorVerdict, w[0]) || !hasPrefix(g.LatencyVerdict, w[1]) {
			t.Errorf("%s: error %q, latency %q; want %q, %q", g.Treatment, g.ErrorVerdict, g.LatencyVerdict, w[0], w[1])
		}
	}
	fast := got[0]
	if fast.ControlRequests != 2000 || fast.ControlSamples != 1280 || fast.TreatmentSamples != 1280 || fast.P50Diff >= 0 || fast.ErrorRateDiff != 0 {
		t.Errorf("fast: %+v", fast)
	}
	if flaky := got[1]; math.Abs(flaky.ErrorRateDiff-0.05) > 1e-9 || flaky.ErrorRateZ <= 0 {
		t.Errorf("flaky: diff %v z %v, want +0.05 and z > 0", flaky.ErrorRateDiff, flaky.ErrorRateZ)
	}
	if got := r.Compare("ep", "nosuch", time.Minute); len(got) != 5 || got[0].LatencyVerdict != notEnough {
		t.Errorf("unknown control: %+v", got)
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func TestSampleProportional(t *testing.T) {
	// A quiet bucket must not weigh as much as a busy one.
	bs := []bucketData{
		{Count: 10, Samples: []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{Count: 1000, Samples: make([]int64, ReservoirSize)},
	}
	got := sample(bs)
	ones := 0
	for _, v := range got {
		if v == 1 {
			ones++
		}
	}
	// f = 256/1000: 3 of the quiet bucket's 10, 256 of the busy one's.
	if ones != 3 || len(got) != 259 {
		t.Errorf("sample: %d values, %d from the quiet bucket; want 259 and 3", len(got), ones)
	}
}

func TestSnapshotRestore(t *testing.T) {
	c := newClock()
	r := newRec(c, 10*time.Minute)
	for i := range 6 {
		r.Observe("svc", "a", 200+i%2*300, time.Duration(i+1)*time.Millisecond)
		r.Observe("svc", "b", 404, time.Second)
		c.Add(time.Minute)
	}
	data, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRec(c, 10*time.Minute)
	if err := r2.Restore(data); err != nil {
		t.Fatal(err)
	}
	if a, b := r.Summary("svc", time.Hour), r2.Summary("svc", time.Hour); !reflect.DeepEqual(a, b) {
		t.Errorf("restored summary differs:\n%+v\n%+v", a, b)
	}
	if a, b := r.Series("svc", "a", time.Hour), r2.Series("svc", "a", time.Hour); !reflect.DeepEqual(a, b) {
		t.Errorf("restored series differs")
	}
	// Buckets are minutes 0..5 and the clock is at minute 6. Restored at minute 11, the
	// retention keeps minutes 2..11: the two oldest buckets are dropped.
	c.Add(5 * time.Minute)
	r3 := newRec(c, 10*time.Minute)
	if err := r3.Restore(data); err != nil {
		t.Fatal(err)
	}
	if s := r3.Summary("svc", time.Hour); s[0].Requests != 4 || s[1].Requests != 4 {
		t.Errorf("late restore kept %d and %d requests, want 4 and 4", s[0].Requests, s[1].Requests)
	}
	for name, bad := range map[string][]byte{
		"garbage":      []byte("{"),
		"other bucket": mustSnapshot(t, New(Options{Bucket: time.Second, Now: c.Now})),
	} {
		if err := r3.Restore(bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
}

func mustSnapshot(t *testing.T, r *Recorder) []byte {
	b, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConcurrent runs writers against readers; run it with -race.
func TestConcurrent(t *testing.T) {
	c := newClock()
	r := newRec(c, 3*time.Minute)
	const writers, each = 8, 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // readers and a clock crossing bucket boundaries
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.Summary("svc", time.Hour)
			r.Compare("svc", "v0", time.Hour)
			r.Series("svc", "v1", time.Hour)
			if _, err := r.Snapshot(); err != nil {
				t.Error(err)
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r.Observe("svc", []string{"v0", "v1"}[w%2], 200+i%2*300, time.Duration(i)*time.Microsecond)
				if w == 0 && i%2000 == 0 {
					c.Add(20 * time.Second)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	var total, failures uint64
	for _, s := range r.Summary("svc", time.Hour) {
		total += s.Requests
		failures += s.Failures
	}
	if total != writers*each || failures != writers*each/2 {
		t.Errorf("%d requests, %d failures; want %d and %d", total, failures, writers*each, writers*each/2)
	}
}

func BenchmarkObserve(b *testing.B) {
	r := New(Options{})
	r.Observe("svc", "v1", 200, time.Millisecond)
	b.ReportAllocs()
	cpuPerOp(b, func() {
		for i := range b.N {
			r.Observe("svc", "v1", 200, time.Duration(i&1023)*time.Microsecond)
		}
	})
}

// BenchmarkObserveAt is the router's call: it passes the time it read to measure the latency.
func BenchmarkObserveAt(b *testing.B) {
	r := New(Options{})
	now := time.Now()
	r.ObserveAt(now, "svc", "v1", 200, time.Millisecond)
	b.ReportAllocs()
	cpuPerOp(b, func() {
		for i := range b.N {
			r.ObserveAt(now, "svc", "v1", 200, time.Duration(i&1023)*time.Microsecond)
		}
	})
}

func BenchmarkObserveParallel(b *testing.B) {
	r := New(Options{})
	r.Observe("svc", "v1", 200, time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe("svc", "v1", 200, time.Duration(i&1023)*time.Microsecond)
			i++
		}
	})
}
