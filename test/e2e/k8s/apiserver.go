// Package k8s runs a real etcd and kube-apiserver on loopback for tests, and holds the Kubernetes end-to-end tests.
package k8s

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
)

// Tokens and namespaces of the test cluster.
const (
	AdminToken      = "mlship-test-admin"      // system:masters
	RestrictedToken = "mlship-test-restricted" // bound to RestrictedRole in RestrictedNamespace only
	// RestrictedNamespace is where the restricted user holds every permission attach needs but RestrictedLacks.
	RestrictedNamespace = "ml-restricted"
)

// RestrictedLacks reports whether the restricted user's Role leaves p out: roles, rolebindings and pods/log.
func RestrictedLacks(p resources.Permission) bool {
	return p.Resource == "roles" || p.Resource == "rolebindings" || p.Subresource == "log"
}

// ErrNoBinaries means the testbed has not been built.
var ErrNoBinaries = errors.New("kube-apiserver and etcd not built: run 'bash test/testbed/scripts/build.sh'")

// BinDir is where test/testbed/scripts/build.sh puts the binaries ($MLSHIP_CACHE/testbed/bin).
func BinDir() string {
	cache := os.Getenv("MLSHIP_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "mlship")
	}
	return filepath.Join(cache, "testbed", "bin")
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Cluster is an etcd and a kube-apiserver (RBAC on, token auth), without controllers or kubelets.
type Cluster struct {
	URL   string // https://127.0.0.1:PORT
	dir   string
	procs []proc
	admin k8sclient.Interface
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Need returns the package's shared cluster, starting it on first use. Without the binaries the test
// is skipped, or fails when CI=true and MLSHIP_K8S_TESTS=1. Call StopShared from TestMain.
func Need(t testing.TB) *Cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = Start() })
	if errors.Is(shared.err, ErrNoBinaries) && !(os.Getenv("CI") == "true" && os.Getenv("MLSHIP_K8S_TESTS") == "1") {
		t.Skipf("skipping: %v", shared.err)
	}
	if shared.err != nil {
		t.Fatalf("start kube-apiserver: %v", shared.err)
	}
	return shared.c
}

// StopShared stops the shared cluster, if one was started.
func StopShared() {
	if shared.c != nil {
		shared.c.Stop()
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts etcd and kube-apiserver on free loopback ports and sets up the restricted user.
func Start() (*Cluster, error) {
	bin := BinDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%w (%s missing)", ErrNoBinaries, filepath.Join(bin, b))
		}
	}
	dir, err := os.MkdirTemp("", "mlship-apiserver-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	if err := c.start(bin); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(bin string) error {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	if err := c.spawn("etcd", filepath.Join(bin, "etcd"), "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL, "--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default="+peerURL, "--unsafe-no-fsync"); err != nil {
		return err
	}
	if err := c.writeKeys(); err != nil {
		return err
	}
	tokens := AdminToken + ",admin,admin,system:masters\n" + RestrictedToken + ",restricted,restricted\n"
	if err := os.WriteFile(filepath.Join(c.dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	// --advertise-address must not be loopback; with --endpoint-reconciler-type=none it is never dialed.
	if err := c.spawn("kube-apiserver", filepath.Join(bin, "kube-apiserver"), "--etcd-servers="+etcdURL,
		fmt.Sprintf("--secure-port=%d", ports[2]), "--bind-address=127.0.0.1", "--cert-dir="+filepath.Join(c.dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+filepath.Join(c.dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(c.dir, "sa.key"), "--token-auth-file="+filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/12", "--advertise-address=10.0.0.1",
		"--endpoint-reconciler-type=none"); err != nil {
		return err
	}
	if err := c.waitReady(90 * time.Second); err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(c.Kubeconfig(AdminToken, "default"))
	if err != nil {
		return err
	}
	if c.admin, err = k8sclient.NewForConfig(cfg); err != nil {
		return err
	}
	return c.setupRestricted(context.Background())
}

func (c *Cluster) writeKeys() error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

func (c *Cluster) spawn(name, path string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, logf, logf
	// If the test binary dies, so do its servers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

func (c *Cluster) waitReady(timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+AdminToken)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		for _, p := range c.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited: %s", p.name, c.logTail(p.name))
			default:
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %s", timeout, c.logTail("kube-apiserver"))
}

func (c *Cluster) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop kills the servers and removes their data.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	os.RemoveAll(c.dir)
}

// Kubeconfig is a kubeconfig for token, with namespace in its context.
func (c *Cluster) Kubeconfig(token, namespace string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: user, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: user, namespace: %q}}]
current-context: test
`, c.URL, token, namespace)
}

// Admin is a client with system:masters rights.
func (c *Cluster) Admin() k8sclient.Interface { return c.admin }

// CreateNamespace creates ns if it does not exist.
func (c *Cluster) CreateNamespace(ctx context.Context, ns string) error {
	_, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (c *Cluster) setupRestricted(ctx context.Context) error {
	if err := c.CreateNamespace(ctx, RestrictedNamespace); err != nil {
		return err
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "mlship-partial", Namespace: RestrictedNamespace}}
	for _, p := range resources.RequiredPermissions() {
		if RestrictedLacks(p) {
			continue
		}
		r := p.Resource
		if p.Subresource != "" {
			r += "/" + p.Subresource
		}
		role.Rules = append(role.Rules, rbacv1.PolicyRule{Verbs: []string{p.Verb}, APIGroups: []string{p.Group}, Resources: []string{r}})
	}
	if _, err := c.admin.RbacV1().Roles(RestrictedNamespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create role: %w", err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "mlship-partial", Namespace: RestrictedNamespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "restricted"}},
	}
	if _, err := c.admin.RbacV1().RoleBindings(RestrictedNamespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create role binding: %w", err)
	}
	return nil
}

// SetNodes makes the cluster have exactly n nodes (node-0 ... node-<n-1>) of cpu allocatable CPU each.
// No kubelet runs: the Node objects only carry capacity.
func (c *Cluster) SetNodes(ctx context.Context, n int, cpu string) error {
	q, err := resource.ParseQuantity(cpu)
	if err != nil {
		return err
	}
	have, err := c.admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, node := range have.Items {
		if err := c.admin.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
			Status: corev1.NodeStatus{
				Capacity:    corev1.ResourceList{corev1.ResourceCPU: q, corev1.ResourcePods: resource.MustParse("110")},
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: q, corev1.ResourcePods: resource.MustParse("110")},
			},
		}
		created, err := c.admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		// Create may drop the status; set it through the status subresource to be sure.
		created.Status = node.Status
		if _, err := c.admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}
