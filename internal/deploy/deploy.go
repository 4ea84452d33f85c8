// Package deploy turns service specs into running replicas: it validates, records, and reconciles
// desired state with a compute target, tracking each change as an operation.
package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/auth"
	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/env"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/naming"
	"github.com/mlship/mlship/internal/registry"
	"github.com/mlship/mlship/internal/store"
)

// Frontend is the scoring router, as the deployer drives it.
type Frontend interface {
	// Configure (re)applies a service's auth, limits and versions; keys are plaintext. For a
	// service on a cluster it writes the cluster router's configuration, which can fail.
	Configure(ctx context.Context, svc store.Service, keys []string) error
	// Remove stops routing to a service.
	Remove(svc store.Service)
}

// Environments prepares Python interpreters for entry scripts.
type Environments interface {
	Prepare(ctx context.Context, ic *config.InferenceConfig, log io.Writer) (env.Env, error)
}

// Options wire a Deployer.
type Options struct {
	Store    store.Store
	Registry *registry.Registry
	// Targets finds a compute target by workspace and name ("local" is built in); a missing
	// one is errdefs.ErrNotFound with a hint.
	Targets  func(ctx context.Context, workspace, name string) (compute.Target, error)
	Envs     Environments
	Frontend Frontend
	Sealer   *auth.Sealer
	WorkDir  string // materialized model and source folders live here
	Logger   *slog.Logger
	Now      func() time.Time
}

// Deployer runs deploy, update and delete operations.
type Deployer struct {
	opts Options
	log  *slog.Logger
	// ctx outlives requests: operations keep running after the HTTP call that started them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	busy   map[string]string   // service name -> running operation id
	events map[string][]string // service name -> recent events
	recMu  sync.Mutex          // serializes read-modify-write of service records
}

// New returns a Deployer; call Close on shutdown.
func New(opts Options) *Deployer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Deployer{opts: opts, log: opts.Logger, ctx: ctx, cancel: cancel, busy: map[string]string{}}
}

// Close stops running operations (they end Failed on the next start if interrupted) and waits.
func (d *Deployer) Close() {
	d.cancel()
	d.wg.Wait()
}

// Request is a deploy or update, parsed.
type Request struct {
	Name          string
	Models        []string
	Inference     *config.InferenceConfig // nil: no-code
	Deployment    *config.DeploymentConfig
	ComputeTarget string
	Overwrite     bool
	Description   string
	Tags          map[string]string
	Properties    map[string]string
}

