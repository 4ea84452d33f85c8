package traffic

import (
	"math"
	"sync"
	"testing"
)

func split(t *testing.T, specs ...Version) []Version {
	t.Helper()
	var vs []Version
	for _, s := range specs {
		vs = mustAdd(t, vs, s)
	}
	return vs
}

func TestPickerShares(t *testing.T) {
	// blue is default with 0 % allocated and 0 % left over: it must never be picked.
	vs := split(t,
		Version{Name: "blue"},
		Version{Name: "green", TrafficPercentile: 70},
		Version{Name: "red", TrafficPercentile: 20},
		Version{Name: "pink", TrafficPercentile: 10},
	)
	p := NewPicker(vs)
	const n = 5000
	counts := map[string]int{}
	for range n {
		name, ok := p.Pick()
		if !ok {
			t.Fatal("Pick found nothing")
		}
		counts[name]++
	}
	if counts["blue"] != 0 {
		t.Errorf("0 %% version picked %d times", counts["blue"])
	}
	for name, want := range map[string]float64{"green": 70, "red": 20, "pink": 10} {
		got := 100 * float64(counts[name]) / n
		if math.Abs(got-want) > 2 {
			t.Errorf("%s got %.2f %%, want %v ± 2", name, got, want)
		}
		// Smooth WRR is exact over whole cycles (here every 10 picks).
		if got != want {
			t.Errorf("%s got %.2f %%, want exactly %v", name, got, want)
		}
	}
}

func TestPickerSpreadsPicks(t *testing.T) {
	vs := split(t, Version{Name: "blue", TrafficPercentile: 50}, Version{Name: "green", TrafficPercentile: 50})
	p := NewPicker(vs)
	prev := ""
	for i := range 100 {
		name, _ := p.Pick()
		if name == prev {
			t.Fatalf("pick %d repeats %s on a 50/50 split", i, name)
		}
		prev = name
	}
}

func TestPickerDefaultTakesRest(t *testing.T) {
	vs := split(t, Version{Name: "blue", TrafficPercentile: 20}, Version{Name: "green", TrafficPercentile: 10})
	p := NewPicker(vs)
	counts := map[string]int{}
	for range 1000 {
		name, _ := p.Pick()
		counts[name]++
	}
	if counts["blue"] != 900 || counts["green"] != 100 {
		t.Fatalf("counts = %v, want blue 900, green 100", counts)
	}
}

func TestPickerEmpty(t *testing.T) {
	if name, ok := NewPicker(nil).Pick(); ok {
		t.Fatalf("empty picker picked %q", name)
	}
}

func TestPickerConcurrent(t *testing.T) {
	vs := split(t, Version{Name: "blue", TrafficPercentile: 70}, Version{Name: "green", TrafficPercentile: 30})
	p := NewPicker(vs)
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			local := map[string]int{}
			for range 1000 {
				name, _ := p.Pick()
				local[name]++
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	// 8000 picks = 800 whole cycles, whatever the interleaving.
	if counts["blue"] != 5600 || counts["green"] != 2400 {
		t.Fatalf("counts = %v, want blue 5600, green 2400", counts)
	}
}

func TestMirror(t *testing.T) {
	vs := split(t,
		Version{Name: "blue"},
		Version{Name: "green", MirrorPercentile: 12.5},
		Version{Name: "red", MirrorPercentile: 33.3},
	)
	m := NewMirror(vs)
	counts := map[string]int{}
	var buf []string
	for range 10000 {
		buf = m.Targets(buf[:0])
		for _, name := range buf {
			counts[name]++
		}
	}
	want := map[string]int{"green": 1250, "red": 3330}
	if len(counts) != len(want) || counts["green"] != want["green"] || counts["red"] != want["red"] {
		t.Fatalf("copies = %v, want %v", counts, want)
	}

	// Evenly spaced: at 50 % every other request is copied.
	half := NewMirror([]Version{{Name: "blue", MirrorPercentile: 50}})
	for i := range 10 {
		got := len(half.Targets(nil)) == 1
		if got != (i%2 == 1) {
			t.Fatalf("request %d copied=%t", i, got)
		}
	}
	if got := NewMirror([]Version{{Name: "blue"}}).Targets(nil); len(got) != 0 {
		t.Fatalf("0 %% mirror copied to %v", got)
	}
}

func BenchmarkPick(b *testing.B) {
	vs := []Version{
		{Name: "blue", TrafficPercentile: 70, IsDefault: true, IsControl: true},
		{Name: "green", TrafficPercentile: 20},
		{Name: "red", TrafficPercentile: 10},
	}
	p := NewPicker(vs)
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			p.Pick()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p.Pick()
			}
		})
	})
}

func BenchmarkMirror(b *testing.B) {
	m := NewMirror([]Version{{Name: "blue", MirrorPercentile: 10}})
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]string, 0, 1)
		for pb.Next() {
			buf = m.Targets(buf[:0])
		}
	})
}
