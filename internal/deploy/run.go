package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

func (d *Deployer) serviceDir(svc store.Service) string {
	return filepath.Join(d.opts.WorkDir, svc.Workspace, svc.Name)
}

func (d *Deployer) unitDir(svc store.Service, version string) string {
	return filepath.Join(d.serviceDir(svc), version)
}

// rollout brings one unit's current generation up and records the outcome.
func (d *Deployer) rollout(svc store.Service, version string, update bool) error {
	u, ok := unitOf(svc, version)
	if !ok {
		return errdefs.NotFound("version %q of %s is gone", version, svc.Name)
	}
	log := d.log.With("service", svc.Name, "version", version, "workspace", svc.Workspace, "generation", u.generation)
	err := d.apply(d.ctx, svc, u, log)
	var result error
	_, merr := d.mutate(context.Background(), svc.Workspace, svc.Name, func(cur *store.Service) error {
		now, ok := unitOf(*cur, version)
		if !ok || now.generation != u.generation {
			result = err // a newer change took over
			return nil
		}
		switch {
		case err == nil:
			setUnit(cur, version, store.StateHealthy, "", -1)
			log.Info("healthy")
		case errors.Is(err, context.Canceled) || d.ctx.Err() != nil:
			// Whatever failed, it failed because the server is stopping (a killed child, say).
			result = errors.New("interrupted by a server shutdown; it resumes when the server starts again")
			setUnit(cur, version, store.StateTransitioning, result.Error(), -1)
			return nil
		default:
			msg := err.Error()
			if update {
				msg += " (the previous generation keeps serving)"
			}
			state := store.StateFailed
			if errors.Is(err, compute.ErrUnschedulable) {
				state = store.StateUnschedulable
			}
			setUnit(cur, version, state, msg, -1)
			log.Warn("failed", "err", err)
		}
		result = err
		return nil
	})
	if err == nil {
		d.cleanOldGenerations(svc, u)
		// Traffic reaches a version only once it is Healthy.
		if latest, gerr := d.opts.Store.GetService(context.Background(), svc.Workspace, svc.Name); gerr == nil {
			if ferr := d.configureFrontend(latest); ferr != nil {
				log.Warn("route traffic to the new replicas", "err", ferr)
				d.Event(svc.Name, "%s is ready but its routing was not updated: %v (the next change retries)", version, ferr)
			}
		}
	}
	return errors.Join(result, merr)
}

// rolloutAll brings every unit of a service up, one after another.
func (d *Deployer) rolloutAll(svc store.Service) error {
	var errs []error
	for _, u := range units(svc) {
		if err := d.rollout(svc, u.version, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.version, err))
		}
	}
	return errors.Join(errs...)
}

