package routerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/router"
)

// sliceSelector picks the EndpointSlices of mlship's replica Services (they inherit its labels).
const sliceSelector = resources.ManagedSelector + "," + discoveryv1.LabelServiceName

const byServiceName = "serviceName"

type versionKey struct{ service, version string }

// applied is a service as the router has it, with the service.json it came from.
type applied struct {
	src *resources.ServiceConfig
	cfg router.ServiceConfig
}

// syncer keeps a Router in step with the namespace's owner ConfigMaps, Secrets and
// EndpointSlices. Informers feed its caches; one goroutine (loop) recomputes the whole desired
// state from them on every change and applies only the differences. The caches keep their last
// contents while the API server is unreachable, so the router keeps what it has.
type syncer struct {
	ns        string
	log       *slog.Logger
	r         *router.Router
	tokens    *tokenKeys
	downscale time.Duration
	mapAddr   func(string) string // see Options.mapAddr

	configMaps, secrets, slices cache.SharedIndexInformer
	kick                        chan struct{}
	ready                       atomic.Bool
	deployments                 atomic.Pointer[map[versionKey]string] // read by the scaler

	// Owned by the loop goroutine.
	good     map[string]*resources.ServiceConfig // ConfigMap name → last service.json accepted
	badRV    map[string]string                   // ConfigMap name → resourceVersion refused (logged once)
	services map[string]applied                  // service name → what the router has
	replicas map[versionKey][]router.Replica     // what the router has
	notes    map[string]string                   // conditions already logged, by subject
}

func newSyncer(client kubernetes.Interface, ns string, r *router.Router, tokens *tokenKeys, downscale time.Duration, log *slog.Logger) *syncer {
	s := &syncer{
		ns: ns, log: log, r: r, tokens: tokens, downscale: downscale,
		kick:     make(chan struct{}, 1),
		good:     map[string]*resources.ServiceConfig{},
		badRV:    map[string]string{},
		services: map[string]applied{},
		replicas: map[versionKey][]router.Replica{},
		notes:    map[string]string{},
	}
	empty := map[versionKey]string{}
	s.deployments.Store(&empty)
	selector := func(sel string) func(*metav1.ListOptions) {
		return func(o *metav1.ListOptions) { o.LabelSelector = sel }
	}
	s.configMaps = coreinformers.NewFilteredConfigMapInformer(client, ns, 0, cache.Indexers{}, selector(resources.ServiceConfigSelector))
	s.secrets = coreinformers.NewFilteredSecretInformer(client, ns, 0, cache.Indexers{}, selector(resources.ManagedSelector))
	s.slices = discoveryinformers.NewFilteredEndpointSliceInformer(client, ns, 0, cache.Indexers{byServiceName: func(obj any) ([]string, error) {
		if es, ok := obj.(*discoveryv1.EndpointSlice); ok {
			return []string{es.Labels[discoveryv1.LabelServiceName]}, nil
		}
		return nil, nil
	}}, selector(sliceSelector))
	return s
}

func (s *syncer) informers() map[string]cache.SharedIndexInformer {
	return map[string]cache.SharedIndexInformer{"configmaps": s.configMaps, "secrets": s.secrets, "endpointslices": s.slices}
}

// run runs the informers and, once they have synced, the loop; it returns when ctx ends.
// onSynced runs once the router holds the namespace's state.
func (s *syncer) run(ctx context.Context, onSynced func()) {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.trigger() },
		UpdateFunc: func(any, any) { s.trigger() },
		DeleteFunc: func(any) { s.trigger() },
	}
	var synced []cache.InformerSynced
	var wg sync.WaitGroup
	defer wg.Wait() // informers log through s.log: return only once they have stopped
	for name, inf := range s.informers() {
		if _, err := inf.AddEventHandler(h); err != nil { // only fails on a stopped informer
			s.log.Error("cannot follow the namespace", "resource", name, "err", err)
			return
		}
		_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { s.watchError(name, err) })
		wg.Add(1)
		go func() { defer wg.Done(); inf.RunWithContext(ctx) }()
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	s.reconcile()
	s.ready.Store(true)
	s.log.Info("router synced with the cluster", "namespace", s.ns, "services", len(s.services))
	if onSynced != nil {
		onSynced()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.reconcile()
		}
	}
}

