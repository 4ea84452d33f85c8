package kubernetes

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// A cluster that hangs costs one wait for the router's address, not one per look.
func TestScoringBaseRemembersFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ml}}]
current-context: x
`, ln.Addr())
	tg, err := NewTarget(TargetConfig{Kubeconfig: []byte(kc), Registry: "127.0.0.1:5000", PythonImage: "p", Binary: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	start := time.Now()
	if _, err := tg.ScoringBase(context.Background()); err == nil {
		t.Fatal("a hanging API server gave a scoring address")
	}
	first := time.Since(start)
	start = time.Now()
	_, err2 := tg.ScoringBase(context.Background())
	if err2 == nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second look: %v after %v (the first took %v); want the remembered failure at once", err2, time.Since(start), first)
	}
}
