package deploy

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/internal/traffic"
)

// VersionRequest creates or changes an endpoint version. Nil or empty fields are left alone on update.
type VersionRequest struct {
	Name              string
	Models            []string
	Inference         *config.InferenceConfig
	Deployment        *config.DeploymentConfig
	TrafficPercentile *float64
	MirrorPercentile  *float64
	IsDefault         bool
	IsControl         bool
}

// firstVersion is an endpoint's first version, built from the service being created.
func firstVersion(dc *config.DeploymentConfig, name string, svc store.Service) (store.EndpointVersion, error) {
	v := store.EndpointVersion{Name: name, Models: svc.Models, InferenceConfig: svc.InferenceConfig, DeploymentConfig: svc.DeploymentConfig,
		SourceSHA256: svc.SourceSHA256, Generation: 1, Replicas: svc.Replicas, State: store.StateTransitioning,
		TrafficPercentile: deref(dc.TrafficPercentile), MirrorPercentile: deref(dc.MirrorPercentile), CreatedTime: svc.CreatedTime, UpdatedTime: svc.CreatedTime}
	vs, err := traffic.Add(nil, traffic.Version{Name: v.Name, TrafficPercentile: v.TrafficPercentile, MirrorPercentile: v.MirrorPercentile})
	if err != nil {
		return v, err
	}
	v.IsDefault, v.IsControl = vs[0].IsDefault, vs[0].IsControl
	return v, nil
}

// applyTraffic copies traffic roles and shares from tv onto vs (same names).
func applyTraffic(vs []store.EndpointVersion, tv []traffic.Version) {
	byName := map[string]traffic.Version{}
	for _, t := range tv {
		byName[t.Name] = t
	}
	for i := range vs {
		t := byName[vs[i].Name]
		vs[i].TrafficPercentile, vs[i].MirrorPercentile, vs[i].IsDefault, vs[i].IsControl = t.TrafficPercentile, t.MirrorPercentile, t.IsDefault, t.IsControl
	}
}

func (d *Deployer) endpoint(ctx context.Context, ws, name string) (store.Service, error) {
	svc, err := d.opts.Store.GetService(ctx, ws, name)
	if err != nil {
		return svc, err
	}
	if !svc.IsEndpoint() {
		return svc, errdefs.Invalid("%q is a service, not an endpoint (deploy with computeType AKSENDPOINT to make one)", name)
	}
	if svc.State == store.StateDeleting {
		return svc, errdefs.Conflict("endpoint %q is being deleted", name)
	}
	return svc, nil
}

// CreateVersion adds a version to an endpoint and starts its replicas. It takes traffic once Healthy.
func (d *Deployer) CreateVersion(ctx context.Context, ws, endpoint string, req VersionRequest, src *Source) (store.Operation, error) {
	svc, err := d.endpoint(ctx, ws, endpoint)
	if err != nil {
		return store.Operation{}, err
	}
	if _, _, exists := svc.Version(req.Name); exists {
		return store.Operation{}, errdefs.Conflict("endpoint %q already has a version %q: use update-version", endpoint, req.Name)
	}
	spec := traffic.Version{Name: req.Name, TrafficPercentile: deref(req.TrafficPercentile), MirrorPercentile: deref(req.MirrorPercentile), IsDefault: req.IsDefault, IsControl: req.IsControl}
	tv, err := traffic.Add(trafficOf(svc.Versions), spec)
	if err != nil {
		return store.Operation{}, err
	}
	models, err := d.checkModels(ctx, ws, req.Models)
	if err != nil {
		return store.Operation{}, err
	}
	if req.Inference == nil {
		if err := checkNoCode(models); err != nil {
			return store.Operation{}, err
		}
	}
	if req.Deployment == nil {
		req.Deployment = config.DefaultDeployment()
	}
	op := d.newOperation(ws, "CreateVersion", endpoint)
	if err := d.begin(endpoint, op.ID); err != nil {
		return store.Operation{}, err
	}
	started := false
	defer func() {
		if !started {
			d.end(endpoint)
		}
	}()
	source, err := d.storeSource(ctx, Request{Inference: req.Inference}, src)
	if err != nil {
		return store.Operation{}, err
	}
	ic, _ := json.Marshal(req.Inference)
	dc, _ := json.Marshal(req.Deployment)
	now := d.opts.Now().UTC()
	svc, err = d.mutate(ctx, ws, endpoint, func(s *store.Service) error {
		// Checked again under the record lock: the versions may have changed meanwhile.
		tv, err = traffic.Add(trafficOf(s.Versions), spec)
		if err != nil {
			return err
		}
		s.Versions = append(s.Versions, store.EndpointVersion{Name: req.Name, Models: modelRefs(models), InferenceConfig: ic, DeploymentConfig: dc,
			SourceSHA256: source, Generation: 1, Replicas: initialReplicas(req.Deployment), State: store.StateTransitioning, CreatedTime: now, UpdatedTime: now})
		applyTraffic(s.Versions, tv)
		s.State, s.Error = endpointState(*s)
		return nil
	})
	if err != nil {
		d.opts.Registry.DropIfUnused(ctx, source)
		return store.Operation{}, err
	}
	if err := d.launch(ctx, op, func() error { return d.rollout(svc, req.Name, false) }); err != nil {
		return store.Operation{}, err
	}
	started = true
	return op, nil
}