func (s *syncer) trigger() {
	select {
	case s.kick <- struct{}{}:
	default: // a reconcile is already due; it will see this change too
	}
}

// watchError logs a lost watch. The reflector retries with backoff by itself and the cache keeps
// its contents, so the router keeps serving what it knows.
func (s *syncer) watchError(resource string, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		s.log.Debug("watch restarted", "resource", resource, "err", err)
	default:
		s.log.Warn("cannot watch the Kubernetes API; serving from the last known state and retrying",
			"namespace", s.ns, "resource", resource, "err", err)
	}
}

// reconcile brings the router to the state of the caches.
func (s *syncer) reconcile() {
	s.syncTokenKey()
	desired := s.desiredServices()
	deployments := map[versionKey]string{}
	live := map[versionKey]bool{}
	names := make([]string, 0, len(desired))
	for name := range desired {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		src := desired[name]
		a, ok := s.apply(src)
		if !ok {
			continue
		}
		for _, v := range a.src.Versions {
			k := versionKey{name, v.Name}
			live[k] = true
			deployments[k] = v.Replicas
			reps := replicasFrom(s.slicesOf(v.Replicas), s.mapAddr)
			if prev, ok := s.replicas[k]; ok && slices.Equal(prev, reps) {
				continue
			}
			if err := s.r.SetReplicas(name, v.Name, reps); err != nil {
				s.note("replicas/"+name+"/"+v.Name, slog.LevelError, "cannot route to the replicas", "service", name, "version", v.Name, "err", err)
				continue
			}
			s.clearNote("replicas/" + name + "/" + v.Name)
			s.replicas[k] = reps
			s.log.Debug("replicas", "service", name, "version", v.Name, "replicas", len(reps), "ready", countReady(reps))
		}
	}
	for name := range s.services {
		if _, ok := desired[name]; !ok {
			s.r.RemoveService(name)
			delete(s.services, name)
			s.forgetNotes(name)
			s.log.Info("service removed", "service", name)
		}
	}
	for k := range s.replicas {
		if !live[k] {
			delete(s.replicas, k) // the router dropped the version's pool with it
		}
	}
	s.deployments.Store(&deployments)
}

// desiredServices reads every owner ConfigMap. A service.json that cannot be read leaves the
// service as it was last accepted (or absent, if it never was) and is logged once per change.
func (s *syncer) desiredServices() map[string]*resources.ServiceConfig {
	var cms []*corev1.ConfigMap
	for _, o := range s.configMaps.GetStore().List() {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			cms = append(cms, cm)
		}
	}
	sort.Slice(cms, func(i, j int) bool { return cms[i].Name < cms[j].Name })
	seen := map[string]bool{}
	desired := map[string]*resources.ServiceConfig{}
	owner := map[string]string{}
	for _, cm := range cms {
		seen[cm.Name] = true
		c, err := resources.ServiceConfigFrom(cm)
		if err != nil {
			c = s.good[cm.Name]
			if s.badRV[cm.Name] != cm.ResourceVersion {
				s.badRV[cm.Name] = cm.ResourceVersion
				if c != nil {
					s.log.Error("refused a changed service.json; keeping the service's previous configuration", "configmap", cm.Name, "err", err)
				} else {
					s.log.Error("refused service.json; the service is not routed until it is fixed", "configmap", cm.Name, "err", err)
				}
			}
			if c == nil {
				continue
			}
		} else {
			s.good[cm.Name] = c
			delete(s.badRV, cm.Name)
		}
		if other, dup := owner[c.Name]; dup {
			s.note("duplicate/"+cm.Name, slog.LevelError, "two ConfigMaps configure one service; using the first",
				"service", c.Name, "used", other, "ignored", cm.Name)
			continue
		}
		owner[c.Name] = cm.Name
		desired[c.Name] = c
	}
	for name := range s.good {
		if !seen[name] {
			delete(s.good, name)
		}
	}
	for name := range s.badRV {
		if !seen[name] {
			delete(s.badRV, name)
		}
	}
	return desired
}

