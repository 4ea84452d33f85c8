package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/mlship/mlship/internal/router"
)

// Servers run as child processes of the benchmark (this same binary with -serve), one
// process each, as they would be deployed. Each prints its address on stdout.

const benchKey = "bench-primary-key-0123456789abcdefghijklmnopq"

// The split scenario's router serves a plain service over three replicas and an endpoint
// whose three versions (70/20/10) have one replica each: the same upstreams, so the two
// differ only in routing.
var splitVersions = []router.VersionConfig{
	{Name: "v70", TrafficPercentile: 70, IsDefault: true, IsControl: true},
	{Name: "v20", TrafficPercentile: 20},
	{Name: "v10", TrafficPercentile: 10},
}

// The baselines do not limit concurrency (queue-proxy CONTAINER_CONCURRENCY=0); neither
// does the router here, each replica taking up to 64 at once.
var benchLimits = router.Limits{MaxConcurrentRequestsPerContainer: 64}

var benchAuth = router.AuthConfig{KeyAuth: true, Keys: []string{benchKey, "secondary"}}

// serve runs one server. upstreams is a comma-separated list of upstream URLs (one, except
// for split-router's three). With cpuprofile, the process profiles itself until SIGTERM.
func serve(kind, upstreams, cpuprofile string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ups := strings.Split(upstreams, ",")
	var h http.Handler
	switch kind {
	case "upstream":
		// A trivial model: read the body, answer a small JSON document.
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"result":[0.5]}`)
		})
	case "reverseproxy":
		u, err := url.Parse(ups[0])
		if err != nil {
			return err
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: 90 * time.Second}
		h = rp
	case "router":
		r := router.New(router.Options{})
		err := r.SetService(router.ServiceConfig{Name: "bench", Auth: benchAuth, Limits: benchLimits})
		if err == nil {
			err = r.SetReplicas("bench", "bench", []router.Replica{{ID: "r0", URL: ups[0], Ready: true}})
		}
		if err != nil {
			return err
		}
		h = r
	case "split-router":
		if len(ups) != len(splitVersions) {
			return fmt.Errorf("split-router needs %d upstreams, got %q", len(splitVersions), upstreams)
		}
		if h, err = splitRouter(ups); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown server %q", kind)
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		go func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
			<-sig
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(0)
		}()
	}
	fmt.Fprintln(os.Stdout, ln.Addr().String())
	return (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

// splitRouter serves "plain" (one version, a replica on each upstream) and "split" (one
// version per upstream, traffic 70/20/10).
func splitRouter(ups []string) (*router.Router, error) {
	r := router.New(router.Options{})
	if err := r.SetService(router.ServiceConfig{Name: "plain", Auth: benchAuth, Limits: benchLimits}); err != nil {
		return nil, err
	}
	var all []router.Replica
	for i, u := range ups {
		all = append(all, router.Replica{ID: fmt.Sprintf("r%d", i), URL: u, Ready: true})
	}
	if err := r.SetReplicas("plain", "plain", all); err != nil {
		return nil, err
	}
	if err := r.SetService(router.ServiceConfig{Name: "split", Auth: benchAuth, Limits: benchLimits, Versions: splitVersions}); err != nil {
		return nil, err
	}
	for i, v := range splitVersions {
		if err := r.SetReplicas("split", v.Name, []router.Replica{{ID: "r0", URL: ups[i], Ready: true}}); err != nil {
			return nil, err
		}
	}
	return r, nil
}
