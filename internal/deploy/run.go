package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// Key is the compute key of a plain service.
func Key(svc store.Service) compute.Key {
	return compute.Key{Workspace: svc.Workspace, Service: svc.Name, Version: svc.Name}
}

func (d *Deployer) serviceDir(svc store.Service) string {
	return filepath.Join(d.opts.WorkDir, svc.Workspace, svc.Name)
}

// rollout brings svc's current generation up and records the outcome on the service.
func (d *Deployer) rollout(svc store.Service, update bool) error {
	ctx := d.ctx
	log := d.log.With("service", svc.Name, "workspace", svc.Workspace, "generation", svc.Generation)
	err := d.apply(ctx, svc, log)
	cur, gerr := d.opts.Store.GetService(context.Background(), svc.Workspace, svc.Name)
	if gerr != nil {
		return errors.Join(err, gerr)
	}
	if cur.Generation != svc.Generation {
		return err // a newer change took over
	}
	cur.UpdatedTime = d.opts.Now().UTC()
	switch {
	case err == nil:
		cur.State, cur.Error = store.StateHealthy, ""
		log.Info("service healthy")
		d.cleanOldGenerations(svc)
	case errors.Is(err, context.Canceled):
		err = errors.New("interrupted by a server shutdown; it resumes when the server starts again")
		cur.Error = err.Error()
	default:
		cur.State, cur.Error = store.StateFailed, err.Error()
		if update {
			cur.Error += " (the previous generation keeps serving)"
		}
		log.Warn("service failed", "err", err)
	}
	if uerr := d.opts.Store.UpdateService(context.Background(), cur); uerr != nil {
		return errors.Join(err, uerr)
	}
	return err
}

