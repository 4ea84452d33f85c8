package python

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
)

// BenchmarkWorkerHop measures one Score through the worker protocol (no HTTP) on the stdlib
// example, sequentially: the pool's own overhead on top of run(), with both sides sleeping between
// requests ("sleep") and with a lone request polling ("poll"). Not run by go test without -bench.
//
//	GOMAXPROCS=1 go test -run '^$' -bench WorkerHop ./internal/scoring/python
func BenchmarkWorkerHop(b *testing.B) {
	b.Run("sleep", func(b *testing.B) { benchmarkWorkerHop(b, 0) })
	b.Run("poll", func(b *testing.B) { benchmarkWorkerHop(b, 200) })
}

func benchmarkWorkerHop(b *testing.B, poll int) {
	ex := filepath.Join("..", "..", "..", "examples", "stdlib")
	p, err := New(Config{EntryScript: filepath.Join(ex, "score.py"), ModelDir: filepath.Join(ex, "model"), PollMicros: poll}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	req := &backend.Request{Body: []byte(`{"data": [[1.0, 2.0, 3.0]]}`), Alone: poll > 0}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if _, err := p.Score(ctx, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}
