package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The load generator pairs each answer's latency with the run() time its Server-Timing header
// gives; answers without the header (gunicorn's) are timed but not paired.
func TestLoadReadsServerTiming(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.Header().Set("Server-Timing", "run;dur=2.500")
			time.Sleep(3 * time.Millisecond)
		}
		w.Write([]byte(`[1]`))
	}))
	defer srv.Close()
	r := load(strings.TrimPrefix(srv.URL, "http://"), "/score", []byte(`{}`), 1, 10)
	if r.Requests != 10 || r.Codes[200] != 10 || r.Errors != 0 {
		t.Fatalf("requests %d codes %v errors %d", r.Requests, r.Codes, r.Errors)
	}
	if len(r.run) != 5 || len(r.aroundRun) != 5 {
		t.Fatalf("%d run times and %d latencies around them, want 5 of each", len(r.run), len(r.aroundRun))
	}
	for i, d := range r.run {
		if d != 2500*time.Microsecond {
			t.Errorf("run time %d = %v, want 2.5ms", i, d)
		}
		if a := r.aroundRun[i]; a < 500*time.Microsecond || a > r.lat[len(r.lat)-1]-d {
			t.Errorf("latency minus run() %d = %v, want at least the 0.5 ms the handler slept beyond it", i, a)
		}
	}
}
