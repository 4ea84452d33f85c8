package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlship/mlship/internal/compute/kubernetes"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/test/e2e/k8s"
)

func TestMain(m *testing.M) {
	code := m.Run()
	k8s.StopShared()
	os.Exit(code)
}

func TestInspectAdmin(t *testing.T) {
	c := k8s.Need(t)
	ctx := context.Background()
	if err := c.SetNodes(ctx, 2, "4"); err != nil {
		t.Fatal(err)
	}
	ci, err := kubernetes.Inspect(ctx, c.Kubeconfig(k8s.AdminToken, "default"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if ci.Server != c.URL || ci.Namespace != "default" || ci.Context != "test" || ci.Version == "" {
		t.Fatalf("ClusterInfo = %+v", ci)
	}
	if len(ci.Missing) != 0 || ci.Err() != nil {
		t.Fatalf("admin lacks %v", ci.Missing)
	}
	if ci.Nodes != 2 || ci.VCPUs != 8 {
		t.Fatalf("nodes %d, vcpus %g; want 2 and 8", ci.Nodes, ci.VCPUs)
	}
	if err := kubernetes.CheckPurpose(kubernetes.FastProd, ci.VCPUs); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "DevTest") {
		t.Fatalf("FastProd on 8 vCPUs: %v, want ErrInvalid suggesting DevTest", err)
	}
	if err := c.SetNodes(ctx, 4, "4000m"); err != nil {
		t.Fatal(err)
	}
	// An explicit namespace overrides the context's, and the stored kubeconfig carries it.
	ci, err = kubernetes.Inspect(ctx, c.Kubeconfig(k8s.AdminToken, "default"), "test", k8s.RestrictedNamespace)
	if err != nil || ci.VCPUs != 16 || ci.Namespace != k8s.RestrictedNamespace {
		t.Fatalf("after adding nodes: %+v, %v", ci, err)
	}
	if err := kubernetes.CheckPurpose(kubernetes.FastProd, ci.VCPUs); err != nil {
		t.Fatalf("FastProd on 16 vCPUs: %v", err)
	}
	again, err := kubernetes.Inspect(ctx, ci.Kubeconfig, "", "")
	if err != nil || again.Namespace != k8s.RestrictedNamespace {
		t.Fatalf("the reduced kubeconfig: %+v, %v", again, err)
	}
	if strings.Contains(string(ci.Kubeconfig), "current-context: \"\"") {
		t.Fatalf("reduced kubeconfig lost its context:\n%s", ci.Kubeconfig)
	}
}

func TestInspectMissingPermissions(t *testing.T) {
	c := k8s.Need(t)
	ci, err := kubernetes.Inspect(context.Background(), c.Kubeconfig(k8s.RestrictedToken, k8s.RestrictedNamespace), "", "")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range resources.RequiredPermissions() {
		if k8s.RestrictedLacks(p) {
			want = append(want, p.String())
		}
	}
	want = append(want, kubernetes.ListNodes.String())
	var got []string
	for _, p := range ci.Missing {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("missing = %v\nwant %v", got, want)
	}
	err = ci.Err()
	var mpe *kubernetes.MissingPermissionsError
	if !errors.Is(err, errdefs.ErrForbidden) || !errors.As(err, &mpe) || len(mpe.Missing) != len(want) {
		t.Fatalf("Err() = %v", err)
	}
	for _, p := range want {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("message does not name %q:\n%v", p, err)
		}
	}
	// In a namespace where it holds nothing, it lacks everything.
	ci, err = kubernetes.Inspect(context.Background(), c.Kubeconfig(k8s.RestrictedToken, "default"), "", "")
	if err != nil || len(ci.Missing) != len(resources.RequiredPermissions())+1 {
		t.Fatalf("in default: %d missing, %v", len(ci.Missing), err)
	}
}

func TestInspectBadInput(t *testing.T) {
	c := k8s.Need(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	unreachable := strings.Replace(string(c.Kubeconfig(k8s.AdminToken, "default")), strings.TrimPrefix(c.URL, "https://"), closed, 1)
	withExec := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh}}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	for _, tc := range []struct {
		name, kubeconfig, context, namespace string
		kind                                 error
		says                                 string
	}{
		{"garbage", "\x00\x01 not: [yaml", "", "", errdefs.ErrInvalid, "bad kubeconfig"},
		{"empty", "", "", "", errdefs.ErrInvalid, "no current context"},
		{"missing context", string(c.Kubeconfig(k8s.AdminToken, "default")), "nope", "", errdefs.ErrInvalid, `context "nope" not found`},
		{"exec plugin", withExec, "", "", errdefs.ErrInvalid, "exec credential plugins"},
		{"unreachable", unreachable, "", "", errdefs.ErrUnavailable, "connection refused"},
		{"bad token", string(c.Kubeconfig("wrong-token", "default")), "", "", errdefs.ErrInvalid, "refused the kubeconfig's credentials"},
		{"no namespace", string(c.Kubeconfig(k8s.AdminToken, "default")), "", "does-not-exist", errdefs.ErrInvalid, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kubernetes.Inspect(context.Background(), []byte(tc.kubeconfig), tc.context, tc.namespace)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Inspect = %v; want %v saying %q", err, tc.kind, tc.says)
			}
		})
	}
}

func TestPurge(t *testing.T) {
	c := k8s.Need(t)
	ctx := context.Background()
	ns := "purge-test"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	mine := map[string]string{"app.kubernetes.io/managed-by": "mlship"}
	for i, labels := range []map[string]string{mine, mine, {"app": "theirs"}} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: ns, Labels: labels}}
		if _, err := c.Admin().CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "mlship-router", Namespace: ns, Labels: mine}}
	if _, err := c.Admin().CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "mlship-router", Namespace: ns, Labels: mine},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := c.Admin().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	purged, err := kubernetes.Purge(ctx, c.Kubeconfig(k8s.AdminToken, ns))
	if err != nil {
		t.Fatal(err)
	}
	if purged["ConfigMap"] != 2 || purged["ServiceAccount"] != 1 || purged["Service"] != 1 {
		t.Fatalf("purged %v", purged)
	}
	left, err := c.Admin().CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range left.Items {
		names = append(names, cm.Name)
	}
	// kube-root-ca.crt is made by the controller manager, which does not run here.
	if !slices.Equal(names, []string{"cm-2"}) {
		t.Fatalf("config maps left: %v, want only the unlabelled cm-2", names)
	}
}