// apply sets a service in the router if it changed. When the router refuses the new
// configuration, the previous one stays; ok is false only for a service the router never had.
func (s *syncer) apply(src *resources.ServiceConfig) (applied, bool) {
	cfg := routerConfig(src, s.keys(src), s.downscale)
	prev, had := s.services[src.Name]
	if had && reflect.DeepEqual(prev.cfg, cfg) {
		prev.src = src
		s.services[src.Name] = prev
		return prev, true
	}
	if err := s.r.SetService(cfg); err != nil {
		s.note("config/"+src.Name, slog.LevelError, "router refused the service's configuration; keeping its previous one",
			"service", src.Name, "err", err)
		return prev, had
	}
	s.clearNote("config/" + src.Name)
	a := applied{src: src, cfg: cfg}
	s.services[src.Name] = a
	if had {
		s.log.Info("service updated", "service", src.Name, "versions", len(src.Versions))
	} else {
		s.log.Info("service added", "service", src.Name, "versions", len(src.Versions))
	}
	return a, true
}

// keys reads a key-auth service's keys from its Secret. Without the Secret the service has no
// keys, so every key is refused: auth never opens for want of a Secret.
func (s *syncer) keys(c *resources.ServiceConfig) []string {
	if !c.Auth.AuthEnabled {
		return nil
	}
	subject := "keys/" + c.Name
	sec, err := s.secret(c.Auth.KeySecret)
	if err != nil {
		s.note(subject, slog.LevelWarn, "key Secret not found: every key is refused until it appears",
			"service", c.Name, "secret", c.Auth.KeySecret)
		return nil
	}
	keys := []string{string(sec.Data[resources.PrimaryKeyField]), string(sec.Data[resources.SecondaryKeyField])}
	if keys[0] == "" && keys[1] == "" {
		s.note(subject, slog.LevelWarn, "key Secret holds no keys: every key is refused",
			"service", c.Name, "secret", c.Auth.KeySecret)
		return nil
	}
	s.clearNote(subject)
	return keys
}

func (s *syncer) syncTokenKey() {
	sec, err := s.secret(resources.RouterSecretName)
	if err != nil {
		if s.tokens.refuse(missingTokenKey(s.ns)) {
			s.log.Warn("router Secret not found: access tokens are refused until it appears", "secret", resources.RouterSecretName)
		}
		return
	}
	changed, err := s.tokens.set(sec.Data[resources.TokenKeyField])
	switch {
	case err != nil && changed:
		s.log.Error("router Secret's token key is unusable: access tokens are refused", "secret", resources.RouterSecretName, "err", err)
	case changed:
		s.log.Info("token key loaded", "secret", resources.RouterSecretName)
	}
}

func missingTokenKey(ns string) string {
	return fmt.Sprintf("the Secret %s in namespace %s, which holds the token key, is missing; "+
		"mlship writes it when it deploys to this namespace", resources.RouterSecretName, ns)
}

func (s *syncer) secret(name string) (*corev1.Secret, error) {
	o, ok, err := s.secrets.GetStore().GetByKey(s.ns + "/" + name)
	if err != nil {
		return nil, err
	}
	sec, isSecret := o.(*corev1.Secret)
	if !ok || !isSecret {
		return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
	}
	return sec, nil
}

func (s *syncer) slicesOf(serviceName string) []*discoveryv1.EndpointSlice {
	objs, err := s.slices.GetIndexer().ByIndex(byServiceName, serviceName)
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if es, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, es)
		}
	}
	return out
}

// deployment names a version's Deployment, for the scaler.
func (s *syncer) deployment(service, version string) (string, bool) {
	name, ok := (*s.deployments.Load())[versionKey{service, version}]
	return name, ok
}

// note logs a condition once, until it changes or is cleared.
func (s *syncer) note(subject string, level slog.Level, msg string, args ...any) {
	text := fmt.Sprint(msg, args)
	if s.notes[subject] == text {
		return
	}
	s.notes[subject] = text
	s.log.Log(context.Background(), level, msg, args...)
}

func (s *syncer) clearNote(subject string) { delete(s.notes, subject) }

// forgetNotes clears a removed service's conditions, so they are logged again if it returns.
func (s *syncer) forgetNotes(service string) {
	for subject := range s.notes {
		if subject == "keys/"+service || subject == "config/"+service || strings.HasPrefix(subject, "replicas/"+service+"/") {
			delete(s.notes, subject)
		}
	}
}

func countReady(reps []router.Replica) int {
	n := 0
	for _, r := range reps {
		if r.Ready {
			n++
		}
	}
	return n
}
