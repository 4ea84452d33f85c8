package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The baseline: the pod template of a Deployment mlship made (pinned image, probes, command,
// resources, node selector) in a Deployment of the bench's own, created with client-go. It is
// what the bare cluster takes to run the same pods, with no control plane in front.

const rawLabel = "mlship-bench-raw"

// rawDeployment copies tmpl under name, with labels of its own (mlship's would make mlship's
// selectors match these pods).
func rawDeployment(name string, tmpl corev1.PodTemplateSpec, replicas int32) *appsv1.Deployment {
	labels := map[string]string{rawLabel: name}
	t := *tmpl.DeepCopy()
	t.Labels, t.Annotations = labels, nil
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: t,
		},
	}
}

// available is kubectl rollout status's test: every replica updated, ready and available.
func available(d *appsv1.Deployment) bool {
	n := int32(1)
	if d.Spec.Replicas != nil {
		n = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == n && s.Replicas == n &&
		s.ReadyReplicas >= n && s.AvailableReplicas >= n
}

// rawOnce creates d, waits until it is available, then deletes it and waits until its pods are
// gone (not timed, as mlship's delete before each re-deploy is not).
func rawOnce(ctx context.Context, cs kubernetes.Interface, ns string, d *appsv1.Deployment) (time.Duration, error) {
	api := cs.AppsV1().Deployments(ns)
	start := time.Now()
	if _, err := api.Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("create deployment %s: %w", d.Name, err)
	}
	for {
		cur, err := api.Get(ctx, d.Name, metav1.GetOptions{})
		if err != nil {
			return 0, fmt.Errorf("deployment %s: %w", d.Name, err)
		}
		if available(cur) {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, fmt.Errorf("deployment %s not available: %w", d.Name, err)
		}
	}
	took := time.Since(start)
	bg := metav1.DeletePropagationBackground
	if err := api.Delete(ctx, d.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	return took, waitNoPods(ctx, cs, ns, rawLabel)
}

// rawMany creates ds at once (one goroutine each, as the bench fires mlship's deploys) and waits
// until all are available. It returns when the last create returned and when all were available,
// both from the first create.
func rawMany(ctx context.Context, cs kubernetes.Interface, ns string, ds []*appsv1.Deployment) (lastCreate, all time.Duration, err error) {
	api := cs.AppsV1().Deployments(ns)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(ds))
	for i, d := range ds {
		wg.Go(func() {
			if _, err := api.Create(ctx, d, metav1.CreateOptions{}); err != nil {
				errs[i] = fmt.Errorf("create deployment %s: %w", d.Name, err)
			}
		})
	}
	wg.Wait()
	lastCreate = time.Since(start)
	for _, err := range errs {
		if err != nil {
			return 0, 0, err
		}
	}
	sel := metav1.ListOptions{LabelSelector: rawLabel}
	for {
		l, err := api.List(ctx, sel)
		if err != nil {
			return 0, 0, err
		}
		ready := 0
		for i := range l.Items {
			if available(&l.Items[i]) {
				ready++
			}
		}
		if ready == len(ds) {
			return lastCreate, time.Since(start), nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return 0, 0, fmt.Errorf("%d of %d deployments available: %w", ready, len(ds), err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
