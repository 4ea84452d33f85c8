package kubernetes

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/compute/kubernetes/image"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/errdefs"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// ReplicaRepository holds every image the target builds, tagged by content hash: one repository
// means the binary and base layers are pushed once, not once per service.
const ReplicaRepository = "mlship/replicas"

// ConfigureService writes what the namespace's router knows of a service: service.json in the
// owner ConfigMap and, with key auth, the key Secret (owned by the ConfigMap, so deleting the
// service removes it). Versions without a Replicas name get ReplicaName's. The first call also
// applies the router itself.
func (t *Target) ConfigureService(ctx context.Context, sc *resources.ServiceConfig, primary, secondary string) error {
	c := *sc
	c.APIVersion = resources.ServiceConfigVersion
	c.Versions = append([]resources.VersionConfig(nil), sc.Versions...)
	for i, v := range c.Versions {
		if v.Replicas == "" {
			name, err := resources.ReplicaName(compute.Key{Workspace: c.Workspace, Service: c.Name, Version: v.Name})
			if err != nil {
				return err
			}
			c.Versions[i].Replicas = name
		}
	}
	if c.Auth.AuthEnabled {
		name, err := resources.KeySecretName(c.Name)
		if err != nil {
			return err
		}
		c.Auth.KeySecret = name
	} else {
		c.Auth.KeySecret = ""
	}
	cm, err := resources.ServiceConfigMap(t.namespace, &c)
	if err != nil {
		return err
	}
	if err := t.EnsureRouter(ctx); err != nil {
		return err
	}
	var owner *corev1.ConfigMap
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		api := t.cs.CoreV1().ConfigMaps(t.namespace)
		cur, err := api.Get(ctx, cm.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			owner, err = api.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), cm.Name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		next := cm.DeepCopy()
		next.ResourceVersion = cur.ResourceVersion
		owner, err = api.Update(ctx, next, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("configure %s in the cluster: owner configmap: %w", c.Name, err)
	}
	secrets := t.cs.CoreV1().Secrets(t.namespace)
	secretName, err := resources.KeySecretName(c.Name)
	if err != nil {
		return err
	}
	if !c.Auth.AuthEnabled {
		if err := secrets.Delete(ctx, secretName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("configure %s in the cluster: remove the key secret: %w", c.Name, err)
		}
		return nil
	}
	sec, err := resources.KeySecret(t.namespace, c.Workspace, c.Name, primary, secondary, owner)
	if err != nil {
		return err
	}
	if err := applySecret(ctx, t, sec); err != nil {
		return fmt.Errorf("configure %s in the cluster: key secret: %w", c.Name, err)
	}
	return nil
}

func applySecret(ctx context.Context, t *Target, s *corev1.Secret) error {
	api := t.cs.CoreV1().Secrets(t.namespace)
	return upsert(ctx, s, api.Get, api.Create, func(ctx context.Context, cur *corev1.Secret) error {
		next := s.DeepCopy()
		next.ResourceVersion = cur.ResourceVersion
		_, err := api.Update(ctx, next, metav1.UpdateOptions{})
		return err
	})
}