// UpdateVersion changes a version's traffic (at once) and, when models or configs are given, rolls it.
func (d *Deployer) UpdateVersion(ctx context.Context, ws, endpoint string, req VersionRequest, src *Source) (store.Operation, error) {
	svc, err := d.endpoint(ctx, ws, endpoint)
	if err != nil {
		return store.Operation{}, err
	}
	cur, _, ok := svc.Version(req.Name)
	if !ok {
		return store.Operation{}, versionNotFound(svc, req.Name)
	}
	patch := traffic.Patch{TrafficPercentile: req.TrafficPercentile, MirrorPercentile: req.MirrorPercentile, IsDefault: req.IsDefault, IsControl: req.IsControl}
	if _, err := traffic.Update(trafficOf(svc.Versions), req.Name, patch); err != nil {
		return store.Operation{}, err
	}
	respec := len(req.Models) > 0 || req.Inference != nil || req.Deployment != nil || src != nil
	var models []store.Model
	if len(req.Models) > 0 {
		if models, err = d.checkModels(ctx, ws, req.Models); err != nil {
			return store.Operation{}, err
		}
	}
	op := d.newOperation(ws, "UpdateVersion", endpoint)
	if err := d.begin(endpoint, op.ID); err != nil {
		return store.Operation{}, err
	}
	started := false
	defer func() {
		if !started {
			d.end(endpoint)
		}
	}()
	ic := cur.InferenceConfig
	if req.Inference != nil {
		ic, _ = json.Marshal(req.Inference)
	}
	source := cur.SourceSHA256
	if src != nil {
		icParsed, _, err := specOf(ic, nil)
		if err != nil {
			return store.Operation{}, err
		}
		if source, err = d.storeSource(ctx, Request{Inference: icParsed}, src); err != nil {
			return store.Operation{}, err
		}
	}
	svc, err = d.mutate(ctx, ws, endpoint, func(s *store.Service) error {
		tv, err := traffic.Update(trafficOf(s.Versions), req.Name, patch)
		if err != nil {
			return err
		}
		_, i, ok := s.Version(req.Name)
		if !ok {
			return versionNotFound(*s, req.Name)
		}
		v := &s.Versions[i]
		if respec {
			if models != nil {
				v.Models = modelRefs(models)
			}
			if req.Deployment != nil {
				v.DeploymentConfig, _ = json.Marshal(req.Deployment)
				v.Replicas = initialReplicas(req.Deployment)
			}
			v.InferenceConfig, v.SourceSHA256 = ic, source
			v.Generation++
			v.State, v.Error = store.StateTransitioning, ""
		}
		v.UpdatedTime = d.opts.Now().UTC()
		applyTraffic(s.Versions, tv)
		s.State, s.Error = endpointState(*s)
		return nil
	})
	if err != nil {
		return store.Operation{}, err
	}
	if source != cur.SourceSHA256 {
		d.opts.Registry.DropIfUnused(ctx, cur.SourceSHA256)
	}
	if err := d.opts.Store.CreateOperation(ctx, op); err != nil {
		return store.Operation{}, err
	}
	started = true
	if !respec {
		// A traffic change applies to new requests at once; requests in flight finish where they are.
		defer d.end(endpoint)
		err := d.configureFrontend(svc)
		d.Event(endpoint, "traffic changed: %s", trafficSummary(svc.Versions))
		d.finish(op, err)
		op.State = store.OpSucceeded
		if err != nil {
			op.State, op.Error = store.OpFailed, err.Error()
		}
		return op, nil
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.end(endpoint)
		d.finish(op, d.rollout(svc, req.Name, true))
	}()
	return op, nil
}

// DeleteVersion removes a version; the default goes only to a named successor, and the last version only with the endpoint.
func (d *Deployer) DeleteVersion(ctx context.Context, ws, endpoint, name, newDefault string) (store.Operation, error) {
	svc, err := d.endpoint(ctx, ws, endpoint)
	if err != nil {
		return store.Operation{}, err
	}
	v, _, ok := svc.Version(name)
	if !ok {
		return store.Operation{}, versionNotFound(svc, name)
	}
	if _, err := traffic.Delete(trafficOf(svc.Versions), name, newDefault); err != nil {
		return store.Operation{}, err
	}
	op := d.newOperation(ws, "DeleteVersion", endpoint)
	if err := d.begin(endpoint, op.ID); err != nil {
		return store.Operation{}, err
	}
	svc, err = d.mutate(ctx, ws, endpoint, func(s *store.Service) error {
		tv, err := traffic.Delete(trafficOf(s.Versions), name, newDefault)
		if err != nil {
			return err
		}
		_, i, _ := s.Version(name)
		s.Versions = append(s.Versions[:i:i], s.Versions[i+1:]...)
		applyTraffic(s.Versions, tv)
		s.State, s.Error = endpointState(*s)
		return nil
	})
	if err != nil {
		d.end(endpoint)
		return store.Operation{}, err
	}
	err = d.launch(ctx, op, func() error {
		// Route away first, so requests stop arriving before the replicas stop.
		err := d.configureFrontend(svc)
		if err == nil {
			err = d.stopUnit(svc, unit{version: v.Name})
		}
		d.opts.Registry.DropIfUnused(context.Background(), v.SourceSHA256)
		return err
	})
	if err != nil {
		d.end(endpoint)
		return store.Operation{}, err
	}
	return op, nil
}

func versionNotFound(svc store.Service, name string) error {
	names := make([]string, len(svc.Versions))
	for i, v := range svc.Versions {
		names[i] = v.Name
	}
	return errdefs.NotFound("endpoint %q has no version %q (versions: %v)", svc.Name, name, names)
}

func trafficSummary(vs []store.EndpointVersion) string {
	eff := traffic.Effective(trafficOf(vs))
	out := ""
	for i, v := range vs {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s %.4g%%", v.Name, eff[v.Name])
	}
	return out
}
