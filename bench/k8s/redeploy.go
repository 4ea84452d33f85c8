package main

import (
	"context"
	"fmt"
	"time"
)

// redeployResult is target 1: re-deploying a service whose image is already built.
type redeployResult struct {
	First       time.Duration // the first deploy: router and replica images, router pod, pull
	FirstReused bool          // the replica image was already in the registry at the first deploy
	Image       string        // the pinned image of the replicas (and of the baseline)
	Mlship      []time.Duration
	ImageStep   []time.Duration // per re-deploy: the image step of the target's Apply (server log)
	Apply       []time.Duration // per re-deploy: the target's whole Apply (image, objects, rollout)
	Reused      []bool          // per re-deploy: the image step reused the tag
	Raw         []time.Duration
	Pulled      []string // kubelet: pods whose image was pulled, with its message
	Present     int      // kubelet: containers whose image was already on the node
	LoadStart   load
	LoadEnd     load
	Server      memoryFigures
}

const redeployService = "redeploy"

// benchRedeploy deploys the example once on the real node, then n times deletes it and deploys it
// again. Each round also runs the baseline once: the same pod template as a Deployment of its
// own, created with client-go, with nothing of mlship's on the node at the time.
func benchRedeploy(ctx context.Context, tb *testbed, bins binaries, work string, n int) (r redeployResult, err error) {
	r.LoadStart = loadNow()
	ns, drop, err := tb.namespace(ctx, "mlship-bench-real")
	if err != nil {
		return r, err
	}
	defer drop()
	srv, err := startServer(work, "redeploy", bins)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	mem := sampleMemory(srv.pid(), 250*time.Millisecond)
	defer func() { r.Server = mem.finish() }()
	c := srv.api
	if err := srv.attach(ctx, tb, "real", ns, map[string]string{"kubernetes.io/hostname": tb.env["NODE"]}); err != nil {
		return r, err
	}
	ex, err := newExample(ctx, c, "real", 1)
	if err != nil {
		return r, err
	}
	if r.First, err = ex.deployAndWait(ctx, c, redeployService); err != nil {
		return r, err
	}
	logf("  first deploy (images, router): %s", secs(r.First))
	d, err := tb.replicaDeployment(ctx, ns, redeployService)
	if err != nil {
		return r, err
	}
	tmpl := d.Spec.Template
	r.Image = tmpl.Spec.Containers[0].Image

	for i := range n {
		if err := deleteAndWait(ctx, c, redeployService); err != nil {
			return r, err
		}
		raw, err := rawOnce(ctx, tb.cs, ns, rawDeployment(fmt.Sprintf("raw-%d", i), tmpl, 1))
		if err != nil {
			return r, err
		}
		took, err := ex.deployAndWait(ctx, c, redeployService)
		if err != nil {
			return r, err
		}
		logf("  round %d: mlship %s, raw Deployment %s", i+1, secs(took), secs(raw))
		r.Mlship, r.Raw = append(r.Mlship, took), append(r.Raw, raw)
	}
	r.LoadEnd = loadNow()
	if r.Pulled, r.Present, err = tb.pulls(ctx, ns); err != nil {
		return r, err
	}

	// The target's own account of each deploy: the image step and the whole Apply.
	images, err := serverLog(srv.log, "image ready")
	if err != nil {
		return r, err
	}
	applies, err := serverLog(srv.log, "replicas ready")
	if err != nil {
		return r, err
	}
	if len(images) != n+1 || len(applies) != n+1 {
		return r, fmt.Errorf("server log: %d 'image ready' and %d 'replicas ready' lines for %d deploys", len(images), len(applies), n+1)
	}
	r.FirstReused = images[0].Reuse != nil && *images[0].Reuse
	for i := 1; i <= n; i++ {
		r.ImageStep = append(r.ImageStep, time.Duration(images[i].Took))
		r.Apply = append(r.Apply, time.Duration(applies[i].Took))
		r.Reused = append(r.Reused, images[i].Reuse != nil && *images[i].Reuse)
	}
	return r, nil
}