// EnsureRouter applies the namespace's router (image, ServiceAccount, Role, RoleBinding, token
// Secret, Deployment, Service) once per Target; later calls return at once.
func (t *Target) EnsureRouter(ctx context.Context) error {
	t.routerMu.Lock()
	defer t.routerMu.Unlock()
	if t.routerReady {
		return nil
	}
	if len(t.cfg.TokenKey) == 0 {
		return errdefs.Invalid("kubernetes target: no token key for the router")
	}
	img, err := image.Build(ctx, image.Input{Binary: t.cfg.Binary, Base: t.cfg.ONNXImage}, image.Options{
		Registry: t.cfg.Registry, Repository: ReplicaRepository, Insecure: t.cfg.RegistryInsecure, Logger: t.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("router image: %w", err)
	}
	objs, err := resources.Router(t.namespace, img.Pinned(), resources.RouterOptions{})
	if err != nil {
		return err
	}
	if len(t.cfg.NodeSelector) > 0 {
		objs.Deployment.Spec.Template.Spec.NodeSelector = t.cfg.NodeSelector
	}
	sec, err := resources.RouterSecret(t.namespace, t.cfg.TokenKey)
	if err != nil {
		return err
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("router in namespace %s: %s: %w", t.namespace, what, err)
	}
	core, rbac, apps := t.cs.CoreV1(), t.cs.RbacV1(), t.cs.AppsV1()
	if err := upsert(ctx, objs.ServiceAccount, core.ServiceAccounts(t.namespace).Get, core.ServiceAccounts(t.namespace).Create,
		func(ctx context.Context, cur *corev1.ServiceAccount) error { return nil }); err != nil {
		return fail("service account", err)
	}
	if err := upsert(ctx, objs.Role, rbac.Roles(t.namespace).Get, rbac.Roles(t.namespace).Create,
		func(ctx context.Context, cur *rbacv1.Role) error {
			cur.Rules = objs.Role.Rules
			_, err := rbac.Roles(t.namespace).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
		return fail("role", err)
	}
	if err := upsert(ctx, objs.RoleBinding, rbac.RoleBindings(t.namespace).Get, rbac.RoleBindings(t.namespace).Create,
		func(ctx context.Context, cur *rbacv1.RoleBinding) error { return nil }); err != nil {
		return fail("role binding", err)
	}
	if err := applySecret(ctx, t, sec); err != nil {
		return fail("token secret", err)
	}
	if err := upsert(ctx, objs.Deployment, apps.Deployments(t.namespace).Get, apps.Deployments(t.namespace).Create,
		func(ctx context.Context, cur *appsv1.Deployment) error {
			cur.Labels, cur.Spec.Template = objs.Deployment.Labels, objs.Deployment.Spec.Template
			_, err := apps.Deployments(t.namespace).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
		return fail("deployment", err)
	}
	if err := upsert(ctx, objs.Service, core.Services(t.namespace).Get, core.Services(t.namespace).Create,
		func(ctx context.Context, cur *corev1.Service) error {
			cur.Labels, cur.Spec.Selector, cur.Spec.Ports = objs.Service.Labels, objs.Service.Spec.Selector, objs.Service.Spec.Ports
			_, err := core.Services(t.namespace).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
		return fail("service", err)
	}
	if err := t.waitRouter(ctx); err != nil {
		return err
	}
	t.routerReady = true
	t.cfg.Logger.Info("router applied", "namespace", t.namespace, "image", img.Ref, "reused", img.Reused)
	return nil
}

// upsert creates obj, or hands the current object to update.
func upsert[T any](ctx context.Context, obj *T,
	get func(context.Context, string, metav1.GetOptions) (*T, error),
	create func(context.Context, *T, metav1.CreateOptions) (*T, error),
	update func(context.Context, *T) error,
) error {
	name := any(obj).(metav1.Object).GetName()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = create(ctx, obj, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("objects"), name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		return update(ctx, cur)
	})
}

// scoringRetry is how long a failure to find the router's address is answered from memory.
const scoringRetry = 10 * time.Second

// ScoringBase is the router's address as clients reach it: http://HOST:PORT of the load
// balancer when the router's Service has one, else of its cluster IP.
func (t *Target) ScoringBase(ctx context.Context) (string, error) {
	t.routerMu.Lock()
	base, lastErr, failedAt := t.scoringBase, t.scoringErr, t.scoringErrAt
	t.routerMu.Unlock()
	if base != "" {
		return base, nil
	}
	if lastErr != nil && time.Since(failedAt) < scoringRetry {
		// A cluster that does not answer must not make every 'service list' wait on it.
		return "", lastErr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	svc, err := t.cs.CoreV1().Services(t.namespace).Get(ctx, resources.RouterName, metav1.GetOptions{})
	if err != nil {
		err = fmt.Errorf("router service: %w", err)
		t.routerMu.Lock()
		t.scoringErr, t.scoringErrAt = err, time.Now()
		t.routerMu.Unlock()
		return "", err
	}
	if len(svc.Spec.Ports) == 0 {
		return "", fmt.Errorf("router service %s has no port", svc.Name)
	}
	port := strconv.Itoa(int(svc.Spec.Ports[0].Port))
	host := ""
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			host = in.IP
		} else if in.Hostname != "" {
			host = in.Hostname
		}
		if host != "" {
			break
		}
	}
	if host == "" && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		host = svc.Spec.ClusterIP
	}
	if host == "" {
		return "", fmt.Errorf("router service %s has no address yet", svc.Name)
	}
	base = "http://" + net.JoinHostPort(host, port)
	t.routerMu.Lock()
	t.scoringBase = base
	t.routerMu.Unlock()
	return base, nil
}

// routerReadyTimeout bounds the wait for the router's first ready pod (an image pull included).
const routerReadyTimeout = 3 * time.Minute

// waitRouter waits until the router Deployment's current template has a ready pod, so a
// service reported Healthy can be scored at once; a crashing or unschedulable router fails fast.
func (t *Target) waitRouter(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, routerReadyTimeout)
	defer cancel()
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	for {
		d, err := t.cs.AppsV1().Deployments(t.namespace).Get(ctx, resources.RouterName, metav1.GetOptions{})
		if err == nil {
			s := d.Status
			if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas >= 1 && s.ReadyReplicas >= 1 && s.UpdatedReplicas == s.Replicas {
				return nil
			}
			if pods, perr := t.pods(ctx, d); perr == nil {
				if _, reason := t.failure(ctx, pods); reason != "" {
					return fmt.Errorf("router in namespace %s: %s", t.namespace, reason)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("router in namespace %s not ready within %v (see 'kubectl -n %s describe deploy %s')", t.namespace, routerReadyTimeout, t.namespace, resources.RouterName)
		case <-tick.C:
		}
	}
}
