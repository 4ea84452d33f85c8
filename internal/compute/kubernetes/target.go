package kubernetes

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/compute/kubernetes/image"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// TargetConfig configures a Kubernetes compute target.
type TargetConfig struct {
	Kubeconfig []byte
	Context    string // kubeconfig context; "" = current
	Namespace  string // "" = the context's, else "default"

	Registry         string // host:port[/prefix] images are pushed to (and pulled from by the nodes)
	RegistryInsecure bool   // plain HTTP

	PythonImage string // base image for models with an entry script
	ONNXImage   string // base image for no-code models; "" = PythonImage
	// Python is the interpreter inside PythonImage; default /usr/bin/python3.
	Python string
	// Binary is the path of a static linux mlship binary put into every image.
	Binary string
	// TokenKey verifies the access tokens of the namespace's services in the router
	// (auth.ScopedTokenKey); needed by ConfigureService and EnsureRouter.
	TokenKey []byte
	// NodeSelector pins replica pods (e.g. kubernetes.io/hostname of a real node); nil = anywhere.
	NodeSelector map[string]string

	Logger *slog.Logger
	// OnReplicas is told whenever the replica set of a key changes (the router's view).
	OnReplicas compute.ReplicaWatcher
	// PollInterval of the replica watcher and of Apply's and Delete's waits; default 250 ms.
	PollInterval time.Duration
}

// Target is a compute.Target running replicas as Deployments on a Kubernetes cluster.
type Target struct {
	cfg       TargetConfig
	cs        kubernetes.Interface
	namespace string

	mu       sync.Mutex
	watchers map[compute.Key]context.CancelFunc
	last     map[compute.Key][]compute.Replica
	lastErr  map[compute.Key]string // the last failed Apply's reason, when it was rolled back
	wg       sync.WaitGroup
	// watchReplicas: someone asked for OnReplicas (an in-process router); the cluster's own
	// router reads EndpointSlices, and polling pods per key would only load the API server.
	watchReplicas bool

	cache replicaCache

	routerMu     sync.Mutex
	routerReady  bool   // the router's objects were applied by this Target
	scoringBase  string // found once the router's Service has an address
	scoringErr   error  // the last failure to find it, and when
	scoringErrAt time.Time
}

var (
	_ compute.Target  = (*Target)(nil)
	_ compute.Checker = (*Target)(nil)
)

