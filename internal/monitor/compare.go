package monitor

import (
	"fmt"
	"time"
)

const (
	// Alpha is the significance level of Compare's tests.
	Alpha = 0.05
	// MinRequests is the fewest requests (and latency samples) each side needs before Compare tests.
	MinRequests = 30
	// maxSamples caps the latency samples per side that Compare feeds the Mann-Whitney test.
	maxSamples = 20000
)

// Comparison is one treatment version against the control over a window.
type Comparison struct {
	Control, Treatment string
	ControlRequests    uint64
	TreatmentRequests  uint64

	// Error rates (5xx / requests) and the two-proportion z-test of their difference.
	ControlErrorRate   float64
	TreatmentErrorRate float64
	ErrorRateDiff      float64 // treatment − control
	ErrorRateTested    bool    // false: not enough data, Z and P are 0 and 1
	ErrorRateZ         float64
	ErrorRateP         float64
	ErrorVerdict       string

	// Latency medians (from the histograms) and the Mann-Whitney U test on the sampled latencies.
	ControlP50       time.Duration
	TreatmentP50     time.Duration
	P50Diff          time.Duration // treatment − control
	ControlSamples   int
	TreatmentSamples int
	LatencyTested    bool    // false: not enough data, U, Z and P are 0, 0 and 1
	LatencyU         float64 // U of the treatment: pairs where the treatment was slower (+½ per tie)
	LatencyZ         float64
	LatencyP         float64
	LatencyVerdict   string
}

const notEnough = "not enough data (need ≥ 30 requests in each)"

// Compare tests every other version of service against control over the window, sorted by
// version name. Verdicts read "treatment is faster (p=0.003)", "treatment has more errors
// (p=0.02)", "no significant difference (p=0.41)" or "not enough data (...)".
func (r *Recorder) Compare(service, control string, window time.Duration) []Comparison {
	first, last, _ := r.window(window)
	names, ss := r.versions(service)
	var ctl []bucketData
	if s := (*r.series.Load())[seriesKey{service, control}]; s != nil {
		ctl = s.buckets(first, last)
	}
	c := sum(ctl)
	cSamples := sample(ctl)
	var out []Comparison
	for i, s := range ss {
		if names[i] == control {
			continue
		}
		tb := s.buckets(first, last)
		t := sum(tb)
		tSamples := sample(tb)
		cmp := Comparison{
			Control: control, Treatment: names[i],
			ControlRequests: c.Count, TreatmentRequests: t.Count,
			ControlP50: c.pct(0.5), TreatmentP50: t.pct(0.5),
			ControlSamples: len(cSamples), TreatmentSamples: len(tSamples),
			ErrorRateP: 1, LatencyP: 1,
			ErrorVerdict: notEnough, LatencyVerdict: notEnough,
		}
		cmp.P50Diff = cmp.TreatmentP50 - cmp.ControlP50
		if c.Count > 0 {
			cmp.ControlErrorRate = float64(c.Failures) / float64(c.Count)
		}
		if t.Count > 0 {
			cmp.TreatmentErrorRate = float64(t.Failures) / float64(t.Count)
		}
		cmp.ErrorRateDiff = cmp.TreatmentErrorRate - cmp.ControlErrorRate
		if c.Count >= MinRequests && t.Count >= MinRequests {
			cmp.ErrorRateTested = true
			cmp.ErrorRateZ, cmp.ErrorRateP = zTest(c.Failures, c.Count, t.Failures, t.Count)
			cmp.ErrorVerdict = verdict(cmp.ErrorRateP, cmp.ErrorRateZ < 0, "treatment has fewer errors", "treatment has more errors")
		}
		if len(cSamples) >= MinRequests && len(tSamples) >= MinRequests {
			cmp.LatencyTested = true
			// Copies: mannWhitney reorders, and the control's samples serve every treatment.
			cmp.LatencyU, cmp.LatencyZ, cmp.LatencyP = mannWhitney(append([]float64(nil), tSamples...), append([]float64(nil), cSamples...))
			faster := cmp.LatencyU < float64(len(tSamples)*len(cSamples))/2
			cmp.LatencyVerdict = verdict(cmp.LatencyP, faster, "treatment is faster", "treatment is slower")
		}
		out = append(out, cmp)
	}
	return out
}

func verdict(p float64, better bool, yes, no string) string {
	ps := fmt.Sprintf("p=%.3g", p)
	if p < 0.001 {
		ps = "p<0.001"
	}
	switch {
	case p >= Alpha:
		return "no significant difference (" + ps + ")"
	case better:
		return yes + " (" + ps + ")"
	default:
		return no + " (" + ps + ")"
	}
}

// sample draws latencies from the buckets in proportion to each bucket's request count, so
// that a quiet minute weighs no more than it should: every bucket contributes the same
// fraction f of its requests, the largest f its reservoir allows (and maxSamples caps).
func sample(bs []bucketData) []float64 {
	var total uint64
	f := 1.0
	for _, b := range bs {
		total += b.Count
		if b.Count > 0 {
			f = min(f, float64(len(b.Samples))/float64(b.Count))
		}
	}
	if total == 0 {
		return nil
	}
	f = min(f, float64(maxSamples)/float64(total))
	var out []float64
	for _, b := range bs {
		k := min(int(f*float64(b.Count)+0.5), len(b.Samples))
		for _, v := range b.Samples[:k] {
			out = append(out, float64(v))
		}
	}
	return out
}
