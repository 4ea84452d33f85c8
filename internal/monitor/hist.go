package monitor

import (
	"math"
	"time"
)

// The latency histogram has fixed log-spaced buckets: bucket 0 is [0, 50 µs), bucket k in
// 1..histTop is [histBounds[k-1], histBounds[k]) with each bound 1.1× the previous, and the last
// bucket holds everything from histBounds[histTop] (≥ 300 s) up. A percentile is reported as
// the geometric middle of its bucket, so between 50 µs and 300 s it is within √1.1−1 ≈ 4.9 %
// of the exact (nearest-rank) value.
const (
	histMin     = 50 * time.Microsecond
	histGrowth  = 1.1
	histTop     = 164 // 50 µs × 1.1^164 ≈ 307 s, the first bound past the 300 s scoring-timeout cap
	histBuckets = histTop + 2
)

// HistErrorBound is the largest relative error of a reported percentile in [50 µs, 300 s].
var HistErrorBound = math.Sqrt(histGrowth) - 1

var (
	histBounds   = makeBounds()
	histLogScale = 1 / math.Log(histGrowth)
)

func makeBounds() [histTop + 1]int64 {
	var b [histTop + 1]int64
	for k := range b {
		b[k] = int64(math.Round(float64(histMin) * math.Pow(histGrowth, float64(k))))
	}
	return b
}

// histIndex returns the bucket of a latency in nanoseconds.
func histIndex(ns int64) int {
	if ns < histBounds[0] {
		return 0
	}
	k := 1 + int(math.Log(float64(ns)/float64(histBounds[0]))*histLogScale)
	if k > histTop+1 {
		k = histTop + 1
	}
	// The logarithm can land one bucket off next to a bound; the integer bounds decide.
	for k > 1 && ns < histBounds[k-1] {
		k--
	}
	for k <= histTop && ns >= histBounds[k] {
		k++
	}
	return k
}

// histEstimate is the value reported for bucket k, clamped to the observed [lo, hi].
func histEstimate(k int, lo, hi int64) int64 {
	var v int64
	switch {
	case k == 0:
		v = histBounds[0] / 2
	case k > histTop:
		v = hi
	default:
		v = int64(math.Sqrt(float64(histBounds[k-1]) * float64(histBounds[k])))
	}
	return min(max(v, lo), hi)
}

// percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of a histogram of n values.
func percentile(h *[histBuckets]uint64, n uint64, q float64, lo, hi int64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for k, c := range h {
		seen += c
		if seen >= rank {
			return time.Duration(histEstimate(k, lo, hi))
		}
	}
	return time.Duration(hi)
}