// NewTarget connects to the cluster in cfg.Kubeconfig (nothing is called until the first use).
func NewTarget(cfg TargetConfig) (*Target, error) {
	rc, info, err := Config(cfg.Kubeconfig, cfg.Context, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	if rc.Timeout == 0 {
		// No call of the target waits on the server side: a hung API server must not hang
		// an operation (or a server start) forever.
		rc.Timeout = 30 * time.Second
	}

	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if cfg.Registry == "" {
		return nil, errdefs.Invalid("kubernetes target: no registry")
	}
	if cfg.PythonImage == "" {
		return nil, errdefs.Invalid("kubernetes target: no Python base image")
	}
	if cfg.Binary == "" {
		return nil, errdefs.Invalid("kubernetes target: no mlship binary")
	}
	if cfg.ONNXImage == "" {
		cfg.ONNXImage = cfg.PythonImage
	}
	if cfg.Python == "" {
		cfg.Python = "/usr/bin/python3"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	watch := cfg.OnReplicas != nil
	if cfg.OnReplicas == nil {
		cfg.OnReplicas = func(compute.Key, []compute.Replica) {}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	return &Target{
		cfg: cfg, cs: cs, namespace: info.Namespace, watchReplicas: watch,
		watchers: map[compute.Key]context.CancelFunc{},
		last:     map[compute.Key][]compute.Replica{},
		lastErr:  map[compute.Key]string{},
	}, nil
}

// Namespace is the namespace the target works in.
func (t *Target) Namespace() string { return t.namespace }

// Close stops the replica watchers (the replicas keep running).
func (t *Target) Close() {
	t.mu.Lock()
	for k, cancel := range t.watchers {
		cancel()
		delete(t.watchers, k)
	}
	t.mu.Unlock()
	t.wg.Wait()
	t.cache.close()
}

// Apply implements compute.Target.
func (t *Target) Apply(ctx context.Context, spec compute.Spec) error {
	start := time.Now()
	name, err := resources.ReplicaName(spec.Key)
	if err != nil {
		return err
	}
	if spec.ModelDir == "" {
		return errdefs.Invalid("replicas of %s: no model directory", spec.Key)
	}
	log := t.cfg.Logger.With("key", spec.Key.String(), "generation", spec.Generation)

	// 1. The image: binary, source and the model folder.
	if spec.SourceDir == "" {
		if err := checkONNXBinary(t.cfg.Binary); err != nil {
			return err
		}
	}
	in := image.Input{Binary: t.cfg.Binary, Base: t.cfg.ONNXImage}
	podSpec := spec
	podSpec.Python = ""
	if spec.SourceDir != "" {
		in.Base = t.cfg.PythonImage
		if spec.BaseImage != "" {
			in.Base = spec.BaseImage // the inference config's; it must have Python at the target's interpreter path
		}
		in.Source = image.Source{Dir: spec.SourceDir}
		in.EntryScript = spec.EntryScript
		podSpec.SourceDir = image.SourceDir
		podSpec.Python = t.cfg.Python
	}
	if len(spec.Models) > 0 {
		// Registered versions, each its own layer at azureml-models/NAME/VERSION; AZUREML_MODEL_DIR
		// is that folder for one model and azureml-models for several, as locally and in Azure ML.
		for _, m := range spec.Models {
			in.Models = append(in.Models, image.Model{Name: m.Name, Version: m.Version, SHA256: m.SHA256, Open: m.Open})
		}
		podSpec.ModelDir = image.ModelsDir
		if len(spec.Models) == 1 {
			podSpec.ModelDir = path.Join(image.ModelsDir, spec.Models[0].Name, spec.Models[0].Version)
		}
	} else {
		model, modelDir, err := modelFromDir(spec.ModelDir)
		if err != nil {
			return err
		}
		in.Models = []image.Model{model}
		podSpec.ModelDir = modelDir
	}
	img, err := image.Build(ctx, in, image.Options{
		Registry: t.cfg.Registry, Repository: ReplicaRepository, Insecure: t.cfg.RegistryInsecure, Logger: t.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("image of %s: %w", spec.Key, err)
	}
	log.Info("image ready", "ref", img.Ref, "reused", img.Reused, "took", time.Since(start).Round(time.Millisecond))

	// 2. The owner ConfigMap (service.json). Keys are not in compute.Spec: no key Secret yet.
	owner, err := t.applyOwner(ctx, spec, name)
	if err != nil {
		return err
	}

	// 3. The Deployment and its Service.
	d, err := resources.Replica(resources.ReplicaInput{
		Namespace: t.namespace, Spec: podSpec, Image: img.Pinned(), Owner: owner, Liveness: spec.Liveness,
		Limits: resources.ResourceLimits{CPU: spec.CPULimit, MemoryGB: spec.MemoryGBLimit, GPUCores: spec.GPUCores},
	})
	if err != nil {
		return err
	}
	if len(t.cfg.NodeSelector) > 0 {
		d.Spec.Template.Spec.NodeSelector = t.cfg.NodeSelector
	}
	prev, err := t.applyDeployment(ctx, d)
	if err != nil {
		return err
	}
	svc, err := resources.Service(t.namespace, spec.Key, owner)
	if err != nil {
		return err
	}
	if err := t.applyService(ctx, svc); err != nil {
		return err
	}
	t.watch(spec.Key)

	// 4. Wait for the rollout.
	err = t.waitRollout(ctx, spec.Key, name, spec.Generation)
	if err != nil {
		t.mu.Lock()
		t.lastErr[spec.Key] = err.Error()
		t.mu.Unlock()
		if prev != nil && ctx.Err() == nil {
			// Put the previous generation back: its replicas never stopped (maxUnavailable 0).
			if rerr := t.rollback(context.WithoutCancel(ctx), name, prev); rerr != nil {
				log.Warn("rollback failed", "err", rerr)
			} else {
				log.Info("rolled back to the previous generation", "generation", prev.Annotations[resources.AnnotationGeneration])
			}
		}
		return err
	}
	if prev != nil && spec.Replicas > 0 && (prev.Spec.Replicas == nil || int(*prev.Spec.Replicas) != spec.Replicas) {
		if err := t.Scale(ctx, spec.Key, spec.Replicas); err != nil {
			return err
		}
		if err := t.waitRollout(ctx, spec.Key, name, spec.Generation); err != nil {
			return err
		}
	}
	t.mu.Lock()
	delete(t.lastErr, spec.Key)
	t.mu.Unlock()
	t.refresh(context.WithoutCancel(ctx), spec.Key)
	log.Info("replicas ready", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// modelFromDir makes a model layer of a local folder (one layer, at azureml-models/NAME/1/NAME),
// and returns the model directory in the image.
func modelFromDir(dir string) (image.Model, string, error) {
	base := strings.ToLower(filepath.Base(filepath.Clean(dir)))
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, base)
	if base == "" || base[0] == '.' || base[0] == '-' || base[0] == '_' {
		base = "model" + base
	}
	data, err := tarDir(dir, base)
	if err != nil {
		return image.Model{}, "", fmt.Errorf("model folder %s: %w", dir, err)
	}
	sum := sha256.Sum256(data)
	m := image.Model{Name: base, Version: "1", SHA256: hex.EncodeToString(sum[:]),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
	return m, path.Join(image.ModelsDir, base, "1"), nil
}

// tarDir writes dir as a tar stream with names under prefix; an empty folder gets a placeholder file.
func tarDir(dir, prefix string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := 0
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: time.Unix(0, 0)})
		case info.Mode().IsRegular():
			files++
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: info.Size(), ModTime: time.Unix(0, 0)}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil // symlinks and special files are left out
	})
	if err != nil {
		return nil, err
	}
	if files == 0 {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(prefix, ".mlship-empty"), Mode: 0o644, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// applyOwner creates or updates the service's owner ConfigMap, with key's version in service.json.
func (t *Target) applyOwner(ctx context.Context, spec compute.Spec, replicaName string) (*corev1.ConfigMap, error) {
	cmName, err := resources.ServiceConfigName(spec.Service)
	if err != nil {
		return nil, err
	}
	version := spec.Version
	if version == "" {
		version = spec.Service
	}
	vc := resources.VersionConfig{Name: version, Replicas: replicaName, Scale: resources.ScaleConfig{NumReplicas: spec.Replicas}}
	var out *corev1.ConfigMap
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := t.cs.CoreV1().ConfigMaps(t.namespace).Get(ctx, cmName, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		sc := &resources.ServiceConfig{APIVersion: resources.ServiceConfigVersion, Workspace: spec.Workspace, Name: spec.Service}
		if err == nil {
			if old, perr := resources.ServiceConfigFrom(cur); perr == nil {
				sc = old
			}
		}
		replaced := false
		for i, v := range sc.Versions {
			if v.Name == version {
				// ConfigureService wrote this version's routing and scale settings: keep them.
				sc.Versions[i].Replicas, replaced = replicaName, true
			}
		}
		if !replaced {
			if len(sc.Versions) == 0 {
				vc.TrafficPercentile, vc.IsDefault = 100, true
			}
			sc.Versions = append(sc.Versions, vc)
		}
		cm, err := resources.ServiceConfigMap(t.namespace, sc)
		if err != nil {
			return err
		}
		if cur == nil || cur.Name == "" {
			out, err = t.cs.CoreV1().ConfigMaps(t.namespace).Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), cmName, err)
			}
			return err
		}
		cm.ResourceVersion = cur.ResourceVersion
		out, err = t.cs.CoreV1().ConfigMaps(t.namespace).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("owner configmap %s: %w", cmName, err)
	}
	return out, nil
}

