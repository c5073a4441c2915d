// Package kubetest starts a real Kubernetes API server (kube-apiserver and
// etcd, built from the Go module proxy by scripts/kube.sh) on free loopback
// ports for tests: no fake clientset. Without controllers or nodes, pods
// stay Pending and a Deployment's replicas are only a number, which is all
// a fault's inject and revert need.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/faultline/faultline/internal/freeport"
)

// Versions are what scripts/kube.sh builds; Assets is where.
const (
	K8sVersion  = "v1.37.2"
	EtcdVersion = "v3.7.3"
	KwokVersion = "v0.8.0"
)

// Assets returns the directory of the control plane's binaries:
// $KUBE_ASSETS, else the cache scripts/kube.sh builds into.
func Assets() string {
	if d := os.Getenv("KUBE_ASSETS"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "faultline", "kube-"+K8sVersion+"-etcd-"+EtcdVersion+"-kwok-"+KwokVersion)
}

// Cluster is a running API server.
type Cluster struct {
	dir, assets, keyFile string
	// Kubeconfig is a file for clients (an admin token, TLS unchecked).
	Kubeconfig string
	// UserKubeconfig is the same server as user "faultline-user", who is
	// in no group and may do only what RBAC objects the test creates allow.
	UserKubeconfig string
	Config         *rest.Config
	Token          string
	URL            string
}

// Start runs etcd and kube-apiserver until the test ends. Without the
// binaries the test is skipped, except under CI=true, where it fails: make
// test builds them.
func Start(t testing.TB) *Cluster {
	t.Helper()
	assets := Assets()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("kubetest: %s missing in %s: make test builds it (scripts/kube.sh)", b, assets)
			}
			t.Skipf("kubetest: %s missing in %s: run scripts/kube.sh", b, assets)
		}
	}
	dir := t.TempDir()
	port := func() int {
		p, err := freeport.Get()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	client, peer, secure := port(), port(), port()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	start(t, dir, "etcd", filepath.Join(assets, "etcd"), "--data-dir", filepath.Join(dir, "etcd"), "--name", "default",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--unsafe-no-fsync", "--log-level", "warn")
	waitHTTP(t, etcdURL+"/health", "", 30*time.Second)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "sa.key")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	_, _ = rand.Read(tok)
	userToken := hex.EncodeToString(tok)
	tokens := filepath.Join(dir, "tokens.csv")
	_ = os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"+userToken+",faultline-user,faultline-user\n"), 0o600)
	start(t, dir, "kube-apiserver", filepath.Join(assets, "kube-apiserver"),
		"--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(secure), "--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(dir, "certs"), "--token-auth-file", tokens,
		"--authorization-mode", "RBAC", "--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", keyFile, "--service-account-signing-key-file", keyFile,
		"--service-cluster-ip-range", "10.0.0.0/24", "--disable-admission-plugins", "ServiceAccount")
	url := fmt.Sprintf("https://127.0.0.1:%d", secure)
	waitHTTP(t, url+"/readyz", token, 60*time.Second)

	kubeconfig := writeKubeconfig(dir, "kubeconfig", url, "admin", token)
	userKubeconfig := writeKubeconfig(dir, "user-kubeconfig", url, "faultline-user", userToken)
	cfg := &rest.Config{Host: url, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400}
	return &Cluster{Kubeconfig: kubeconfig, UserKubeconfig: userKubeconfig, Config: cfg, Token: token, URL: url, dir: dir, assets: assets, keyFile: keyFile}
}

func writeKubeconfig(dir, name, url, user, token string) string {
	file := filepath.Join(dir, name)
	_ = os.WriteFile(file, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: %s, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: %s}}]
current-context: test
`, url, user, token, user), 0o600)
	return file
}

// StartWithNodes is Start plus kube-controller-manager, kube-scheduler and
// kwok managing nodes fake nodes node-1..node-N: Deployments create pods,
// pods are scheduled, become Running and Ready, and killed ones are
// replaced, as in a real cluster.
func StartWithNodes(t testing.TB, nodes int) *Cluster {
	t.Helper()
	c := Start(t)
	for _, b := range []string{"kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml"} {
		if _, err := os.Stat(filepath.Join(c.assets, b)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("kubetest: %s missing in %s: make test builds it (scripts/kube.sh)", b, c.assets)
			}
			t.Skipf("kubetest: %s missing in %s: run scripts/kube.sh", b, c.assets)
		}
	}
	start(t, c.dir, "kube-controller-manager", filepath.Join(c.assets, "kube-controller-manager"),
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
		"--controllers", "deployment-controller,replicaset-controller,statefulset-controller,garbage-collector-controller,namespace-controller,node-lifecycle-controller",
		"--service-account-private-key-file", c.keyFile, "--use-service-account-credentials=false")
	start(t, c.dir, "kube-scheduler", filepath.Join(c.assets, "kube-scheduler"),
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0")
	start(t, c.dir, "kwok", filepath.Join(c.assets, "kwok"),
		"--kubeconfig", c.Kubeconfig, "--manage-all-nodes=true", "--config", filepath.Join(c.assets, "kwok-stages.yaml"),
		"--server-address", "127.0.0.1:0")
	for i := 1; i <= nodes; i++ {
		node := fmt.Sprintf(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-%d","labels":{"type":"kwok","topology.kubernetes.io/zone":"%c"}},"spec":{}}`, i, 'a'+rune((i-1)%3))
		if err := c.post("/api/v1/nodes", node); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// post creates an object from its JSON, as the admin.
func (c *Cluster) post(path, body string) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a test server's own certificate
	req, _ := http.NewRequest(http.MethodPost, c.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, b)
	}
	return nil
}

// start runs a control-plane binary until the test ends; its output goes
// to NAME.log, shown when the test fails.
func start(t testing.TB, dir, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4096 {
				b = b[len(b)-4096:]
			}
			t.Logf("%s log (last 4 KB):\n%s", name, b)
		}
	})
}

func waitHTTP(t testing.TB, url, token string, limit time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a test server's own certificate
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubetest: %s not ready after %v: %s", url, limit, last)
		case <-time.After(100 * time.Millisecond): // polling a server that is coming up
		}
	}
}
