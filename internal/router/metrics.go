package router

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Latency buckets from 100 µs (the router's own overhead) to 300 s (the longest scoring timeout).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// metrics holds the router's Prometheus metrics in its own registry. Per-request work is a
// few atomic adds: counters are atomics read at scrape time, gauges are read from the pools.
type metrics struct {
	onResult func(service, version string, status int, latency time.Duration)
	reg      *prometheus.Registry
	handler  http.Handler
	latency  *prometheus.HistogramVec
	router   *Router

	mu       sync.Mutex
	versions map[poolKey]*versionMetrics
	unrouted [600]atomic.Uint64 // requests that named no known service (no label: names are untrusted)

	requestsDesc, unroutedDesc, mirrorDesc, inflightDesc, queueDesc, readyDesc, desiredDesc *prometheus.Desc
}

// versionMetrics are one version's counters; version "" counts requests a service refused
// before choosing a version (401, unknown pinned version).
type versionMetrics struct {
	service, version string
	codes            [600]atomic.Uint64
	latency          prometheus.Observer
	mirrorSent       atomic.Uint64
	mirrorDropped    atomic.Uint64
	mirrorFailed     atomic.Uint64
	desired          atomic.Int64 // autoscaler's desired replicas; -1 until it decides
	onResult         func(service, version string, status int, latency time.Duration)
}

func newMetrics() *metrics {
	sv := []string{"service", "version"}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mlship_router_request_duration_seconds",
			Help:    "Time from request arrival at the router to the end of the response, queueing included.",
			Buckets: latencyBuckets,
		}, sv),
		versions:     map[poolKey]*versionMetrics{},
		requestsDesc: prometheus.NewDesc("mlship_router_requests_total", "Scoring requests answered, by status code.", []string{"service", "version", "code"}, nil),
		unroutedDesc: prometheus.NewDesc("mlship_router_unrouted_requests_total", "Requests for no known service or path, by status code.", []string{"code"}, nil),
		mirrorDesc:   prometheus.NewDesc("mlship_router_mirrored_requests_total", "Mirrored copies by result: sent, dropped (no free replica slot) or failed.", []string{"service", "version", "result"}, nil),
		inflightDesc: prometheus.NewDesc("mlship_router_inflight_requests", "Requests at replicas now.", sv, nil),
		queueDesc:    prometheus.NewDesc("mlship_router_queue_depth", "Requests waiting for a replica slot now.", sv, nil),
		readyDesc:    prometheus.NewDesc("mlship_router_ready_replicas", "Ready replicas.", sv, nil),
		desiredDesc:  prometheus.NewDesc("mlship_router_autoscaler_desired_replicas", "Replicas the autoscaler last asked for.", sv, nil),
	}
	m.reg.MustRegister(m.latency, (*metricsCollector)(m))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

func (m *metrics) forVersion(service, version string) *versionMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := poolKey{service, version}
	if vm := m.versions[k]; vm != nil {
		return vm
	}
	vm := &versionMetrics{service: service, version: version, latency: m.latency.WithLabelValues(service, version), onResult: m.onResult}
	vm.desired.Store(-1)
	m.versions[k] = vm
	return vm
}

func (m *metrics) dropVersion(service, version string) {
	m.mu.Lock()
	delete(m.versions, poolKey{service, version})
	m.mu.Unlock()
	m.latency.DeleteLabelValues(service, version)
}

func (vm *versionMetrics) observe(code int, start time.Time) {
	if code >= 0 && code < len(vm.codes) {
		vm.codes[code].Add(1)
	}
	d := time.Since(start)
	vm.latency.Observe(d.Seconds())
	if vm.onResult != nil {
		vm.onResult(vm.service, vm.version, code, d)
	}
}

func (m *metrics) observeUnrouted(code int) {
	if code >= 0 && code < len(m.unrouted) {
		m.unrouted[code].Add(1)
	}
}

// Registry is the router's Prometheus registry, for embedding its metrics elsewhere.
func (r *Router) Registry() *prometheus.Registry { return r.metrics.reg }

// metricsCollector is metrics seen as a prometheus.Collector (unchecked: series come and go
// with services).
type metricsCollector metrics

func (c *metricsCollector) Describe(chan<- *prometheus.Desc) {}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*metrics)(c)
	for code := range m.unrouted {
		if n := m.unrouted[code].Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(m.unroutedDesc, prometheus.CounterValue, float64(n), strconv.Itoa(code))
		}
	}
	m.mu.Lock()
	vms := make([]*versionMetrics, 0, len(m.versions))
	for _, vm := range m.versions {
		vms = append(vms, vm)
	}
	m.mu.Unlock()
	for _, vm := range vms {
		for code := range vm.codes {
			if n := vm.codes[code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.CounterValue, float64(n), vm.service, vm.version, strconv.Itoa(code))
			}
		}
		if vm.version == "" {
			continue
		}
		for _, x := range []struct {
			result string
			n      uint64
		}{{"sent", vm.mirrorSent.Load()}, {"dropped", vm.mirrorDropped.Load()}, {"failed", vm.mirrorFailed.Load()}} {
			if x.n > 0 {
				ch <- prometheus.MustNewConstMetric(m.mirrorDesc, prometheus.CounterValue, float64(x.n), vm.service, vm.version, x.result)
			}
		}
		if d := vm.desired.Load(); d >= 0 {
			ch <- prometheus.MustNewConstMetric(m.desiredDesc, prometheus.GaugeValue, float64(d), vm.service, vm.version)
		}
		s, ok := m.router.Stats(vm.service, vm.version)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.inflightDesc, prometheus.GaugeValue, float64(s.InFlight), vm.service, vm.version)
		ch <- prometheus.MustNewConstMetric(m.queueDesc, prometheus.GaugeValue, float64(s.Queued), vm.service, vm.version)
		ch <- prometheus.MustNewConstMetric(m.readyDesc, prometheus.GaugeValue, float64(s.ReadyReplicas), vm.service, vm.version)
	}
}