// applyDeployment creates or replaces d, and returns the Deployment it replaced (nil if new).
func (t *Target) applyDeployment(ctx context.Context, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	var prev *appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		api := t.cs.AppsV1().Deployments(t.namespace)
		cur, err := api.Get(ctx, d.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			prev = nil
			_, err = api.Create(ctx, d, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(appsv1.Resource("deployments"), d.Name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		prev = cur.DeepCopy()
		nd := d.DeepCopy()
		nd.ResourceVersion = cur.ResourceVersion
		// The new generation rolls out at the current count, so a failing one leaves the old
		// replicas as they were; Apply scales to the spec's count once it is ready.
		nd.Spec.Replicas = cur.Spec.Replicas
		_, err = api.Update(ctx, nd, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("deployment %s: %w", d.Name, err)
	}
	return prev, nil
}

// rollback puts prev's pod template (and generation annotation) back on the Deployment, and
// waits until the watches show it, so Status reports the generation that serves.
func (t *Target) rollback(ctx context.Context, name string, prev *appsv1.Deployment) error {
	if err := t.restore(ctx, name, prev); err != nil {
		return err
	}
	if c, ok := t.listers(); ok {
		want := generationOf(prev)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if d, err := c.deployments.Get(name); err == nil && generationOf(d) == want {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func (t *Target) restore(ctx context.Context, name string, prev *appsv1.Deployment) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		api := t.cs.AppsV1().Deployments(t.namespace)
		cur, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Template = prev.Spec.Template
		cur.Labels = prev.Labels
		cur.Annotations = prev.Annotations
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

func (t *Target) applyService(ctx context.Context, svc *corev1.Service) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		api := t.cs.CoreV1().Services(t.namespace)
		cur, err := api.Get(ctx, svc.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = api.Create(ctx, svc, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("services"), svc.Name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		// Keep the allocated cluster IPs; take labels, owner and ports from the new object.
		cur.Labels, cur.Annotations, cur.OwnerReferences = svc.Labels, svc.Annotations, svc.OwnerReferences
		cur.Spec.Selector, cur.Spec.Ports = svc.Spec.Selector, svc.Spec.Ports
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// waitRollout waits until the Deployment's generation gen is rolled out and ready, or fails.
func (t *Target) waitRollout(ctx context.Context, key compute.Key, name string, gen int64) error {
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	for {
		d, pods, cached, err := t.deploymentAndPods(ctx, name)
		if cached && apierrors.IsNotFound(err) {
			// Just created: the watch has not delivered it yet.
			select {
			case <-ctx.Done():
				return fmt.Errorf("replicas of %s (generation %d) not ready: %w", key, gen, ctx.Err())
			case <-tick.C:
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("replicas of %s: %w", key, ctx.Err())
			}
			return fmt.Errorf("deployment %s: %w", name, err)
		}
		cur := podsOfGeneration(pods, gen)
		if st, reason := t.failure(ctx, cur); st != "" {
			msg := fmt.Sprintf("replicas of %s (generation %d): %s", key, gen, reason)
			if st == store.StateUnschedulable {
				return compute.Unschedulable(msg)
			}
			return errors.New(msg)
		}
		if rolledOut(d, gen) && countReady(cur) >= desired(d) {
			return nil
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
				return fmt.Errorf("replicas of %s (generation %d): %s", key, gen, c.Message)
			}
			if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
				return fmt.Errorf("replicas of %s (generation %d): %s", key, gen, c.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas of %s (generation %d) not ready: %w", key, gen, ctx.Err())
		case <-tick.C:
		}
	}
}

func desired(d *appsv1.Deployment) int {
	if d.Spec.Replicas == nil {
		return 1
	}
	return int(*d.Spec.Replicas)
}

func generationOf(d *appsv1.Deployment) int64 {
	var g int64
	fmt.Sscan(d.Annotations[resources.AnnotationGeneration], &g)
	return g
}

// rolledOut is kubectl rollout status's test, for the Deployment carrying generation gen.
func rolledOut(d *appsv1.Deployment, gen int64) bool {
	n := int32(desired(d))
	s := d.Status
	return generationOf(d) == gen && s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == n && s.Replicas == n && s.ReadyReplicas >= n && s.AvailableReplicas >= n
}

func (t *Target) pods(ctx context.Context, d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, err
	}
	l, err := t.cs.CoreV1().Pods(t.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("pods of %s: %w", d.Name, err)
	}
	sort.Slice(l.Items, func(i, j int) bool {
		a, b := l.Items[i].CreationTimestamp, l.Items[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return l.Items[i].Name < l.Items[j].Name
	})
	return l.Items, nil
}

// deploymentAndPods reads a replica Deployment and its pods from the watches once they synced
// (cached true), else from the API server.
func (t *Target) deploymentAndPods(ctx context.Context, name string) (d *appsv1.Deployment, pods []corev1.Pod, cached bool, err error) {
	if c, ok := t.listers(); ok {
		if d, err = c.deployments.Get(name); err != nil {
			return nil, nil, true, err
		}
		pods, err = c.cachedPods(d)
		return d, pods, true, err
	}
	if d, err = t.cs.AppsV1().Deployments(t.namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
		return nil, nil, false, err
	}
	pods, err = t.pods(ctx, d)
	return d, pods, false, err
}

// podsOfGeneration keeps the pods of gen that are not terminating.
func podsOfGeneration(pods []corev1.Pod, gen int64) []corev1.Pod {
	g := fmt.Sprint(gen)
	var out []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Labels[resources.LabelGeneration] == g {
			out = append(out, p)
		}
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func countReady(pods []corev1.Pod) int {
	n := 0
	for i := range pods {
		if podReady(&pods[i]) {
			n++
		}
	}
	return n
}

var failedWaiting = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": false, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true, "ErrImageNeverPull": true,
}

// failure looks for a reason pods cannot become ready: it returns store.StateFailed or
// store.StateUnschedulable and the reason (with the container's last log lines for a crash).
func (t *Target) failure(ctx context.Context, pods []corev1.Pod) (state, reason string) {
	for i := range pods {
		p := &pods[i]
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return store.StateUnschedulable, "pod " + p.Name + " cannot be scheduled: " + c.Message
			}
		}
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, cs := range statuses {
			var term *corev1.ContainerStateTerminated
			previous := false
			switch {
			case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
				term = cs.State.Terminated
			case cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode != 0:
				term, previous = cs.LastTerminationState.Terminated, true
			}
			if term != nil {
				msg := fmt.Sprintf("container %s of pod %s exited with code %d", cs.Name, p.Name, term.ExitCode)
				if term.Reason != "" && term.Reason != "Error" {
					msg += " (" + term.Reason + ")"
				}
				if tail := t.podLogs(ctx, p.Name, cs.Name, previous, 20); tail != "" {
					msg += "; last log lines:\n" + strings.TrimRight(tail, "\n")
				} else if term.Message != "" {
					msg += ": " + strings.TrimSpace(term.Message)
				}
				return store.StateFailed, msg
			}
			if w := cs.State.Waiting; w != nil && failedWaiting[w.Reason] {
				return store.StateFailed, fmt.Sprintf("container %s of pod %s: %s: %s", cs.Name, p.Name, w.Reason, w.Message)
			}
		}
	}
	return "", ""
}

func (t *Target) podLogs(ctx context.Context, pod, container string, previous bool, tail int) string {
	o := &corev1.PodLogOptions{Container: container, Previous: previous}
	if tail > 0 {
		o.TailLines = ptrTo(int64(tail))
	}
	b, err := t.cs.CoreV1().Pods(t.namespace).GetLogs(pod, o).DoRaw(ctx)
	if err != nil {
		return ""
	}
	return string(b)
}

func ptrTo[T any](v T) *T { return &v }

// replicasOf is the router's view: the pods that are not terminating and have an IP.
func replicasOf(pods []corev1.Pod) []compute.Replica {
	var out []compute.Replica
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, compute.Replica{
			ID: p.Name, URL: fmt.Sprintf("http://%s:%d", p.Status.PodIP, resources.ScoringPort), Ready: podReady(p),
		})
	}
	return out
}

// watch starts polling key's pods for the replica watcher, once.
func (t *Target) watch(key compute.Key) {
	if !t.watchReplicas {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.watchers[key]; ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.watchers[key] = cancel
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(t.cfg.PollInterval)
		defer tick.Stop()
		for {
			t.refresh(ctx, key)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

var errGone = errors.New("gone")

// refresh lists key's pods and tells the watcher if its replica set changed.
func (t *Target) refresh(ctx context.Context, key compute.Key) {
	reps, err := t.currentReplicas(ctx, key)
	if err != nil && !errors.Is(err, errGone) {
		return
	}
	t.mu.Lock()
	if ctx.Err() != nil { // stopped (Delete reports the empty set itself)
		t.mu.Unlock()
		return
	}
	if sameReplicas(t.last[key], reps) {
		t.mu.Unlock()
		return
	}
	t.last[key] = reps
	t.mu.Unlock()
	t.cfg.OnReplicas(key, reps)
}

func (t *Target) currentReplicas(ctx context.Context, key compute.Key) ([]compute.Replica, error) {
	name, err := resources.ReplicaName(key)
	if err != nil {
		return nil, err
	}
	d, err := t.cs.AppsV1().Deployments(t.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errGone
	}
	if err != nil {
		return nil, err
	}
	pods, err := t.pods(ctx, d)
	if err != nil {
		return nil, err
	}
	return replicasOf(pods), nil
}

func sameReplicas(a, b []compute.Replica) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Scale implements compute.Target, through the Deployment's scale subresource.
func (t *Target) Scale(ctx context.Context, key compute.Key, replicas int) error {
	name, err := resources.ReplicaName(key)
	if err != nil {
		return err
	}
	if replicas < 1 {
		return errdefs.Invalid("scale %s to %d: at least 1 replica", key, replicas)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		api := t.cs.AppsV1().Deployments(t.namespace)
		sc, err := api.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = int32(replicas)
		_, err = api.UpdateScale(ctx, name, &autoscalingv1.Scale{ObjectMeta: sc.ObjectMeta, Spec: sc.Spec}, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return errdefs.NotFound("replicas of %s not found", key)
	}
	if err != nil {
		return fmt.Errorf("scale %s: %w", key, err)
	}
	t.watch(key)
	return nil
}

// Status implements compute.Target.
func (t *Target) Status(ctx context.Context, key compute.Key) (compute.Status, error) {
	name, err := resources.ReplicaName(key)
	if err != nil {
		return compute.Status{}, err
	}
	d, pods, _, err := t.deploymentAndPods(ctx, name)
	if apierrors.IsNotFound(err) {
		return compute.Status{}, errdefs.NotFound("replicas of %s not found", key)
	}
	if err != nil {
		return compute.Status{}, fmt.Errorf("status of %s: %w", key, err)
	}
	gen := generationOf(d)
	cur := podsOfGeneration(pods, gen)
	st := compute.Status{Generation: gen, Desired: desired(d), Ready: countReady(cur), Replicas: replicasOf(pods)}
	if d.DeletionTimestamp != nil {
		st.State = store.StateDeleting
		return st, nil
	}
	if state, reason := t.failure(ctx, cur); state != "" {
		st.State, st.Error = state, reason
		return st, nil
	}
	switch {
	case rolledOut(d, gen) && st.Ready >= st.Desired:
		st.State = store.StateHealthy
	case d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas < int32(st.Desired) || d.Status.Replicas > d.Status.UpdatedReplicas:
		st.State = store.StateTransitioning
	default:
		st.State = store.StateUnhealthy
		st.Error = fmt.Sprintf("%d of %d replicas ready", st.Ready, st.Desired)
	}
	t.mu.Lock()
	if e := t.lastErr[key]; e != "" && st.Error == "" {
		st.Error = "the last update failed and was rolled back: " + e
	}
	t.mu.Unlock()
	return st, nil
}

// Logs implements compute.Target: the first pod's (of the current generation, if any), the
// previous container's when the current one crashed. Init is the whole log of that container.
func (t *Target) Logs(ctx context.Context, key compute.Key, o compute.LogOptions) (string, error) {
	name, err := resources.ReplicaName(key)
	if err != nil {
		return "", err
	}
	d, err := t.cs.AppsV1().Deployments(t.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", errdefs.NotFound("replicas of %s not found", key)
	}
	if err != nil {
		return "", fmt.Errorf("logs of %s: %w", key, err)
	}
	pods, err := t.pods(ctx, d)
	if err != nil {
		return "", err
	}
	cands := podsOfGeneration(pods, generationOf(d))
	if len(cands) == 0 {
		cands = pods
	}
	if len(cands) == 0 {
		return "", nil
	}
	p := cands[0]
	previous := false
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "score" && cs.RestartCount > 0 && (cs.State.Running == nil || !cs.Ready) {
			previous = true
		}
	}
	lo := &corev1.PodLogOptions{Container: "score", Previous: previous}
	if o.Tail > 0 {
		lo.TailLines = ptrTo(int64(o.Tail))
	}
	b, err := t.cs.CoreV1().Pods(t.namespace).GetLogs(p.Name, lo).DoRaw(ctx)
	if err != nil && previous {
		lo.Previous = false
		b, err = t.cs.CoreV1().Pods(t.namespace).GetLogs(p.Name, lo).DoRaw(ctx)
	}
	if err == nil && !previous && len(bytes.TrimSpace(b)) == 0 {
		// A container restarted a moment ago (its status may not say so yet): the log that
		// explains why is the previous container's.
		lo.Previous = true
		if pb, perr := t.cs.CoreV1().Pods(t.namespace).GetLogs(p.Name, lo).DoRaw(ctx); perr == nil {
			b = pb
		}
	}
	if err != nil {
		return "", fmt.Errorf("logs of pod %s: %w", p.Name, err)
	}
	return string(b), nil
}

// Delete implements compute.Target: it removes key's version from the owner ConfigMap (deleting
// the ConfigMap, and with it every object it owns, when it was the last), then waits until the
// Deployment, the Service and the pods are gone.
func (t *Target) Delete(ctx context.Context, key compute.Key) error {
	name, err := resources.ReplicaName(key)
	if err != nil {
		return err
	}
	cmName, err := resources.ServiceConfigName(key.Service)
	if err != nil {
		return err
	}
	version := key.Version
	if version == "" {
		version = key.Service
	}
	fg := metav1.DeletePropagationForeground
	d, derr := t.cs.AppsV1().Deployments(t.namespace).Get(ctx, name, metav1.GetOptions{})
	if derr != nil && !apierrors.IsNotFound(derr) {
		return fmt.Errorf("delete %s: %w", key, derr)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := t.cs.CoreV1().ConfigMaps(t.namespace).Get(ctx, cmName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		sc, perr := resources.ServiceConfigFrom(cm)
		var rest []resources.VersionConfig
		if perr == nil {
			for _, v := range sc.Versions {
				if v.Name != version {
					rest = append(rest, v)
				}
			}
		}
		if len(rest) == 0 {
			err := t.cs.CoreV1().ConfigMaps(t.namespace).Delete(ctx, cmName, metav1.DeleteOptions{
				PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{ResourceVersion: &cm.ResourceVersion}})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		sc.Versions = rest
		nc, err := resources.ServiceConfigMap(t.namespace, sc)
		if err != nil {
			return err
		}
		nc.ResourceVersion = cm.ResourceVersion
		_, err = t.cs.CoreV1().ConfigMaps(t.namespace).Update(ctx, nc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("delete %s: owner configmap: %w", key, err)
	}
	// The version's own objects (also when the ConfigMap went: a no-op once the collector took them).
	bg := metav1.DeletePropagationBackground
	if err := t.cs.AppsV1().Deployments(t.namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := t.cs.CoreV1().Services(t.namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}

	// Stop reporting, then wait for everything to go.
	t.mu.Lock()
	if cancel, ok := t.watchers[key]; ok {
		cancel()
		delete(t.watchers, key)
	}
	had := t.last[key] != nil
	delete(t.last, key)
	delete(t.lastErr, key)
	t.mu.Unlock()
	if had {
		t.cfg.OnReplicas(key, nil)
	}
	var sel labels.Selector
	if derr == nil {
		if sel, err = metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil {
			return err
		}
	}
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	for {
		left, err := t.leftovers(ctx, name, sel)
		if err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
		if left == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete %s: %s still there: %w", key, left, ctx.Err())
		case <-tick.C:
		}
	}
}

// leftovers names what of a deleted version is still in the cluster ("" = nothing).
func (t *Target) leftovers(ctx context.Context, name string, sel labels.Selector) (string, error) {
	var left []string
	if _, err := t.cs.AppsV1().Deployments(t.namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		left = append(left, "deployment "+name)
	} else if !apierrors.IsNotFound(err) {
		return "", err
	}
	if _, err := t.cs.CoreV1().Services(t.namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		left = append(left, "service "+name)
	} else if !apierrors.IsNotFound(err) {
		return "", err
	}
	if sel != nil {
		l, err := t.cs.CoreV1().Pods(t.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return "", err
		}
		if n := len(l.Items); n > 0 {
			left = append(left, fmt.Sprintf("%d pods", n))
		}
	}
	return strings.Join(left, ", "), nil
}
