package monitor

import (
	"math"
	"testing"
)

// Reference values computed with /usr/bin/python3 and Debian's python3-scipy 1.10.1:
//
//	z = (p2-p1)/sqrt(p*(1-p)*(1/n1+1/n2)) with p pooled, p-value = 2*scipy.stats.norm.sf(abs(z))
//	scipy.stats.mannwhitneyu(x, y, method="asymptotic", alternative="two-sided", use_continuity=True)
func TestZTest(t *testing.T) {
	cases := []struct {
		x1, n1, x2, n2 uint64
		z, p           float64
	}{
		{10, 100, 20, 100, 1.9802950859533488, 0.04767038065616141},
		{5, 1000, 15, 1000, 2.247332874877473, 0.024618761380815223},
		{0, 50, 3, 50, 1.7586311452816477, 0.07864017934882842},
		{30, 200, 18, 220, -2.193448656521883, 0.028275069962724244},
		{0, 100, 0, 100, 0, 1},   // no failures anywhere: nothing to test
		{100, 100, 50, 50, 0, 1}, // all failures on both sides
		{0, 0, 5, 10, 0, 1},      // an empty side
	}
	for _, c := range cases {
		z, p := zTest(c.x1, c.n1, c.x2, c.n2)
		if math.Abs(z-c.z) > 1e-12 || math.Abs(p-c.p) > 1e-12 {
			t.Errorf("zTest(%d/%d vs %d/%d) = z %v p %v, want z %v p %v", c.x1, c.n1, c.x2, c.n2, z, p, c.z, c.p)
		}
	}
	// Textbook value: the two-sided p of z = 1.959963984540054 is 0.05.
	if p := 2 * normSF(1.959963984540054); math.Abs(p-0.05) > 1e-12 {
		t.Errorf("2*normSF(1.96) = %v, want 0.05", p)
	}
}

func TestMannWhitney(t *testing.T) {
	cases := []struct {
		x, y []float64
		u, p float64
	}{
		// Ties inside and across the samples.
		{[]float64{1.1, 2.2, 3.3, 4.4, 4.4, 5.5}, []float64{3.3, 4.4, 6.6, 7.7, 8.8, 9.9, 9.9}, 5.5, 0.030715473098711102},
		// No ties.
		{[]float64{19, 22, 16, 29, 24}, []float64{20, 11, 17, 12}, 17, 0.11134688653314041},
		// Every value tied: no evidence at all.
		{[]float64{5, 5, 5}, []float64{5, 5, 5}, 4.5, 1},
	}
	for _, c := range cases {
		u, _, p := mannWhitney(append([]float64(nil), c.x...), append([]float64(nil), c.y...))
		if u != c.u || math.Abs(p-c.p) > 1e-12 {
			t.Errorf("mannWhitney(%v, %v) = U %v p %v, want U %v p %v", c.x, c.y, u, p, c.u, c.p)
		}
	}
}

func TestVerdict(t *testing.T) {
	cases := []struct {
		p      float64
		better bool
		want   string
	}{
		{0.003, true, "treatment is faster (p=0.003)"},
		{0.0496, false, "treatment is slower (p=0.0496)"},
		{0.41, true, "no significant difference (p=0.41)"},
		{1e-9, true, "treatment is faster (p<0.001)"},
	}
	for _, c := range cases {
		if got := verdict(c.p, c.better, "treatment is faster", "treatment is slower"); got != c.want {
			t.Errorf("verdict(%v, %v) = %q, want %q", c.p, c.better, got, c.want)
		}
	}
}