// apply materializes the service's files, prepares its environment and starts its replicas.
func (d *Deployer) apply(ctx context.Context, svc store.Service, log interface{ Info(string, ...any) }) error {
	ic, dc, err := d.specOf(svc)
	if err != nil {
		return err
	}
	target, _, err := d.target(svc.ComputeTarget)
	if err != nil {
		return err
	}
	genDir := filepath.Join(d.serviceDir(svc), fmt.Sprintf("g%d", svc.Generation))
	modelDir, sourceDir, err := d.materialize(ctx, svc, genDir, ic != nil)
	if err != nil {
		return err
	}
	spec := compute.Spec{
		Key: Key(svc), Generation: svc.Generation, ModelDir: modelDir, Replicas: max(svc.Replicas, 1),
		MaxConcurrentRequests: deref(dc.MaxConcurrentRequestsPerContainer), MaxQueueWait: dc.MaxQueueWait(),
		ScoringTimeout: dc.ScoringTimeout(), CPU: deref(dc.ContainerResourceRequirements.CPU),
		MemoryGB: deref(dc.ContainerResourceRequirements.MemoryInGB),
	}
	spec.Workers = max(spec.MaxConcurrentRequests, 1)
	if ic != nil {
		spec.SourceDir, spec.EntryScript = sourceDir, ic.EntryScript
		var envLog bytes.Buffer
		e, err := d.opts.Envs.Prepare(ctx, ic, &envLog)
		if err != nil {
			return fmt.Errorf("prepare the Python environment: %w", err)
		}
		spec.Python, spec.Env = e.Python, e.Vars
		log.Info("environment ready", "python", e.Python, "reused", e.Reused)
	}
	if err := d.configureFrontend(svc); err != nil {
		return err
	}
	_ = dc
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
func (d *Deployer) materialize(ctx context.Context, svc store.Service, genDir string, withSource bool) (modelDir, sourceDir string, err error) {
	tmp := genDir + ".tmp"
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	if _, err := os.Stat(genDir); err == nil {
		os.RemoveAll(genDir) // a half-finished earlier attempt: redo it
	}
	root := filepath.Join(tmp, "azureml-models")
	for _, ref := range svc.Models {
		name, v, _ := strings.Cut(ref, ":")
		var version int
		fmt.Sscan(v, &version)
		m, err := d.opts.Registry.Get(ctx, svc.Workspace, name, version)
		if err != nil {
			return "", "", fmt.Errorf("model %s: %w", ref, err)
		}
		if err := d.unpack(ctx, m.SHA256, filepath.Join(root, name, v)); err != nil {
			return "", "", fmt.Errorf("model %s: %w", ref, err)
		}
	}
	if withSource {
		if err := d.unpack(ctx, svc.SourceSHA256, filepath.Join(tmp, "source")); err != nil {
			return "", "", fmt.Errorf("source directory: %w", err)
		}
	}
	if err := os.Rename(tmp, genDir); err != nil {
		return "", "", err
	}
	modelDir = filepath.Join(genDir, "azureml-models")
	if len(svc.Models) == 1 {
		name, v, _ := strings.Cut(svc.Models[0], ":")
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

func (d *Deployer) cleanOldGenerations(svc store.Service) {
	entries, _ := os.ReadDir(d.serviceDir(svc))
	keep := fmt.Sprintf("g%d", svc.Generation)
	for _, e := range entries {
		if e.Name() != keep {
			os.RemoveAll(filepath.Join(d.serviceDir(svc), e.Name()))
		}
	}
}

// teardown stops the replicas, removes routing, files and the record.
func (d *Deployer) teardown(svc store.Service) error {
	ctx := context.Background()
	d.opts.Frontend.Remove(svc)
	if target, _, err := d.target(svc.ComputeTarget); err == nil {
		if err := target.Delete(ctx, Key(svc)); err != nil {
			return fmt.Errorf("stop replicas of %s: %w", svc.Name, err)
		}
	}
	os.RemoveAll(d.serviceDir(svc))
	if err := d.opts.Store.DeleteService(ctx, svc.Workspace, svc.Name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	d.opts.Registry.DropIfUnused(ctx, svc.SourceSHA256)
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
		switch {
		case svc.State == store.StateDeleting:
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.teardown(svc) }()
		case svc.State == store.StateFailed && !strings.Contains(svc.Error, "previous generation keeps serving"):
			// It never came up; starting it again would fail the same way.
			d.configureFrontend(svc)
		default:
			svc.State, svc.UpdatedTime = store.StateTransitioning, d.opts.Now().UTC()
			d.opts.Store.UpdateService(ctx, svc)
			op := d.newOperation(svc.Workspace, "Restart", svc.Name)
			if err := d.begin(svc.Name, op.ID); err != nil {
				continue
			}
			d.opts.Store.CreateOperation(ctx, op)
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer d.end(svc.Name)
				d.finish(op, d.rollout(svc, false))
			}()
		}
	}
	return nil
}

// Observe folds a target's view into the service's state: Healthy ↔ Unhealthy as replicas come and go.
func (d *Deployer) Observe(ctx context.Context, svc store.Service) (store.Service, compute.Status) {
	target, _, err := d.target(svc.ComputeTarget)
	if err != nil {
		return svc, compute.Status{}
	}
	st, err := target.Status(ctx, Key(svc))
	if err != nil {
		return svc, compute.Status{}
	}
	d.mu.Lock()
	_, busy := d.busy[svc.Name]
	d.mu.Unlock()
	if busy || st.Generation != svc.Generation {
		return svc, st
	}
	next := svc.State
	switch {
	case svc.State == store.StateHealthy && st.Ready == 0:
		next = store.StateUnhealthy
	case svc.State == store.StateUnhealthy && st.Ready > 0:
		next = store.StateHealthy
	}
	if next != svc.State {
		svc.State, svc.UpdatedTime = next, d.opts.Now().UTC()
		if next == store.StateUnhealthy {
			svc.Error = "no replica is ready; the supervisor is restarting them (see 'mlship service get-logs')"
		} else {
			svc.Error = ""
		}
		d.opts.Store.UpdateService(ctx, svc)
	}
	return svc, st
}

// Scale records a replica count decided by the autoscaler and applies it.
func (d *Deployer) Scale(ctx context.Context, svc store.Service, replicas int) error {
	target, _, err := d.target(svc.ComputeTarget)
	if err != nil {
		return err
	}
	if err := target.Scale(ctx, Key(svc), replicas); err != nil {
		return err
	}
	d.Event(svc.Name, "scaled from %d to %d replicas", svc.Replicas, replicas)
	cur, err := d.opts.Store.GetService(ctx, svc.Workspace, svc.Name)
	if err != nil {
		return err
	}
	cur.Replicas = replicas
	return d.opts.Store.UpdateService(ctx, cur)
}

// Logs returns a service's replica logs.
func (d *Deployer) Logs(ctx context.Context, svc store.Service, o compute.LogOptions) (string, error) {
	target, _, err := d.target(svc.ComputeTarget)
	if err != nil {
		return "", err
	}
	text, err := target.Logs(ctx, Key(svc), o)
	if o.Init {
		return text, err
	}
	events := d.eventText(svc.Name)
	if err != nil && events == "" {
		return "", err
	}
	return text + events, nil
}
