package server

import (
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/deploy"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// insights decides, per service and version, whether requests are recorded (appInsightsEnabled)
// and collected (dataCollection.storageEnabled); the router asks on every request.
type insights struct {
	mu      sync.RWMutex
	monitor map[string]bool // service -> appInsightsEnabled
	collect map[string]bool // service/version -> storageEnabled
}

func newInsights() *insights {
	return &insights{monitor: map[string]bool{}, collect: map[string]bool{}}
}

func (in *insights) configure(svc store.Service) {
	dc := deploy.DeploymentConfigOf(svc.DeploymentConfig)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.monitor[svc.Name] = dc.AppInsightsEnabled != nil && *dc.AppInsightsEnabled
	set := func(version string, raw []byte) {
		c := deploy.DeploymentConfigOf(raw)
		in.collect[svc.Name+"/"+version] = c.DataCollection != nil && c.DataCollection.StorageEnabled != nil && *c.DataCollection.StorageEnabled
	}
	if !svc.IsEndpoint() {
		set(svc.Name, svc.DeploymentConfig)
	}
	for _, v := range svc.Versions {
		set(v.Name, v.DeploymentConfig)
	}
}

func (in *insights) remove(name string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.monitor, name)
	for k := range in.collect {
		if len(k) > len(name) && k[:len(name)+1] == name+"/" {
			delete(in.collect, k)
		}
	}
}

func (in *insights) monitored(service string) bool {
	in.mu.RLock()
	defer in.mu.RUnlock()
	return in.monitor[service]
}

func (in *insights) collected(service, version string) bool {
	in.mu.RLock()
	defer in.mu.RUnlock()
	return in.collect[service+"/"+version]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Server) endpointMetrics(r *http.Request) (any, error) {
	svc, err := s.service(r)
	if err != nil {
		return nil, err
	}
	window := 5 * time.Minute
	if w := r.URL.Query().Get("window"); w != "" {
		if window, err = time.ParseDuration(w); err != nil || window <= 0 {
			return nil, errdefs.Invalid("invalid window %q: use a duration such as 5m or 1h", w)
		}
	}
	out := api.EndpointMetrics{Name: svc.Name, Window: window.String(), AppInsightsEnabled: s.insights.monitored(svc.Name), Versions: []api.VersionMetrics{}}
	for _, v := range s.monitor.Summary(svc.Name, window) {
		vm := api.VersionMetrics{Version: v.Version, Requests: v.Requests, ByStatus: map[string]uint64{}, Failures: v.Failures,
			ClientErrors: v.ClientErrors, ErrorRate: v.ErrorRate, P50Ms: ms(v.P50), P95Ms: ms(v.P95), P99Ms: ms(v.P99),
			MeanMs: ms(v.Mean), RequestsPerSecond: v.RequestsPerSecond}
		for code, n := range v.ByCode {
			vm.ByStatus[strconv.Itoa(code)] = n
		}
		out.Versions = append(out.Versions, vm)
	}
	if r.URL.Query().Get("compare") == "true" {
		control := ""
		for _, v := range svc.Versions {
			if v.IsControl {
				control = v.Name
			}
		}
		if control == "" {
			return nil, errdefs.Invalid("%q has no versions to compare: --compare needs an endpoint with a control and treatments", svc.Name)
		}
		for _, c := range s.monitor.Compare(svc.Name, control, window) {
			out.Comparisons = append(out.Comparisons, api.VersionComparison{
				Control: c.Control, Treatment: c.Treatment, ControlRequests: c.ControlRequests, TreatmentRequests: c.TreatmentRequests,
				ControlErrorRate: c.ControlErrorRate, TreatmentErrorRate: c.TreatmentErrorRate, ErrorRateDiff: c.ErrorRateDiff,
				ErrorRateTested: c.ErrorRateTested, ErrorRateP: c.ErrorRateP, ErrorVerdict: c.ErrorVerdict,
				ControlP50Ms: ms(c.ControlP50), TreatmentP50Ms: ms(c.TreatmentP50), P50DiffMs: ms(c.P50Diff),
				LatencyTested: c.LatencyTested, LatencyP: c.LatencyP, LatencyVerdict: c.LatencyVerdict,
			})
		}
		sort.Slice(out.Comparisons, func(i, j int) bool { return out.Comparisons[i].Treatment < out.Comparisons[j].Treatment })
	}
	return out, nil
}
