package scoring

import (
	"fmt"
	"io"

	"strconv"
	"sync/atomic"
	"time"
)

// metrics are kept with atomics and written in the Prometheus text format by hand: the data plane
// stays small and the hot path pays a few atomic adds per request.
type metrics struct {
	codes   [600]atomic.Uint64
	latency histogram // the whole request, queue wait included
	run     histogram // the model's own code (backend.Result.RunTime)
}

// durationBuckets start at 25 µs: a small model's run() takes tens of microseconds.
var durationBuckets = [...]float64{0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

type histogram struct {
	counts   [len(durationBuckets) + 1]atomic.Uint64 // the last is +Inf
	sumNanos atomic.Uint64
}

func newMetrics() *metrics { return &metrics{} }

func (m *metrics) observe(code int, d time.Duration) {
	if code >= 0 && code < len(m.codes) {
		m.codes[code].Add(1)
	}
	m.latency.observe(d)
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(durationBuckets) && s > durationBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNanos.Add(uint64(d.Nanoseconds()))
}

func (h *histogram) write(w io.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range durationBuckets {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.counts[len(durationBuckets)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, cum)
	fmt.Fprintf(w, "%s_sum %s\n", name, strconv.FormatFloat(float64(h.sumNanos.Load())/1e9, 'g', -1, 64))
	fmt.Fprintf(w, "%s_count %d\n", name, cum)
}

// gauges are sampled at scrape time.
type gauges struct {
	inFlight, queued int64
	restarts         uint64
	ready            bool
}

func (m *metrics) write(w io.Writer, g gauges) {
	fmt.Fprintln(w, "# HELP mlship_scoring_requests_total Scoring requests answered, by HTTP status code.")
	fmt.Fprintln(w, "# TYPE mlship_scoring_requests_total counter")
	for code := range m.codes {
		if n := m.codes[code].Load(); n > 0 {
			fmt.Fprintf(w, "mlship_scoring_requests_total{code=\"%d\"} %d\n", code, n)
		}
	}
	m.latency.write(w, "mlship_scoring_request_duration_seconds", "Time from receiving a scoring request to answering it, queue wait included.")
	m.run.write(w, "mlship_scoring_run_duration_seconds", "Time the model's own code took for the scoring requests it answered: run() in a worker, or the ONNX session.")
	fmt.Fprintln(w, "# HELP mlship_scoring_requests_in_flight Scoring requests being run by the model.")
	fmt.Fprintln(w, "# TYPE mlship_scoring_requests_in_flight gauge")
	fmt.Fprintf(w, "mlship_scoring_requests_in_flight %d\n", g.inFlight)
	fmt.Fprintln(w, "# HELP mlship_scoring_queue_depth Scoring requests waiting for a concurrency slot or, once admitted, for a free worker.")
	fmt.Fprintln(w, "# TYPE mlship_scoring_queue_depth gauge")
	fmt.Fprintf(w, "mlship_scoring_queue_depth %d\n", g.queued)
	fmt.Fprintln(w, "# HELP mlship_scoring_worker_restarts_total Workers replaced after crashing or exceeding the scoring timeout.")
	fmt.Fprintln(w, "# TYPE mlship_scoring_worker_restarts_total counter")
	fmt.Fprintf(w, "mlship_scoring_worker_restarts_total %d\n", g.restarts)
	fmt.Fprintln(w, "# HELP mlship_scoring_ready Whether the replica is ready to score (1) or not (0).")
	fmt.Fprintln(w, "# TYPE mlship_scoring_ready gauge")
	fmt.Fprintf(w, "mlship_scoring_ready %d\n", b2i(g.ready))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
