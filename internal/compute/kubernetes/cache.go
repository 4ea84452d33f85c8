package kubernetes

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// replicaCache holds the namespace's replica Deployments and pods from watches, so Status (which
// the control plane asks for every service it lists or observes) costs the API server nothing.
type replicaCache struct {
	once        sync.Once
	ok          bool
	stop        chan struct{}
	deployments appslisters.DeploymentNamespaceLister
	pods        corelisters.PodNamespaceLister
}

// cacheSyncTimeout bounds the first sync; without it Status reads from the API server directly.
const cacheSyncTimeout = 15 * time.Second

// listers starts the watches on first use and reports whether they synced.
func (t *Target) listers() (*replicaCache, bool) {
	c := &t.cache
	c.once.Do(func() {
		c.stop = make(chan struct{})
		f := informers.NewSharedInformerFactoryWithOptions(t.cs, 10*time.Minute, informers.WithNamespace(t.namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.LabelSelector = resources.ManagedSelector + "," + resources.LabelComponent + "=" + resources.ComponentReplica
			}))
		d, p := f.Apps().V1().Deployments(), f.Core().V1().Pods()
		dinf, pinf := d.Informer(), p.Informer()
		c.deployments, c.pods = d.Lister().Deployments(t.namespace), p.Lister().Pods(t.namespace)
		f.Start(c.stop)
		ctx, cancel := context.WithTimeout(context.Background(), cacheSyncTimeout)
		defer cancel()
		c.ok = cache.WaitForCacheSync(ctx.Done(), dinf.HasSynced, pinf.HasSynced)
		if !c.ok {
			t.cfg.Logger.Warn("replica watches did not sync; status is read from the API server", "namespace", t.namespace)
		}
	})
	return c, c.ok
}

func (c *replicaCache) close() {
	if c.stop != nil {
		close(c.stop)
	}
}

// cachedPods are d's pods from the cache, oldest first (as pods returns them).
func (c *replicaCache) cachedPods(d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, err
	}
	list, err := c.pods.List(sel)
	if err != nil {
		return nil, err
	}
	out := make([]corev1.Pod, len(list))
	for i, p := range list {
		out[i] = *p
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].CreationTimestamp, out[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
