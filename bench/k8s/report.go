package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Targets from the issue.
const (
	redeployTarget = 10 * time.Second // median re-deploy to Healthy on the real node
	scaleTarget    = 60 * time.Second // all Healthy after the last deploy call
)

type report struct {
	Date       time.Time
	Commit     string
	Kubernetes string
	N          int
	Services   int
	BinaryMB   float64 // the static mlship binary in every image
	Redeploy   redeployResult
	Scale      scaleResult
}

func (r report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	rd, sc := r.Redeploy, r.Scale
	mlMed, rawMed := median(rd.Mlship), median(rd.Raw)

	p("# Kubernetes target\n\n")
	p("`go run ./bench/k8s -n %d -services %d` on %s, commit %s: the testbed cluster (Kubernetes %s; "+
		"one real kubelet node with containerd, one KWOK node), this machine (2 cores, shared by the "+
		"cluster, the registry, the mlship server and the bench).\n\n",
		r.N, r.Services, r.Date.Format("2006-01-02"), r.Commit, r.Kubernetes)

	p("| target | mlship | bare cluster (client-go) | ratio | verdict |\n|---|---|---|---|---|\n")
	p("| re-deploy of an already-built image to Healthy on the real node: ≤ %s median | %s median (%s–%s, %d runs) | %s median (%s–%s) | %.2f× | %s |\n",
		secs(redeployTarget), secs(mlMed), secs(minOf(rd.Mlship)), secs(maxOf(rd.Mlship)), len(rd.Mlship),
		secs(rawMed), secs(minOf(rd.Raw)), secs(maxOf(rd.Raw)), ratio(mlMed, rawMed), verdict(mlMed <= redeployTarget))
	p("| %d services × 2 replicas on the KWOK node: all Healthy ≤ %s after the last deploy call | %s after the last call (%s after the first) | %s after the last create (%s after the first) | %.2f× (first call → all ready) | %s |\n\n",
		sc.Services, secs(scaleTarget), secs(sc.FromLastCall()), secs(sc.AllHealthy),
		secs(sc.RawAll-sc.RawLastCreate), secs(sc.RawAll), ratio(sc.AllHealthy, sc.RawAll), verdict(sc.FromLastCall() <= scaleTarget))

	p("## 1. Re-deploy to Healthy on the real node\n\n")
	p("examples/stdlib (entry script, one registered model), 1 replica of 0.1 CPU / 256 MB, on the real node. "+
		"Each round deletes the service (waiting until its pods are gone), runs the baseline once, then "+
		"deploys the service again, identically: timed from the deploy call to the end of its operation "+
		"(the service Healthy; polled every 50 ms). The baseline is the service's own pod template "+
		"(image `%s`, same command, probes and resources) in a Deployment created with client-go, "+
		"timed from the create to the Deployment available (polled every 50 ms).\n\n", shortImage(rd.Image))
	p("| round | mlship deploy → Healthy | of which the target's image step | of which the target's Apply | image reused | raw Deployment → available |\n|---|---|---|---|---|---|\n")
	for i := range rd.Mlship {
		p("| %d | %s | %s | %s | %s | %s |\n", i+1, secs(rd.Mlship[i]), secs(at(rd.ImageStep, i)), secs(at(rd.Apply, i)),
			yesNo(i < len(rd.Reused) && rd.Reused[i]), secs(rd.Raw[i]))
	}
	p("\nIncluded: the upload of the source folder, the image step (the tag is a hash of the inputs: "+
		"the base image's manifest is fetched and the %.0f MB static mlship binary hashed, then the tag is "+
		"found in the registry and nothing is built or pushed), the owner ConfigMap, key Secret, "+
		"Deployment and Service, the rollout (image already on the node: IfNotPresent, no pull; Python "+
		"starts and runs init()) and the readiness probe (period 1 s: both columns fall in steps of about "+
		"a second, as a pod not ready at one probe waits for the next). The Apply column is the target's "+
		"own timing (server log); the rest of the deploy is the control plane's upload, bookkeeping and "+
		"the 50 ms polling of the operation. Not included: the first deploy, which took %s "+
		"(replica image %s, router image and router pod, and their pulls).\n\n",
		r.BinaryMB, secs(rd.First), map[bool]string{true: "already in the registry", false: "built and pushed"}[rd.FirstReused])
	p("Pulls on the node in the run's namespace (the kubelet's Pulled events): %d containers found their image already present", rd.Present)
	if len(rd.Pulled) == 0 {
		p("; none pulled.\n\n")
	} else {
		p("; pulled:\n\n")
		for _, m := range rd.Pulled {
			p("- %s\n", m)
		}
		p("\n")
	}
	p("Load average (1/5/15 min) %s at the start, %s at the end, 1-min peak %.2f. mlship server RSS peak %.0f MiB.\n\n",
		rd.LoadStart, rd.LoadEnd, rd.Server.MaxLoad1, rd.Server.HWMMiB)

	p("## 2. %d services × 2 replicas on the KWOK node\n\n", sc.Services)
	p("A separate `mlship server` process (the binary, `--image-binary` a static mlship) with a second "+
		"Kubernetes target in its own namespace, `--node-selector type=kwok`: the replicas and the "+
		"namespace's router go to the KWOK node, where pods become Ready without running. %d deploys "+
		"of examples/stdlib (numReplicas 2, 0.1 CPU / 256 MB each) are fired at once through the REST "+
		"API (asynchronous operations). A service is Healthy when its deploy operation ends (its "+
		"EndTime; the operations are polled every second, as 'model deploy' waits); `GET services` "+
		"(what 'service list' shows) is polled alongside, one call after another. The router was not warmed: the first deploys bring it up. The baseline: %d "+
		"Deployments of 2 replicas with the pod template of one of mlship's (same image, probes, "+
		"node selector), created at once with client-go (the same 200 QPS / 400 burst client limits as "+
		"mlship's), polled every 250 ms until all are available.\n\n", sc.Services, sc.Services)
	p("| | mlship | bare cluster |\n|---|---|---|\n")
	p("| last call answered (from the first) | %s | %s |\n", secs(sc.LastCall), secs(sc.RawLastCreate))
	p("| all ready (from the first call) | %s | %s |\n", secs(sc.AllHealthy), secs(sc.RawAll))
	p("| all ready after the last call | **%s** | %s |\n", secs(sc.FromLastCall()), secs(sc.RawAll-sc.RawLastCreate))
	p("| services Healthy, p50 / p90 / last (from the first call) | %s / %s / %s | |\n",
		secs(pct(sc.Healthy, 50)), secs(pct(sc.Healthy, 90)), secs(maxOf(sc.Healthy)))
	p("| `GET services` first showed all Healthy (from the first call) | %s | |\n", secs(sc.Listed))
	p("| `GET services` call while deploying, p50 / max (%d calls) | %s / %s | |\n", len(sc.ListCalls), secs(pct(sc.ListCalls, 50)), secs(maxOf(sc.ListCalls)))
	p("| `GET services` call once all are Healthy, 3 in a row | %s | |\n", joinSecs(sc.ListAtRest))
	ph := sc.Phases
	p("\nWhere each deploy's time goes, p50 / p90 / max over the services (server log and operation end, the server's clock):\n\n")
	p("| phase | p50 | p90 | max |\n|---|---|---|---|\n")
	for _, row := range []struct {
		what string
		d    []time.Duration
	}{
		{"operation start → image step: files, the cluster router's config (ConfigMap, key Secret; the router itself for the first)", ph.BeforeImage},
		{fmt.Sprintf("image step (%d of %d reused: tag found, nothing built)", sc.ImagesReused, len(ph.Image)), ph.Image},
		{"owner ConfigMap, Deployment, Service, wait for the rollout", ph.Rollout},
		{"replicas ready → operation end: the record, the router's config again", ph.After},
	} {
		p("| %s | %s | %s | %s |\n", row.what, secs(pct(row.d, 50)), secs(pct(row.d, 90)), secs(maxOf(row.d)))
	}
	p("\nControl-plane memory (`/proc/PID/status` of the server, sampled every 250 ms, %d samples): "+
		"%.0f MiB RSS idle (target attached, model registered), %.0f MiB peak RSS sampled, **%.0f MiB VmHWM** "+
		"(the kernel's peak), %.0f MiB at the end with all services Healthy. The server used %.1f s of CPU "+
		"over the run.\n\n", sc.Server.Samples, sc.IdleRSSMiB, sc.Server.MaxRSSMiB, sc.Server.HWMMiB, sc.Server.EndRSSMiB, sc.Server.CPUSeconds)
	p("Included: every service's upload, image step (one image for all: the same model and source), "+
		"objects and rollout; no pull (KWOK pods run nothing). Load average (1/5/15 min) %s at the start, "+
		"%s with all Healthy, 1-min peak %.2f; %s after the baseline.\n\n",
		sc.LoadStart, sc.LoadEnd, sc.Server.MaxLoad1, sc.RawLoadEnd)

	p("## Re-run\n\n")
	p("```\nbash test/testbed/scripts/build.sh   # once\nbash test/testbed/scripts/up.sh      # the test cluster (root)\n"+
		"go run ./bench/k8s -n %d -services %d\n```\n\n", r.N, r.Services)
	p("The KWOK node must take 2 × services + 1 pods (test/testbed/node/kwok/node.yaml allows 250); the " +
		"bench says how to patch a live node that allows fewer. It creates its own namespaces " +
		"(mlship-bench-*) and deletes them at the end.\n")
	return b.String()
}

func joinSecs(d []time.Duration) string {
	var s []string
	for _, x := range d {
		s = append(s, secs(x))
	}
	return strings.Join(s, ", ")
}

func verdict(ok bool) string {
	if ok {
		return "**PASS**"
	}
	return "**MISS**"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func (l load) String() string { return fmt.Sprintf("%.2f/%.2f/%.2f", l[0], l[1], l[2]) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func at(d []time.Duration, i int) time.Duration {
	if i < len(d) {
		return d[i]
	}
	return 0
}

func sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

// pct is the nearest-rank percentile.
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := sorted(d)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}

func minOf(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return sorted(d)[0]
}

func maxOf(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return sorted(d)[len(d)-1]
}

// shortImage abbreviates the digest of a pinned reference.
func shortImage(ref string) string {
	if i := strings.Index(ref, "@sha256:"); i >= 0 && len(ref) > i+20 {
		return ref[:i+20] + "…"
	}
	return ref
}
