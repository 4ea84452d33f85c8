package k8s_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli"
	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/server"
	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/internal/store/sqlite"
	"github.com/mlship/mlship/test/e2e/k8s"
)

func TestMain(m *testing.M) {
	code := m.Run()
	k8s.StopShared()
	os.Exit(code)
}

// env is a control plane served in-process and a CLI pointed at it.
type env struct {
	t       *testing.T
	url     string
	token   string
	dataDir string
	dir     string // kubeconfig files
}

func startServer(t *testing.T) *env {
	dataDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scoring := ln.Addr().String()
	ln.Close()
	s, err := server.New(context.Background(), server.Options{DataDir: dataDir, Addr: "127.0.0.1:0", ScoringAddr: scoring,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	return &env{t: t, url: hs.URL, token: s.AdminToken, dataDir: dataDir, dir: t.TempDir()}
}

// mlship runs the CLI in-process; it returns the exit code, stdout and stderr.
func (e *env) mlship(args ...string) (int, string, string) {
	e.t.Helper()
	io, _, out, errOut := cmdutil.Test()
	args = append([]string{"--server", e.url, "--token", e.token, "-o", "json"}, args...)
	code := cli.Run(context.Background(), io, args)
	return code, out.String(), errOut.String()
}

// fails asserts a non-zero exit whose stderr holds every one of says.
func (e *env) fails(says []string, args ...string) string {
	e.t.Helper()
	code, _, errOut := e.mlship(args...)
	if code == 0 {
		e.t.Fatalf("mlship %s succeeded; want an error saying %q", strings.Join(args, " "), says)
	}
	for _, s := range says {
		if !strings.Contains(errOut, s) {
			e.t.Fatalf("mlship %s: stderr does not say %q:\n%s", strings.Join(args, " "), s, errOut)
		}
	}
	return errOut
}

func (e *env) compute(args ...string) api.Compute {
	e.t.Helper()
	code, out, errOut := e.mlship(args...)
	if code != 0 {
		e.t.Fatalf("mlship %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	var c api.Compute
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		e.t.Fatalf("mlship %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return c
}

func (e *env) names() string {
	e.t.Helper()
	code, out, errOut := e.mlship("computetarget", "list")
	if code != 0 {
		e.t.Fatalf("list: %s", errOut)
	}
	var list []api.Compute
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatal(err)
	}
	var n []string
	for _, c := range list {
		n = append(n, c.Name)
	}
	return strings.Join(n, " ")
}

func (e *env) kubeconfig(name string, b []byte) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

const aksID = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/ml/providers/Microsoft.ContainerService/managedClusters/prod"

func TestAttachDetach(t *testing.T) {
	c := k8s.Need(t)
	ctx := context.Background()
	for _, ns := range []string{"ml-dev", "ml-prod", "ml-aks"} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	e := startServer(t)
	admin := func(ns string) string { return e.kubeconfig("admin-"+ns, c.Kubeconfig(k8s.AdminToken, ns)) }
	if got := e.names(); got != "local" {
		t.Fatalf("targets before any attach: %q", got)
	}

	// 2 nodes x 4 CPUs: too small for FastProd (the default), fine for DevTest.
	if err := c.SetNodes(ctx, 2, "4"); err != nil {
		t.Fatal(err)
	}
	e.fails([]string{"FastProd", "at least 12", "has 8", "--cluster-purpose DevTest"},
		"computetarget", "attach", "kubernetes", "-n", "small", "--kubeconfig", admin("ml-dev"))
	dev := e.compute("computetarget", "attach", "kubernetes", "-n", "dev-k8s", "--kubeconfig", admin("default"),
		"--namespace", "ml-dev", "--cluster-purpose", "DevTest", "--registry", "127.0.0.1:5000/mlship", "--insecure-registry")
	if dev.ComputeType != "kubernetes" || dev.ClusterPurpose != "DevTest" || dev.VCPUs != 8 || dev.ProvisioningState != "Succeeded" ||
		dev.Kubernetes == nil || dev.Kubernetes.Server != c.URL || dev.Kubernetes.Namespace != "ml-dev" || dev.Kubernetes.Context != "test" ||
		dev.Registry != "127.0.0.1:5000/mlship" || !dev.InsecureRegistry {
		t.Fatalf("attached: %+v", dev)
	}
	// Azure silently breaks the first target when a namespace is attached twice; mlship refuses.
	e.fails([]string{"already attached", `"dev-k8s"`}, "computetarget", "attach", "kubernetes", "-n", "dev-again",
		"--kubeconfig", admin("ml-dev"), "--cluster-purpose", "DevTest")
	// Through the API: 409 for the taken namespace, 403 for missing permissions, 201 with the compute on success.
	client := api.NewClient(e.url, e.token, nil)
	_, err := client.AttachCompute(ctx, "default", api.AttachRequest{Name: "dev-api", Kubeconfig: string(c.Kubeconfig(k8s.AdminToken, "ml-dev")), ClusterPurpose: "DevTest"})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("same namespace through the API: %v, want 409", err)
	}
	_, err = client.AttachCompute(ctx, "default", api.AttachRequest{Name: "r-api", Kubeconfig: string(c.Kubeconfig(k8s.RestrictedToken, k8s.RestrictedNamespace)), ClusterPurpose: "DevTest"})
	if !errors.Is(err, errdefs.ErrForbidden) {
		t.Fatalf("missing permissions through the API: %v, want 403", err)
	}
	e.fails([]string{"already exists"}, "computetarget", "attach", "kubernetes", "-n", "dev-k8s",
		"--kubeconfig", admin("default"), "--cluster-purpose", "DevTest")

	// Missing RBAC: every missing permission is named.
	var want []string
	for _, p := range resources.RequiredPermissions() {
		if k8s.RestrictedLacks(p) {
			want = append(want, p.String())
		}
	}
	want = append(want, "list nodes", "lacks")
	e.fails(want, "computetarget", "attach", "kubernetes", "-n", "restricted",
		"--kubeconfig", e.kubeconfig("restricted", c.Kubeconfig(k8s.RestrictedToken, k8s.RestrictedNamespace)), "--cluster-purpose", "DevTest")

	// Unreachable API server, bad kubeconfigs: the cause, and nothing recorded.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	unreachable := strings.Replace(string(c.Kubeconfig(k8s.AdminToken, "default")), strings.TrimPrefix(c.URL, "https://"), closed, 1)
	e.fails([]string{"cannot reach the API server", closed, "connection refused"},
		"computetarget", "attach", "kubernetes", "-n", "gone", "--kubeconfig", e.kubeconfig("unreachable", []byte(unreachable)), "--cluster-purpose", "DevTest")
	e.fails([]string{"bad kubeconfig"}, "computetarget", "attach", "kubernetes", "-n", "junk",
		"--kubeconfig", e.kubeconfig("junk", []byte("\x00\x01\x02 {{{ not a kubeconfig")), "--cluster-purpose", "DevTest")
	e.fails([]string{`context "prod" not found`}, "computetarget", "attach", "kubernetes", "-n", "junk",
		"--kubeconfig", admin("ml-dev"), "--context", "prod", "--cluster-purpose", "DevTest")
	e.fails([]string{"invalid compute name"}, "computetarget", "attach", "kubernetes", "-n", "1st", "--kubeconfig", admin("ml-dev"))
	e.fails([]string{"invalid compute name"}, "computetarget", "attach", "kubernetes", "-n", "ab", "--kubeconfig", admin("ml-dev"))
	e.fails([]string{"built-in"}, "computetarget", "attach", "kubernetes", "-n", "local", "--kubeconfig", admin("ml-dev"))
	e.fails([]string{"invalid registry"}, "computetarget", "attach", "kubernetes", "-n", "reg", "--kubeconfig", admin("ml-prod"),
		"--registry", "no-port", "--cluster-purpose", "DevTest")
	if got := e.names(); got != "local dev-k8s" {
		t.Fatalf("targets after the failed attaches: %q", got)
	}

	// 4 nodes x 4 CPUs = 16: FastProd is accepted.
	if err := c.SetNodes(ctx, 4, "4"); err != nil {
		t.Fatal(err)
	}
	prod := e.compute("computetarget", "attach", "kubernetes", "-n", "prod-k8s", "--kubeconfig", admin("ml-prod"))
	if prod.ClusterPurpose != "FastProd" || prod.VCPUs != 16 {
		t.Fatalf("FastProd attach: %+v", prod)
	}
	e.fails([]string{"invalid AKS resource id"}, "computetarget", "attach", "aks", "-n", "aks1", "-i", "/subscriptions/x/clusters/y",
		"--kubeconfig", admin("ml-aks"))
	aks := e.compute("computetarget", "attach", "aks", "-n", "aks1", "-i", aksID, "--kubeconfig", admin("ml-aks"))
	if aks.ResourceID != aksID || aks.Kubernetes.Namespace != "ml-aks" {
		t.Fatalf("aks attach: %+v", aks)
	}
	if got := e.names(); got != "local aks1 dev-k8s prod-k8s" {
		t.Fatalf("targets: %q", got)
	}
	if got := e.compute("computetarget", "show", "-n", "local"); got.ComputeType != "local" {
		t.Fatalf("show local: %+v", got)
	}
	if code, out, _ := e.mlship("computetarget", "show", "-n", "dev-k8s"); code != 0 || strings.Contains(out, k8s.AdminToken) {
		t.Fatalf("show: exit %d, or the credentials leak:\n%s", code, out)
	}
	e.fails([]string{"not found"}, "computetarget", "show", "-n", "nope")
	e.fails([]string{"out of scope", "mlship computetarget attach aks -n big"}, "computetarget", "create", "aks", "-n", "big", "--agent-count", "3")

	// The kubeconfig is stored sealed with the server key, never in clear.
	st, err := sqlite.Open(ctx, filepath.Join(e.dataDir, "mlship.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.GetCompute(ctx, "default", "dev-k8s")
	if err != nil || !strings.HasPrefix(rec.Kubeconfig, "v1.") || strings.Contains(rec.Kubeconfig, k8s.AdminToken) {
		t.Fatalf("stored kubeconfig is not sealed: %q, %v", rec.Kubeconfig, err)
	}

	// Detach: never while a service uses the target; --purge deletes only mlship's objects.
	now := time.Now().UTC()
	svc := store.Service{Workspace: "default", Name: "fraud", ComputeType: store.ComputeTypeAKS, ComputeTarget: "dev-k8s",
		State: store.StateHealthy, Generation: 1, CreatedTime: now, UpdatedTime: now}
	if err := st.CreateService(ctx, svc); err != nil {
		t.Fatal(err)
	}
	e.fails([]string{"used by", "fraud"}, "computetarget", "detach", "-n", "dev-k8s")
	if err := st.DeleteService(ctx, "default", "fraud"); err != nil {
		t.Fatal(err)
	}
	e.fails([]string{"built-in"}, "computetarget", "detach", "-n", "local")
	for name, labels := range map[string]map[string]string{"mine": {"app.kubernetes.io/managed-by": "mlship"}, "theirs": {"app": "x"}} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml-dev", Labels: labels}}
		if _, err := c.Admin().CoreV1().ConfigMaps("ml-dev").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := e.mlship("computetarget", "detach", "-n", "dev-k8s", "--purge")
	var res api.DetachResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Purged["ConfigMap"] != 1 {
		t.Fatalf("detach --purge: exit %d %s %s", code, out, errOut)
	}
	if _, err := c.Admin().CoreV1().ConfigMaps("ml-dev").Get(ctx, "theirs", metav1.GetOptions{}); err != nil {
		t.Fatalf("purge deleted an object mlship did not make: %v", err)
	}
	if _, err := c.Admin().CoreV1().ConfigMaps("ml-dev").Get(ctx, "mine", metav1.GetOptions{}); err == nil {
		t.Fatal("purge left mlship's object")
	}
	// Without --purge, the cluster is left alone.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "ml-prod", Labels: map[string]string{"app.kubernetes.io/managed-by": "mlship"}}}
	if _, err := c.Admin().CoreV1().ConfigMaps("ml-prod").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := e.mlship("computetarget", "detach", "-n", "prod-k8s"); code != 0 {
		t.Fatalf("detach: %s", errOut)
	}
	if _, err := c.Admin().CoreV1().ConfigMaps("ml-prod").Get(ctx, "kept", metav1.GetOptions{}); err != nil {
		t.Fatalf("detach without --purge touched the cluster: %v", err)
	}
	if got := e.names(); got != "local aks1" {
		t.Fatalf("targets after detach: %q", got)
	}
	// A detached namespace can be attached again.
	e.compute("computetarget", "attach", "kubernetes", "-n", "dev-again", "--kubeconfig", admin("ml-dev"), "--cluster-purpose", "devtest")
}
