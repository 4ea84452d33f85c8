package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"

	"github.com/mlship/mlship/internal/router"
)

// Servers run as child processes of the benchmark (this same binary with -serve), one
// process each, as they would be deployed. Each prints its address on stdout.

const benchKey = "bench-primary-key-0123456789abcdefghijklmnopq"

func serve(kind, upstreamURL string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
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
		u, err := url.Parse(upstreamURL)
		if err != nil {
			return err
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: 90 * time.Second}
		h = rp
	case "router":
		r := router.New(router.Options{})
		err := r.SetService(router.ServiceConfig{
			Name: "bench",
			Auth: router.AuthConfig{KeyAuth: true, Keys: []string{benchKey, "secondary"}},
			// The baselines do not limit concurrency (queue-proxy CONTAINER_CONCURRENCY=0);
			// neither does the router here, with one replica taking up to 64 at once.
			Limits: router.Limits{MaxConcurrentRequestsPerContainer: 64},
		})
		if err == nil {
			err = r.SetReplicas("bench", "bench", []router.Replica{{ID: "r0", URL: upstreamURL, Ready: true}})
		}
		if err != nil {
			return err
		}
		h = r
	default:
		return fmt.Errorf("unknown server %q", kind)
	}
	fmt.Fprintln(os.Stdout, ln.Addr().String())
	return (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}