// ParseRequest validates the JSON parts of a deploy request.
func ParseRequest(name string, models []string, inference, deployment json.RawMessage) (*config.InferenceConfig, *config.DeploymentConfig, error) {
	if err := naming.Service(name); err != nil {
		return nil, nil, err
	}
	var ic *config.InferenceConfig
	if len(inference) > 0 && string(inference) != "null" {
		var err error
		if ic, err = config.ParseInference(inference, "inferenceconfig"); err != nil {
			return nil, nil, err
		}
		if ic.NoCode() {
			ic = nil
		}
	}
	dc, err := config.ParseDeployment(deployment, "deploymentconfig")
	if err != nil {
		return nil, nil, err
	}
	return ic, dc, nil
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Source is an uploaded source directory (tar) and the digest func of its upload.
type Source struct {
	Content io.Reader
	Digest  func() (string, error)
}

// checkModels resolves "name:version" references; every one must exist.
func (d *Deployer) checkModels(ctx context.Context, ws string, refs []string) ([]store.Model, error) {
	if len(refs) == 0 {
		return nil, errdefs.Invalid("no model given: pass -m NAME:VERSION (repeatable)")
	}
	var out []store.Model
	seen := map[string]bool{}
	for _, ref := range refs {
		name, v, ok := strings.Cut(ref, ":")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 {
			return nil, errdefs.Invalid("invalid model reference %q: use NAME:VERSION", ref)
		}
		if seen[name] {
			return nil, errdefs.Invalid("model %q is given twice: a service holds one version of each model", name)
		}
		seen[name] = true
		m, err := d.opts.Registry.Get(ctx, ws, name, n)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// checkNoCode allows a missing entry script only for a single ONNX model.
func checkNoCode(models []store.Model) error {
	if len(models) == 1 {
		n := 0
		for _, f := range models[0].Files {
			if strings.HasSuffix(strings.ToLower(f.Path), ".onnx") {
				n++
			}
		}
		if n == 1 {
			return nil
		}
	}
	return errdefs.Invalid("no entry script: only a single model with one .onnx file deploys without code; pass -ic inferenceconfig.json with entryScript")
}

func (d *Deployer) target(ctx context.Context, workspace, name string) (compute.Target, string, error) {
	if name == "" {
		name = "local"
	}
	t, err := d.opts.Targets(ctx, workspace, name)
	if err != nil {
		return nil, "", err
	}
	return t, name, nil
}

// begin marks a service busy with an operation; one change at a time per service.
func (d *Deployer) begin(name, opID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.busy[name]; ok {
		return errdefs.Conflict("service %q is busy with operation %s; wait for it to end", name, cur)
	}
	d.busy[name] = opID
	return nil
}

func (d *Deployer) end(name string) {
	d.mu.Lock()
	delete(d.busy, name)
	d.mu.Unlock()
}

func (d *Deployer) newOperation(ws, kind, target string) store.Operation {
	now := d.opts.Now().UTC()
	return store.Operation{ID: newID(), Workspace: ws, Kind: kind, Target: target, State: store.OpRunning, CreatedTime: now, UpdatedTime: now}
}

// launch records op and runs work in the background as its body; the service stays busy until it ends.
func (d *Deployer) launch(ctx context.Context, op store.Operation, work func() error) error {
	if err := d.opts.Store.CreateOperation(ctx, op); err != nil {
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.end(op.Target)
		d.finish(op, work())
	}()
	return nil
}

func (d *Deployer) finish(op store.Operation, err error) {
	op.State, op.Error, op.UpdatedTime = store.OpSucceeded, "", d.opts.Now().UTC()
	if err != nil {
		op.State, op.Error = store.OpFailed, err.Error()
	}
	if uerr := d.opts.Store.UpdateOperation(context.Background(), op); uerr != nil {
		d.log.Error("record operation result", "op", op.ID, "err", uerr)
	}
}

// Deploy validates a request, records the service and starts the operation that brings it up.
// A request for an existing name without Overwrite is a conflict; with Overwrite it is an update.
func (d *Deployer) Deploy(ctx context.Context, ws string, req Request, src *Source) (store.Operation, error) {
	if existing, err := d.opts.Store.GetService(ctx, ws, req.Name); err == nil {
		if !req.Overwrite {
			return store.Operation{}, errdefs.Conflict("service %q already exists in workspace %q: pass --overwrite to replace it, or use 'mlship service update'", req.Name, ws)
		}
		return d.update(ctx, existing, req, src)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return store.Operation{}, err
	}
	if _, err := d.opts.Store.GetWorkspace(ctx, ws); err != nil {
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
	_, targetName, err := d.target(ctx, ws, req.ComputeTarget)
	if err != nil {
		return store.Operation{}, err
	}
	primary, secondary, err := d.keys(req.Deployment, nil)
	if err != nil {
		return store.Operation{}, err
	}
	op := d.newOperation(ws, "Deploy", req.Name)
	if err := d.begin(req.Name, op.ID); err != nil {
		return store.Operation{}, err
	}
	started := false
	defer func() {
		if !started {
			d.end(req.Name)
		}
	}()
	sourceDigest, err := d.storeSource(ctx, req, src)
	if err != nil {
		return store.Operation{}, err
	}
	now := d.opts.Now().UTC()
	ic, _ := json.Marshal(req.Inference)
	dc, _ := json.Marshal(req.Deployment)
	svc := store.Service{
		Workspace: ws, Name: req.Name, ComputeType: store.ComputeTypeAKS, ComputeTarget: targetName, State: store.StateTransitioning,
		Models: modelRefs(models), InferenceConfig: ic, DeploymentConfig: dc, SourceSHA256: sourceDigest,
		PrimaryKey: primary, SecondaryKey: secondary, Description: firstNonEmpty(req.Description, req.Deployment.Description),
		Tags: firstMap(req.Tags, req.Deployment.Tags), Properties: firstMap(req.Properties, req.Deployment.Properties),
		Generation: 1, Replicas: initialReplicas(req.Deployment), CreatedTime: now, UpdatedTime: now,
	}
	version := svc.Name
	if req.Deployment.IsEndpoint() {
		// An endpoint starts with one version, which is its default and its control.
		version = req.Deployment.VersionName
		v, err := firstVersion(req.Deployment, version, svc)
		if err != nil {
			d.opts.Registry.DropIfUnused(ctx, sourceDigest)
			return store.Operation{}, err
		}
		svc.ComputeType, svc.Versions = store.ComputeTypeEndpoint, []store.EndpointVersion{v}
		svc.Models, svc.InferenceConfig, svc.SourceSHA256, svc.Replicas = nil, nil, "", 0
	}
	if err := d.opts.Store.CreateService(ctx, svc); err != nil {
		d.opts.Registry.DropIfUnused(ctx, sourceDigest)
		return store.Operation{}, err
	}
	if err := d.launch(ctx, op, func() error { return d.rollout(svc, version, false) }); err != nil {
		return store.Operation{}, err
	}
	started = true
	return op, nil
}

// Update rolls a service to a new spec; fields left empty in req keep their current values.
func (d *Deployer) Update(ctx context.Context, ws string, req Request, src *Source) (store.Operation, error) {
	svc, err := d.opts.Store.GetService(ctx, ws, req.Name)
	if err != nil {
		return store.Operation{}, err
	}
	return d.update(ctx, svc, req, src)
}

func (d *Deployer) update(ctx context.Context, svc store.Service, req Request, src *Source) (store.Operation, error) {
	if svc.State == store.StateDeleting {
		return store.Operation{}, errdefs.Conflict("service %q is being deleted", svc.Name)
	}
	if svc.IsEndpoint() {
		return store.Operation{}, errdefs.Invalid("%q is an endpoint: change its versions with 'mlship endpoint update-version' or create-version", svc.Name)
	}
	next := svc
	if len(req.Models) > 0 {
		models, err := d.checkModels(ctx, svc.Workspace, req.Models)
		if err != nil {
			return store.Operation{}, err
		}
		next.Models = modelRefs(models)
	}
	ic, dc, err := specOf(svc.InferenceConfig, svc.DeploymentConfig)
	if err != nil {
		return store.Operation{}, err
	}
	if req.Deployment != nil && req.Deployment.IsEndpoint() {
		return store.Operation{}, errdefs.Invalid("service %q is not an endpoint; computeType AKSENDPOINT needs a new deploy under another name", svc.Name)
	}
	if req.Inference != nil {
		ic = req.Inference
		b, _ := json.Marshal(ic)
		next.InferenceConfig = b
	}
	if req.Deployment != nil {
		dc = req.Deployment
		b, _ := json.Marshal(dc)
		next.DeploymentConfig = b
		next.Replicas = initialReplicas(dc)
	}
	if ic == nil {
		models, err := d.checkModels(ctx, svc.Workspace, next.Models)
		if err != nil {
			return store.Operation{}, err
		}
		if err := checkNoCode(models); err != nil {
			return store.Operation{}, err
		}
	}
	if req.ComputeTarget != "" && req.ComputeTarget != svc.ComputeTarget {
		return store.Operation{}, errdefs.Invalid("service %q runs on %q; moving it to %q needs a delete and a new deploy", svc.Name, svc.ComputeTarget, req.ComputeTarget)
	}
	if next.PrimaryKey, next.SecondaryKey, err = d.keys(dc, &svc); err != nil {
		return store.Operation{}, err
	}
	if req.Description != "" {
		next.Description = req.Description
	}
	if req.Tags != nil {
		next.Tags = req.Tags
	}
	if req.Properties != nil {
		next.Properties = req.Properties
	}
	op := d.newOperation(svc.Workspace, "Update", svc.Name)
	if err := d.begin(svc.Name, op.ID); err != nil {
		return store.Operation{}, err
	}
	started := false
	defer func() {
		if !started {
			d.end(svc.Name)
		}
	}()
	if src != nil {
		if next.SourceSHA256, err = d.storeSource(ctx, Request{Inference: ic}, src); err != nil {
			return store.Operation{}, err
		}
	}
	next.Generation++
	next.State, next.Error, next.UpdatedTime = store.StateTransitioning, "", d.opts.Now().UTC()
	if err := d.opts.Store.UpdateService(ctx, next); err != nil {
		return store.Operation{}, err
	}
	if next.SourceSHA256 != svc.SourceSHA256 {
		d.opts.Registry.DropIfUnused(ctx, svc.SourceSHA256)
	}
	if err := d.launch(ctx, op, func() error { return d.rollout(next, next.Name, true) }); err != nil {
		return store.Operation{}, err
	}
	started = true
	return op, nil
}

// Delete stops a service's replicas and removes it.
func (d *Deployer) Delete(ctx context.Context, ws, name string) (store.Operation, error) {
	svc, err := d.opts.Store.GetService(ctx, ws, name)
	if err != nil {
		return store.Operation{}, err
	}
	op := d.newOperation(ws, "Delete", name)
	if err := d.begin(name, op.ID); err != nil {
		return store.Operation{}, err
	}
	svc.State, svc.UpdatedTime = store.StateDeleting, d.opts.Now().UTC()
	if err := d.opts.Store.UpdateService(ctx, svc); err != nil {
		d.end(name)
		return store.Operation{}, err
	}
	if err := d.launch(ctx, op, func() error { return d.teardown(svc) }); err != nil {
		d.end(name)
		return store.Operation{}, err
	}
	return op, nil
}

// keys returns the sealed keys: the config's if given, else the existing ones, else new ones.
func (d *Deployer) keys(dc *config.DeploymentConfig, existing *store.Service) (string, string, error) {
	var primary, secondary string
	if existing != nil {
		primary, secondary = existing.PrimaryKey, existing.SecondaryKey
	}
	seal := func(given *string, cur string) (string, error) {
		if given != nil {
			return d.opts.Sealer.Seal(*given)
		}
		if cur != "" {
			return cur, nil
		}
		k, err := auth.NewKey()
		if err != nil {
			return "", err
		}
		return d.opts.Sealer.Seal(k)
	}
	var gp, gs *string
	if dc != nil && dc.Keys != nil {
		gp, gs = dc.Keys.PrimaryKey, dc.Keys.SecondaryKey
	}
	var err error
	if primary, err = seal(gp, primary); err != nil {
		return "", "", err
	}
	if secondary, err = seal(gs, secondary); err != nil {
		return "", "", err
	}
	return primary, secondary, nil
}

// PlainKeys opens a service's keys.
func (d *Deployer) PlainKeys(svc store.Service) (primary, secondary string, err error) {
	if primary, err = d.opts.Sealer.Open(svc.PrimaryKey); err != nil {
		return "", "", fmt.Errorf("service %s keys: %w", svc.Name, err)
	}
	if secondary, err = d.opts.Sealer.Open(svc.SecondaryKey); err != nil {
		return "", "", fmt.Errorf("service %s keys: %w", svc.Name, err)
	}
	return primary, secondary, nil
}

// RegenerateKey replaces one key (Primary|Secondary) with value or a new random key; the old one stops working at once.
func (d *Deployer) RegenerateKey(ctx context.Context, ws, name, which, value string) (store.Service, error) {
	svc, err := d.opts.Store.GetService(ctx, ws, name)
	if err != nil {
		return svc, err
	}
	if value == "" {
		if value, err = auth.NewKey(); err != nil {
			return svc, err
		}
	} else if strings.TrimSpace(value) != value || len(value) < 8 {
		return svc, errdefs.Invalid("key value must be at least 8 characters without surrounding spaces")
	}
	sealed, err := d.opts.Sealer.Seal(value)
	if err != nil {
		return svc, err
	}
	svc, err = d.mutate(ctx, ws, name, func(s *store.Service) error {
		switch strings.ToLower(which) {
		case "primary":
			s.PrimaryKey = sealed
		case "secondary":
			s.SecondaryKey = sealed
		default:
			return errdefs.Invalid("invalid key type %q: use Primary or Secondary", which)
		}
		return nil
	})
	if err != nil {
		return svc, err
	}
	return svc, d.configureFrontend(svc)
}

func (d *Deployer) configureFrontend(svc store.Service) error {
	p, s, err := d.PlainKeys(svc)
	if err != nil {
		return err
	}
	return d.opts.Frontend.Configure(d.ctx, svc, []string{p, s})
}

// specOf decodes stored configs; a nil inference config means a no-code model.
func specOf(icRaw, dcRaw json.RawMessage) (*config.InferenceConfig, *config.DeploymentConfig, error) {
	var ic *config.InferenceConfig
	if len(icRaw) > 0 && string(icRaw) != "null" {
		ic = &config.InferenceConfig{}
		if err := json.Unmarshal(icRaw, ic); err != nil {
			return nil, nil, fmt.Errorf("stored inference config: %w", err)
		}
		if ic.NoCode() {
			ic = nil
		}
	}
	dc := config.DefaultDeployment()
	if len(dcRaw) > 0 && string(dcRaw) != "null" {
		dc = &config.DeploymentConfig{}
		if err := json.Unmarshal(dcRaw, dc); err != nil {
			return nil, nil, fmt.Errorf("stored deployment config: %w", err)
		}
	}
	return ic, dc, nil
}

// DeploymentConfigOf decodes a service's deployment config (an endpoint's: the one it was created
// with, which sets its auth).
func DeploymentConfigOf(raw json.RawMessage) *config.DeploymentConfig {
	_, dc, err := specOf(nil, raw)
	if err != nil {
		return config.DefaultDeployment()
	}
	return dc
}

// storeSource saves the uploaded source directory; its entry script must be in it.
func (d *Deployer) storeSource(ctx context.Context, req Request, src *Source) (string, error) {
	if req.Inference == nil {
		if src != nil {
			io.Copy(io.Discard, src.Content)
		}
		return "", nil
	}
	if src == nil {
		return "", errdefs.Invalid("entry script %q needs its source directory uploaded (the CLI sends sourceDirectory, or the entry script's folder)", req.Inference.EntryScript)
	}
	digest, files, err := d.opts.Registry.StoreArchive(ctx, src.Content, src.Digest)
	if err != nil {
		return "", fmt.Errorf("source directory: %w", err)
	}
	// The archive's single top-level folder is the source directory itself.
	want := path.Clean(strings.TrimPrefix(req.Inference.EntryScript, "./"))
	for _, f := range files {
		if _, rel, ok := strings.Cut(f.Path, "/"); ok && rel == want {
			return digest, nil
		}
	}
	d.opts.Registry.DropIfUnused(ctx, digest)
	return "", errdefs.Invalid("entry script %q is not in the uploaded source directory", req.Inference.EntryScript)
}

func modelRefs(ms []store.Model) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprintf("%s:%d", m.Name, m.Version)
	}
	return out
}

func initialReplicas(dc *config.DeploymentConfig) int {
	if dc.NumReplicas != nil {
		return *dc.NumReplicas
	}
	lo, _ := dc.Replicas()
	return lo
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func firstMap(a, b map[string]string) map[string]string {
	if a != nil {
		return a
	}
	return b
}
