package monitor

import (
	"math"
	"sort"
)

// normSF is the upper tail of the standard normal distribution, P(Z > z).
func normSF(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

// zTest is the two-sided two-proportion z-test with pooled variance of x1/n1 against x2/n2.
// It returns z (positive when the second proportion is larger) and the p-value.
func zTest(x1, n1, x2, n2 uint64) (z, p float64) {
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	pool := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0, 1 // both all-success or both all-failure: no evidence of a difference
	}
	z = (p2 - p1) / se
	return z, math.Min(1, 2*normSF(math.Abs(z)))
}

// mannWhitney is the two-sided Mann-Whitney U test of x against y by the normal approximation
// with tie correction and continuity correction (scipy.stats.mannwhitneyu, method="asymptotic").
// It returns U for x (the pairs where x is larger, ties counting one half), z and the p-value.
// x and y are reordered.
func mannWhitney(x, y []float64) (u, z, p float64) {
	n1, n2 := len(x), len(y)
	if n1 == 0 || n2 == 0 {
		return 0, 0, 1
	}
	type obs struct {
		v   float64
		isX bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	var rx, ties float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // mid-rank of positions i..j-1, 1-based
		for k := i; k < j; k++ {
			if all[k].isX {
				rx += rank
			}
		}
		t := float64(j - i)
		ties += t*t*t - t
		i = j
	}
	f1, f2, n := float64(n1), float64(n2), float64(n1+n2)
	u = rx - f1*(f1+1)/2
	mu := f1 * f2 / 2
	sigma := math.Sqrt(f1 * f2 / 12 * ((n + 1) - ties/(n*(n-1))))
	if sigma == 0 {
		return u, 0, 1 // every value tied
	}
	z = (math.Max(u, f1*f2-u) - mu - 0.5) / sigma
	return u, z, math.Min(1, 2*normSF(z))
}
