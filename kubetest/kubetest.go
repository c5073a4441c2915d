// Package kubetest starts a real Kubernetes API server (kube-apiserver and
// etcd, built from the Go module proxy by scripts/kube.sh) on free loopback
// ports for tests: no fake clientset. Three setups, one per test:
//
//   - Start: the API server alone. Pods stay Pending and a Deployment's
//     replicas are only a number, which is all a fault's inject and revert
//     need.
//   - StartWithNodes: controllers and kwok's fake nodes. Pods become
//     Running and Ready and killed ones are replaced, but nothing runs.
//   - SharedNode: controllers and one real node (kubelet, containerd, runc,
//     a CNI bridge, kube-proxy, CoreDNS; scripts/kubenode.sh builds them),
//     shared by a test binary's tests. Pods of the faultline image run and
//     answer on their pod IPs and by Service name. It needs root, and
//     changes the host while it runs; NOTES.md says how, and what was
//     found on the way.
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
	"slices"
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
	procs                []*proc
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
	requireAssets(t, Assets(), "etcd", "kube-apiserver")
	c := &Cluster{dir: t.TempDir(), assets: Assets()}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Log(c.logTails(4096))
		}
	})
	if err := c.startAPIServer("10.0.0.0/24"); err != nil {
		t.Fatal(err)
	}
	return c
}

// requireAssets skips the test (fails it under CI=true) when one of the
// files is missing in dir.
func requireAssets(t testing.TB, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			script := "scripts/kube.sh"
			if dir != Assets() {
				script = "scripts/kubenode.sh"
			}
			if os.Getenv("CI") == "true" {
				t.Fatalf("kubetest: %s missing in %s: make test builds it (%s)", f, dir, script)
			}
			t.Skipf("kubetest: %s missing in %s: run %s", f, dir, script)
		}
	}
}

// startAPIServer runs etcd and kube-apiserver in c.dir, serving Services
// from serviceCIDR. What it started is in c.procs, for c.stop, also when
// it fails.
func (c *Cluster) startAPIServer(serviceCIDR string) error {
	ports := make([]int, 3)
	for i := range ports {
		p, err := freeport.Get()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	client, peer, secure := ports[0], ports[1], ports[2]
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	if err := c.run("etcd", filepath.Join(c.assets, "etcd"), nil, "--data-dir", filepath.Join(c.dir, "etcd"), "--name", "default",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	if err := waitHTTP(etcdURL+"/health", "", 30*time.Second); err != nil {
		return err
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	c.keyFile = filepath.Join(c.dir, "sa.key")
	_ = os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	_, _ = rand.Read(tok)
	userToken := hex.EncodeToString(tok)
	tokens := filepath.Join(c.dir, "tokens.csv")
	_ = os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"+userToken+",faultline-user,faultline-user\n"), 0o600)
	if err := c.run("kube-apiserver", filepath.Join(c.assets, "kube-apiserver"), nil,
		"--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(secure), "--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(c.dir, "certs"), "--token-auth-file", tokens,
		"--authorization-mode", "RBAC", "--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", c.keyFile, "--service-account-signing-key-file", c.keyFile,
		"--service-cluster-ip-range", serviceCIDR, "--disable-admission-plugins", "ServiceAccount",
		// Logs, attach and exec reach a kubelet at its node's address:
		// the node's name resolves nowhere here.
		"--kubelet-preferred-address-types", "InternalIP"); err != nil {
		return err
	}
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", secure)
	if err := waitHTTP(c.URL+"/readyz", token, 60*time.Second); err != nil {
		return err
	}
	c.Token = token
	c.Kubeconfig = writeKubeconfig(c.dir, "kubeconfig", c.URL, "admin", token)
	c.UserKubeconfig = writeKubeconfig(c.dir, "user-kubeconfig", c.URL, "faultline-user", userToken)
	c.Config = &rest.Config{Host: c.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400}
	return nil
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
	requireAssets(t, c.assets, "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml")
	if err := c.startControllers(fakeNodeControllers); err != nil {
		t.Fatal(err)
	}
	if err := c.run("kwok", filepath.Join(c.assets, "kwok"), nil,
		"--kubeconfig", c.Kubeconfig, "--manage-all-nodes=true", "--config", filepath.Join(c.assets, "kwok-stages.yaml"),
		"--server-address", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nodes; i++ {
		node := fmt.Sprintf(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-%d","labels":{"type":"kwok","topology.kubernetes.io/zone":"%c"}},"spec":{}}`, i, 'a'+rune((i-1)%3))
		if err := c.post("/api/v1/nodes", node); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// fakeNodeControllers are what kube-controller-manager runs beside kwok.
const fakeNodeControllers = "deployment-controller,replicaset-controller,statefulset-controller,garbage-collector-controller,namespace-controller,node-lifecycle-controller"

// startControllers runs kube-controller-manager (with these controllers)
// and kube-scheduler.
func (c *Cluster) startControllers(controllers string) error {
	if err := c.run("kube-controller-manager", filepath.Join(c.assets, "kube-controller-manager"), nil,
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
		"--controllers", controllers,
		"--service-account-private-key-file", c.keyFile, "--use-service-account-credentials=false"); err != nil {
		return err
	}
	return c.run("kube-scheduler", filepath.Join(c.assets, "kube-scheduler"), nil,
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0")
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

// proc is a process that a Cluster started; its output goes to its log.
type proc struct {
	name, logPath string
	cmd           *exec.Cmd
	log           *os.File
	done          chan struct{}
}

// run starts bin as name, with env added to this process's environment;
// its output goes to NAME.log in c.dir. c.stop ends it.
func (c *Cluster) run(name, bin string, env []string, args ...string) error {
	p := &proc{name: name, logPath: filepath.Join(c.dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return err
	}
	p.log = logf
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// stop ends every process c started, the last started first: SIGTERM,
// then after 10 s SIGKILL to its process group.
func (c *Cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop()
	}
	c.procs = nil
}

// stopProcs stops the named processes (as stop does), before the rest.
func (c *Cluster) stopProcs(names ...string) {
	var keep []*proc
	for _, p := range c.procs {
		if slices.Contains(names, p.name) {
			p.stop()
		} else {
			keep = append(keep, p)
		}
	}
	c.procs = keep
}

// exited reports a process of c's that has ended, which none should
// while the cluster runs.
func (c *Cluster) exited() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
		default:
		}
	}
	return nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.log.Close()
}

// logTails is the last n bytes of each process's log, for a failed test.
func (c *Cluster) logTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		log, _ := os.ReadFile(p.logPath)
		if len(log) > n {
			log = log[len(log)-n:]
		}
		fmt.Fprintf(&b, "%s log (last %d bytes):\n%s\n", p.name, n, log)
	}
	return b.String()
}

// waitHTTP polls url until it answers 200, for at most limit.
func waitHTTP(url, token string, limit time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a test server's own certificate
	defer client.CloseIdleConnections()
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
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: %s not ready after %v: %s", url, limit, last)
		case <-time.After(100 * time.Millisecond): // polling a server that is coming up
		}
	}
}