// apply materializes a unit's files, prepares its environment and starts its replicas.
func (d *Deployer) apply(ctx context.Context, svc store.Service, u unit, log interface{ Info(string, ...any) }) error {
	ic, dc, err := specOf(u.ic, u.dc)
	if err != nil {
		return err
	}
	target, _, err := d.target(ctx, svc.Workspace, svc.ComputeTarget)
	if err != nil {
		return err
	}
	genDir := filepath.Join(d.unitDir(svc, u.version), fmt.Sprintf("g%d", u.generation))
	// A cluster gets the models as image layers straight from the registry: only the source is unpacked.
	modelDir, sourceDir, err := d.materialize(ctx, svc.Workspace, u, genDir, IsLocal(svc.ComputeTarget), ic != nil)
	if err != nil {
		return err
	}
	spec := compute.Spec{
		Key: keyOf(svc, u.version), Generation: u.generation, ModelDir: modelDir, Replicas: max(u.replicas, 1),
		MaxConcurrentRequests: deref(dc.MaxConcurrentRequestsPerContainer), MaxQueueWait: dc.MaxQueueWait(),
		ScoringTimeout: dc.ScoringTimeout(), CPU: deref(dc.ContainerResourceRequirements.CPU),
		MemoryGB: deref(dc.ContainerResourceRequirements.MemoryInGB),
		CPULimit: deref(dc.ContainerResourceRequirements.CPULimit), MemoryGBLimit: deref(dc.ContainerResourceRequirements.MemoryInGBLimit),
		GPUCores: deref(dc.GPUCores), Liveness: dc.LivenessProbeRequirements,
	}
	spec.Workers = max(spec.MaxConcurrentRequests, 1)
	for _, ref := range u.models {
		name, v, _ := strings.Cut(ref, ":")
		var version int
		fmt.Sscan(v, &version)
		m, err := d.opts.Registry.Get(ctx, svc.Workspace, name, version)
		if err != nil {
			return fmt.Errorf("model %s: %w", ref, err)
		}
		digest := m.SHA256
		spec.Models = append(spec.Models, compute.ModelArchive{Name: name, Version: v, SHA256: digest,
			Open: func() (io.ReadCloser, error) { return d.opts.Registry.OpenBlob(context.WithoutCancel(ctx), digest) }})
	}
	if ic != nil && !IsLocal(svc.ComputeTarget) {
		// On a cluster the image's base (the target's Python image) is the environment.
		spec.SourceDir, spec.EntryScript = sourceDir, ic.EntryScript
		spec.BaseImage = ic.BaseImage
		if e := ic.Environment; e != nil {
			spec.Env = e.EnvironmentVariables
			if e.Docker != nil && e.Docker.BaseImage != "" {
				spec.BaseImage = e.Docker.BaseImage
			}
		}
		if len(ic.PipPackages()) > 0 {
			d.Event(svc.Name, "%s: pip packages %v are not installed on a cluster: replicas use the Python image of compute target %s (attach with --python-image to use another)", u.version, ic.PipPackages(), svc.ComputeTarget)
		}
	} else if ic != nil {
		spec.SourceDir, spec.EntryScript = sourceDir, ic.EntryScript
		var envLog bytes.Buffer
		e, err := d.opts.Envs.Prepare(ctx, ic, &envLog)
		if err != nil {
			return fmt.Errorf("prepare the Python environment: %w", err)
		}
		spec.Python, spec.Env = e.Python, e.Vars
		log.Info("environment ready", "python", e.Python, "reused", e.Reused)
	}
	// A target that can tell a spec it cannot run says so before anything is written.
	if c, ok := target.(compute.Checker); ok {
		if err := c.Check(spec); err != nil {
			return err
		}
	}
	if err := d.configureFrontend(svc); err != nil {
		return err
	}
	return target.Apply(ctx, spec)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// materialize writes the models (azureml-models/NAME/VERSION/...) and the source directory for a
// generation. AZUREML_MODEL_DIR is NAME/VERSION for one model and azureml-models for several, as in Azure ML.
func (d *Deployer) materialize(ctx context.Context, ws string, u unit, genDir string, withModels, withSource bool) (modelDir, sourceDir string, err error) {
	tmp := genDir + ".tmp"
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	os.RemoveAll(genDir) // a half-finished earlier attempt: redo it
	if err := os.MkdirAll(filepath.Dir(genDir), 0o700); err != nil {
		return "", "", err
	}
	root := filepath.Join(tmp, "azureml-models")
	for _, ref := range u.models {
		if !withModels {
			break
		}
		name, v, _ := strings.Cut(ref, ":")
		var version int
		fmt.Sscan(v, &version)
		m, err := d.opts.Registry.Get(ctx, ws, name, version)
		if err != nil {
			return "", "", fmt.Errorf("model %s: %w", ref, err)
		}
		if err := d.unpack(ctx, m.SHA256, filepath.Join(root, name, v)); err != nil {
			return "", "", fmt.Errorf("model %s: %w", ref, err)
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", "", err
	}
	if withSource {
		if err := d.unpack(ctx, u.source, filepath.Join(tmp, "source")); err != nil {
			return "", "", fmt.Errorf("source directory: %w", err)
		}
	}
	if err := os.Rename(tmp, genDir); err != nil {
		return "", "", err
	}
	modelDir = filepath.Join(genDir, "azureml-models")
	if len(u.models) == 1 {
		name, v, _ := strings.Cut(u.models[0], ":")
		modelDir = filepath.Join(modelDir, name, v)
	}
	if withSource {
		// The archive keeps the source folder's own name as its single top-level entry.
		sourceDir = filepath.Join(genDir, "source")
		if entries, err := os.ReadDir(sourceDir); err == nil && len(entries) == 1 && entries[0].IsDir() {
			sourceDir = filepath.Join(sourceDir, entries[0].Name())
		}
	}
	return modelDir, sourceDir, nil
}

func (d *Deployer) unpack(ctx context.Context, digest, dir string) error {
	rc, err := d.opts.Registry.OpenBlob(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return archive.Unpack(rc, dir)
}

func (d *Deployer) cleanOldGenerations(svc store.Service, u unit) {
	dir := d.unitDir(svc, u.version)
	entries, _ := os.ReadDir(dir)
	keep := fmt.Sprintf("g%d", u.generation)
	for _, e := range entries {
		if e.Name() != keep {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// stopUnit stops one unit's replicas and removes its files.
func (d *Deployer) stopUnit(svc store.Service, u unit) error {
	if target, _, err := d.target(context.Background(), svc.Workspace, svc.ComputeTarget); err == nil {
		if err := target.Delete(context.Background(), keyOf(svc, u.version)); err != nil {
			return fmt.Errorf("stop replicas of %s/%s: %w", svc.Name, u.version, err)
		}
	}
	os.RemoveAll(d.unitDir(svc, u.version))
	return nil
}

// teardown stops the replicas, removes routing, files and the record.
func (d *Deployer) teardown(svc store.Service) error {
	ctx := context.Background()
	d.opts.Frontend.Remove(svc)
	for _, u := range units(svc) {
		if err := d.stopUnit(svc, u); err != nil {
			return err
		}
	}
	os.RemoveAll(d.serviceDir(svc))
	if err := d.opts.Store.DeleteService(ctx, svc.Workspace, svc.Name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	for _, u := range units(svc) {
		d.opts.Registry.DropIfUnused(ctx, u.source)
	}
	d.mu.Lock()
	delete(d.events, svc.Name)
	d.mu.Unlock()
	return nil
}

// Recover runs at server start: operations interrupted by a stop end Failed, and every service
// that was meant to run is started again from its recorded spec.
func (d *Deployer) Recover(ctx context.Context) error {
	ops, err := d.opts.Store.ListOperations(ctx, store.OpRunning)
	if err != nil {
		return err
	}
	for _, op := range ops {
		op.State, op.Error, op.UpdatedTime = store.OpFailed, "interrupted by a server restart; the service was started again from its last spec", d.opts.Now().UTC()
		if err := d.opts.Store.UpdateOperation(ctx, op); err != nil {
			return err
		}
	}
	services, err := d.opts.Store.ListServices(ctx, "")
	if err != nil {
		return err
	}
	for _, svc := range services {
		if svc.State == store.StateDeleting {
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.teardown(svc) }()
			continue
		}
		remote := !IsLocal(svc.ComputeTarget)
		if !remote {
			d.configureFrontend(svc)
		}
		var todo []string
		for _, u := range units(svc) {
			// On a cluster the replicas and the router outlived this server: leave them be.
			if remote && (u.state == store.StateHealthy || u.state == store.StateUnhealthy) {
				continue
			}
			// A unit whose model never loaded would fail the same way again.
			if u.state == store.StateFailed && !strings.Contains(u.err, "previous generation keeps serving") {
				continue
			}
			todo = append(todo, u.version)
		}
		if len(todo) == 0 {
			continue
		}
		svc, _ = d.mutate(ctx, svc.Workspace, svc.Name, func(s *store.Service) error {
			for _, v := range todo {
				setUnit(s, v, store.StateTransitioning, "", -1)
			}
			return nil
		})
		op := d.newOperation(svc.Workspace, "Restart", svc.Name)
		if err := d.begin(svc.Name, op.ID); err != nil {
			continue
		}
		d.opts.Store.CreateOperation(ctx, op)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer d.end(svc.Name)
			var errs []error
			for _, v := range todo {
				errs = append(errs, d.rollout(svc, v, false))
			}
			d.finish(op, errors.Join(errs...))
		}()
	}
	return nil
}

// Observe folds the target's view into the recorded states (Healthy <-> Unhealthy as replicas
// come and go) and returns the service with each unit's status.
func (d *Deployer) Observe(ctx context.Context, svc store.Service) (store.Service, map[string]compute.Status) {
	target, _, err := d.target(ctx, svc.Workspace, svc.ComputeTarget)
	if err != nil {
		return svc, nil
	}
	d.mu.Lock()
	_, busy := d.busy[svc.Name]
	d.mu.Unlock()
	statuses := map[string]compute.Status{}
	changes, reasons := map[string]string{}, map[string]string{}
	for _, u := range units(svc) {
		st, err := target.Status(ctx, keyOf(svc, u.version))
		if err != nil {
			continue
		}
		statuses[u.version] = st
		if busy || st.Generation != u.generation {
			continue
		}
		switch {
		case u.state == store.StateHealthy && st.Ready == 0:
			changes[u.version] = store.StateUnhealthy
			reasons[u.version] = st.Error
		case u.state == store.StateUnhealthy && st.Ready > 0:
			changes[u.version] = store.StateHealthy
		}
	}
	if len(changes) > 0 {
		updated, err := d.mutate(ctx, svc.Workspace, svc.Name, func(s *store.Service) error {
			for v, state := range changes {
				msg := ""
				if state == store.StateUnhealthy {
					msg = "no replica is ready; the supervisor is restarting them (see 'mlship service get-logs')"
					if r := reasons[v]; r != "" && !IsLocal(svc.ComputeTarget) {
						msg = "no replica is ready: " + r + " (see 'mlship service get-logs')"
					}
				}
				setUnit(s, v, state, msg, -1)
			}
			return nil
		})
		if err == nil {
			svc = updated
		}
	}
	return svc, statuses
}

// Scale records a replica count decided by the autoscaler and applies it.
func (d *Deployer) Scale(ctx context.Context, svc store.Service, version string, replicas int) error {
	u, ok := unitOf(svc, version)
	if !ok {
		return errdefs.NotFound("%s has no version %q", svc.Name, version)
	}
	target, _, err := d.target(ctx, svc.Workspace, svc.ComputeTarget)
	if err != nil {
		return err
	}
	if err := target.Scale(ctx, keyOf(svc, version), replicas); err != nil {
		return err
	}
	d.Event(svc.Name, "%s scaled from %d to %d replicas", version, u.replicas, replicas)
	_, err = d.mutate(ctx, svc.Workspace, svc.Name, func(s *store.Service) error {
		setUnit(s, version, "", "", replicas)
		return nil
	})
	return err
}

// Logs returns a unit's replica logs (the default version's for an endpoint when version is "").
func (d *Deployer) Logs(ctx context.Context, svc store.Service, version string, o compute.LogOptions) (string, error) {
	target, _, err := d.target(ctx, svc.Workspace, svc.ComputeTarget)
	if err != nil {
		return "", err
	}
	if version == "" {
		version = svc.Name
		for _, v := range svc.Versions {
			if v.IsDefault {
				version = v.Name
			}
		}
	}
	if _, ok := unitOf(svc, version); !ok {
		return "", errdefs.NotFound("%s has no version %q", svc.Name, version)
	}
	text, err := target.Logs(ctx, keyOf(svc, version), o)
	if o.Init {
		return text, err
	}
	events := d.eventText(svc.Name)
	if err != nil && events == "" {
		return "", err
	}
	return text + events, nil
}

// IsLocal reports whether a service's compute target is this machine ("" or "local").
func IsLocal(computeTarget string) bool {
	return computeTarget == "" || computeTarget == store.ComputeLocal
}
