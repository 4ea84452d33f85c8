package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// testbed is the running test cluster of test/testbed, as its testbed.env describes it.
type testbed struct {
	env        map[string]string
	kubeconfig []byte
	cs         kubernetes.Interface
	version    string
}

func openTestbed(ctx context.Context, envFile string) (*testbed, error) {
	up := "start it with 'bash test/testbed/scripts/up.sh' (after 'bash test/testbed/scripts/build.sh' once)"
	f, err := os.Open(envFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the test cluster is not running (no %s): %s", envFile, up)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "), "=")
		if ok {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	for _, k := range []string{"KUBECONFIG", "REGISTRY", "NODE", "KWOK_NODE", "PYTHON_IMAGE"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s has no %s: %s", envFile, k, up)
		}
	}
	kc, err := os.ReadFile(env["KUBECONFIG"])
	if err != nil {
		return nil, fmt.Errorf("testbed kubeconfig: %w (%s)", err, up)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("testbed kubeconfig: %w", err)
	}
	// The same client limits as mlship's target, so the baseline is not throttled differently.
	rc.QPS, rc.Burst, rc.Timeout = 200, 400, 30*time.Second // as mlship's (internal/compute/kubernetes.Config)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("the test cluster's API server does not answer (%v): %s", err, up)
	}
	return &testbed{env: env, kubeconfig: kc, cs: cs, version: v.GitVersion}, nil
}

// checkKWOKCapacity refuses to start when the KWOK node cannot hold the scale run's pods.
func (tb *testbed) checkKWOKCapacity(ctx context.Context, pods int) error {
	n, err := tb.cs.CoreV1().Nodes().Get(ctx, tb.env["KWOK_NODE"], metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("KWOK node: %w", err)
	}
	have := n.Status.Allocatable.Pods().Value()
	if have < int64(pods) {
		return fmt.Errorf("the KWOK node %s takes %d pods, the run needs %d: lower -services, or restart the testbed "+
			"(test/testbed/node/kwok/node.yaml allows 250), or patch the live node: kubectl patch node %s --subresource=status "+
			`--type=merge -p '{"status":{"allocatable":{"pods":"250"},"capacity":{"pods":"250"}}}'`, n.Name, have, pods, n.Name)
	}
	return nil
}

// namespace creates a namespace of the bench's own; drop deletes it and waits until its pods are
// gone (the KWOK node's pod IPs and slots are then free for the next run).
func (tb *testbed) namespace(ctx context.Context, prefix string) (name string, drop func(), err error) {
	name = fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e6)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"mlship-bench": "k8s"}}}
	if _, err := tb.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return "", nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	return name, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := tb.cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			logf("delete namespace %s: %v", name, err)
			return
		}
		if err := waitNoPods(ctx, tb.cs, name, ""); err != nil {
			logf("namespace %s: %v", name, err)
		}
	}, nil
}

// waitNoPods waits until ns has no pods matching selector ("" = any).
func waitNoPods(ctx context.Context, cs kubernetes.Interface, ns, selector string) error {
	for {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(l.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pods still there: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// pulls reads the kubelet's Pulled events in ns: the pods whose image was pulled (with the
// kubelet's message, which says how long it took) and how many found it already on the node.
func (tb *testbed) pulls(ctx context.Context, ns string) (pulled []string, present int, err error) {
	l, err := tb.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Pulled"})
	if err != nil {
		return nil, 0, fmt.Errorf("events in %s: %w", ns, err)
	}
	for _, e := range l.Items {
		if strings.Contains(e.Message, "already present") {
			present += int(max(e.Count, 1))
		} else {
			pulled = append(pulled, e.InvolvedObject.Name+": "+e.Message)
		}
	}
	return pulled, present, nil
}
