package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline/faultline/internal/freeport"
)

// Versions of the node's parts that scripts/kubenode.sh builds; the
// kubelet and kube-proxy are K8sVersion.
const (
	ContainerdVersion = "v2.4.2"
	RuncVersion       = "v1.5.3"
	CNIPluginsVersion = "v1.10.0"
	CoreDNSVersion    = "v1.15.0"
)

// NodeAssets returns the directory of the node's binaries:
// $KUBE_NODE_ASSETS, else the cache scripts/kubenode.sh builds into.
func NodeAssets() string {
	if d := os.Getenv("KUBE_NODE_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(Assets()), "kubenode-"+K8sVersion+"-containerd-"+ContainerdVersion+
		"-runc-"+RuncVersion+"-cni-"+CNIPluginsVersion+"-coredns-"+CoreDNSVersion)
}

var nodeBinaries = []string{"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "runc",
	"cni/bridge", "cni/host-local", "cni/loopback", "coredns"}

// Node is a Cluster with one real node: a kubelet on containerd and runc,
// pods on a CNI bridge with addresses from PodCIDR, Services programmed by
// kube-proxy (nftables) and named by CoreDNS (cluster.local). Its pods run
// the images it built from this checkout (Image, with imagePullPolicy
// Never: no registry is reachable) and reach nothing off the machine.
type Node struct {
	*Cluster
	// Name is the node's name.
	Name string
	// Image runs the faultline binary of this checkout, built static:
	// its entrypoint is /faultline, so a container's args are a
	// faultline command line.
	Image string
	// PodCIDR holds the pods' addresses; GatewayIP, the bridge's own, is
	// the node's address. ServiceCIDR holds the Services' cluster IPs;
	// DNSIP is the kube-dns Service's.
	PodCIDR, GatewayIP, ServiceCIDR, DNSIP string
	// Clientset is a client of the API server, as the admin.
	Clientset kubernetes.Interface

	nodeAssets string
	lock       *os.File
	closeOnce  sync.Once
	closeErr   error
	// beforeUnlock, when set, runs at the end of Close, while no other
	// node can start (for a test's look at the host).
	beforeUnlock func()
}

// Image names the node imports; the pause image is its pinned sandbox.
const (
	FaultlineImage = "faultline.local/faultline:test"
	pauseImage     = "faultline.local/pause:test"
)

func requireNode(t testing.TB) {
	t.Helper()
	requireAssets(t, Assets(), "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
	requireAssets(t, NodeAssets(), nodeBinaries...)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubetest: a real node needs root")
		}
		t.Skip("kubetest: a real node needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("kubetest: kube-proxy's nftables mode needs the nft binary (Debian's nftables; scripts/deps.sh installs it)")
	}
}

var shared struct {
	sync.Mutex
	node *Node
	err  error
}

// SharedNode returns the node that every test of this test binary that
// calls it shares, started by the first: a node takes seconds to start,
// and one runs on a machine at a time. Main stops it after the last test,
// so a package that uses it has TestMain call Main. It needs root, and
// skips without it (fails under CI=true), as it does without the
// binaries. Tests share its namespaces: each makes its own.
func SharedNode(t testing.TB) *Node {
	t.Helper()
	requireNode(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.node == nil && shared.err == nil {
		start := time.Now()
		shared.node, shared.err = NewNode()
		t.Logf("kubetest: node started in %v", time.Since(start).Round(100*time.Millisecond))
		if shared.err != nil && shared.node != nil {
			t.Log(shared.node.logTails(8192))
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	n := shared.node
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(n.logTails(8192))
		}
	})
	return n
}

// CloseShared stops the shared node now, if one runs, and reports what it
// left on the host; the next SharedNode starts another.
func CloseShared() error {
	shared.Lock()
	defer shared.Unlock()
	n, err := shared.node, shared.err
	shared.node, shared.err = nil, nil
	if n != nil {
		return n.Close()
	}
	return err
}

// Main runs the tests and then stops the node SharedNode started, if any.
// It returns the exit code for os.Exit: non-zero when a test failed or the
// node left anything on the host.
func Main(m *testing.M) int {
	code := m.Run()
	if err := CloseShared(); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: shared node: %v\n", err)
		code = 1
	}
	return code
}

// NewNode starts a control plane with a real node, waiting for another
// process's node to stop first; Close stops it. On an error, the returned
// Node (when not nil) still needs its Close, which undoes what was done.
// Tests use SharedNode.
func NewNode() (*Node, error) {
	lock, err := lockHost(15 * time.Minute)
	if err != nil {
		return nil, err
	}
	n := &Node{
		Cluster: &Cluster{dir: nodeDir, assets: Assets()},
		Name:    "faultline-node", Image: FaultlineImage,
		PodCIDR: podCIDR, GatewayIP: gatewayIP, ServiceCIDR: serviceCIDR, DNSIP: dnsIP,
		nodeAssets: NodeAssets(), lock: lock,
	}
	if err := n.start(); err != nil {
		return n, fmt.Errorf("kubetest: start node: %w", err)
	}
	return n, nil
}

// start brings the node up, in the order each part needs the one before.
func (n *Node) start() error {
	// What a node that died with its test binary left is removed first.
	if err := sweepHost(n.nodeAssets); err != nil {
		return fmt.Errorf("remove what an earlier node left: %w", err)
	}
	if err := saveHostState(); err != nil {
		return err
	}
	for _, d := range []string{"cni", "pod-logs", "images"} {
		if err := os.MkdirAll(filepath.Join(nodeDir, d), 0o755); err != nil {
			return err
		}
	}
	if err := n.makeBridge(); err != nil {
		return err
	}
	if err := n.startAPIServer(serviceCIDR); err != nil {
		return err
	}
	if err := n.startControllers(fakeNodeControllers + ",endpointslice-controller"); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(n.Config)
	if err != nil {
		return err
	}
	n.Clientset = cs
	if err := n.startContainerd(); err != nil {
		return err
	}
	if err := n.importImages(); err != nil {
		return err
	}
	if err := n.startDNS(); err != nil {
		return err
	}
	if err := n.startKubelet(); err != nil {
		return err
	}
	// kube-proxy reads the node's address from its Node, which the kubelet
	// registers, and exits when it changes: it starts after.
	if err := waitFor(time.Minute, "node "+n.Name+" registered", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := n.Clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := n.startKubeProxy(); err != nil {
		return err
	}
	return n.waitReady(2 * time.Minute)
}

// makeBridge creates the pods' bridge with the gateway address, before
// any pod: CoreDNS listens on that address, the kubelet names it as the
// node's, and the CNI bridge plugin (isGateway false) finds the bridge
// already there. Forwarding is on for this bridge alone (a Service's
// address is translated on the host and sent back out the bridge);
// net.ipv4.ip_forward stays as it was, so nothing is routed off the
// machine.
func (n *Node) makeBridge() error {
	for _, args := range [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", gatewayIP + "/24", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return os.WriteFile("/proc/sys/net/ipv4/conf/"+bridgeName+"/forwarding", []byte("1"), 0o644)
}

func (n *Node) write(name, content string) (string, error) {
	path := filepath.Join(nodeDir, name)
	return path, os.WriteFile(path, []byte(content), 0o600)
}

func (n *Node) startContainerd() error {
	sock := filepath.Join(nodeDir, "containerd.sock")
	cfg, err := n.write("containerd.toml", fmt.Sprintf(containerdConfig, nodeDir, n.nodeAssets, pauseImage))
	if err != nil {
		return err
	}
	if _, err := n.write("cni/10-faultline.conflist", fmt.Sprintf(cniConfig, bridgeName, podCIDR, gatewayIP, serviceCIDR, gatewayIP, nodeDir)); err != nil {
		return err
	}
	// The shim is found on PATH.
	if err := n.run("containerd", filepath.Join(n.nodeAssets, "containerd"), []string{"PATH=" + n.nodeAssets + ":" + os.Getenv("PATH")}, "--config", cfg); err != nil {
		return err
	}
	return waitFor(30*time.Second, "containerd's socket", func() error {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// importImages builds the faultline binary of this checkout and the pause
// program, static, and imports into containerd's k8s.io namespace, where
// the kubelet's pods find them, an image of each and the shop's image
// (ShopImage: faultline beside the host's PostgreSQL and Redis).
func (n *Node) importImages() error {
	dir := filepath.Join(nodeDir, "images")
	build := exec.Command("go", "build", "-o", dir+"/",
		"github.com/faultline/faultline/cmd/faultline", "github.com/faultline/faultline/kubetest/internal/pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the images' binaries: %v: %s", err, out)
	}
	shopFiles, err := shopImageFiles(filepath.Join(dir, "faultline"))
	if err != nil {
		return fmt.Errorf("image %s: %w", ShopImage, err)
	}
	for _, img := range []struct {
		ref   string
		files []imageFile
		entry string
		env   []string
	}{
		{FaultlineImage, []imageFile{{Name: "/faultline", Src: filepath.Join(dir, "faultline"), Mode: 0o755}}, "/faultline", nil},
		{pauseImage, []imageFile{{Name: "/pause", Src: filepath.Join(dir, "pause"), Mode: 0o755}}, "/pause", nil},
		{ShopImage, shopFiles, "/faultline", []string{"TZ=UTC"}},
	} {
		tar := filepath.Join(dir, "image.tar")
		if err := writeFilesImage(tar, img.ref, img.files, img.entry, img.env); err != nil {
			return fmt.Errorf("image %s: %w", img.ref, err)
		}
		ctr := exec.Command(filepath.Join(n.nodeAssets, "ctr"), "--address", filepath.Join(nodeDir, "containerd.sock"),
			"--namespace", "k8s.io", "images", "import", tar)
		if out, err := ctr.CombinedOutput(); err != nil {
			return fmt.Errorf("import %s: %v: %s", img.ref, err, out)
		}
		_ = os.Remove(tar)
	}
	return nil
}

// startDNS runs CoreDNS on the host, on the bridge's address, answering
// cluster.local from the API server, and makes it the kube-dns Service
// (dnsIP) through an EndpointSlice of its own: no CoreDNS image, and the
// API server (on 127.0.0.1) needs no route from the pods.
func (n *Node) startDNS() error {
	ready, err := freeport.Get()
	if err != nil {
		return err
	}
	corefile, err := n.write("Corefile", fmt.Sprintf(corefile, gatewayIP, ready, n.Kubeconfig))
	if err != nil {
		return err
	}
	if err := n.run("coredns", filepath.Join(n.nodeAssets, "coredns"), nil, "-conf", corefile); err != nil {
		return err
	}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ready", ready), "", 60*time.Second); err != nil {
		return err
	}
	if err := n.post("/api/v1/namespaces/kube-system/services", fmt.Sprintf(`{"apiVersion":"v1","kind":"Service",
		"metadata":{"name":"kube-dns","namespace":"kube-system"},
		"spec":{"clusterIP":%q,"ports":[{"name":"dns","port":53,"protocol":"UDP"},{"name":"dns-tcp","port":53,"protocol":"TCP"}]}}`, dnsIP)); err != nil {
		return err
	}
	return n.post("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices", fmt.Sprintf(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
		"metadata":{"name":"kube-dns-host","namespace":"kube-system","labels":{"kubernetes.io/service-name":"kube-dns"}},
		"addressType":"IPv4","endpoints":[{"addresses":[%q],"conditions":{"ready":true}}],
		"ports":[{"name":"dns","port":53,"protocol":"UDP"},{"name":"dns-tcp","port":53,"protocol":"TCP"}]}`, gatewayIP))
}

func (n *Node) startKubeProxy() error {
	healthz, err := freeport.Get()
	if err != nil {
		return err
	}
	metrics, err := freeport.Get()
	if err != nil {
		return err
	}
	cfg, err := n.write("kube-proxy.yaml", fmt.Sprintf(kubeProxyConfig, n.Kubeconfig, n.Name, podCIDR, healthz, metrics, gatewayIP))
	if err != nil {
		return err
	}
	if err := n.run("kube-proxy", filepath.Join(n.nodeAssets, "kube-proxy"), nil, "--config", cfg); err != nil {
		return err
	}
	return waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/livez", healthz), "", 60*time.Second)
}

func (n *Node) startKubelet() error {
	port, err := freeport.Get()
	if err != nil {
		return err
	}
	healthz, err := freeport.Get()
	if err != nil {
		return err
	}
	resolv, err := n.write("resolv.conf", "") // pods' DNS is the cluster's alone: nothing upstream
	if err != nil {
		return err
	}
	cfg, err := n.write("kubelet.yaml", fmt.Sprintf(kubeletConfig, nodeDir, gatewayIP, port, healthz, dnsIP, resolv))
	if err != nil {
		return err
	}
	if err := n.run("kubelet", filepath.Join(n.nodeAssets, "kubelet"), nil, "--config", cfg, "--kubeconfig", n.Kubeconfig,
		"--root-dir", filepath.Join(nodeDir, "kubelet"), "--cert-dir", filepath.Join(nodeDir, "kubelet", "pki"), "--hostname-override", n.Name, "--node-ip", gatewayIP); err != nil {
		return err
	}
	return waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz), "", 60*time.Second)
}

// waitReady waits for the node to be Ready.
func (n *Node) waitReady(limit time.Duration) error {
	return waitFor(limit, "node "+n.Name+" Ready", func() error {
		if err := n.exited(); err != nil {
			return permanent{err}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		node, err := n.Clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("%s: %s", c.Reason, c.Message)
			}
		}
		return errors.New("no Ready condition yet")
	})
}

// Close deletes every pod, stops the node and its control plane, and
// removes everything the node added to the host: it returns what it could
// not remove, or what it finds still there. Calling it again returns the
// first result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// No controller may replace the pods deleted next.
		n.stopProcs("kube-controller-manager", "kube-scheduler")
		n.deletePods(30 * time.Second)
		n.stop()
		err := sweepHost(n.nodeAssets)
		if left := leftovers(n.nodeAssets); len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("left on the host: %s", strings.Join(left, ", ")))
		}
		if n.beforeUnlock != nil {
			n.beforeUnlock()
		}
		n.lock.Close()
		n.closeErr = err
	})
	return n.closeErr
}

// deletePods deletes every pod and waits, at most limit, for the kubelet
// to have stopped their containers and torn down their networks (CNI DEL):
// no process left in a pod cgroup, no veth on the bridge. What remains
// after that is the sweep's.
func (n *Node) deletePods(limit time.Duration) {
	if n.Clientset == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	nss, err := n.Clientset.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, ns := range nss.Items {
		_ = n.Clientset.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{})
	}
	_ = waitFor(limit, "pods torn down", func() error {
		if ents, _ := os.ReadDir("/sys/class/net/" + bridgeName + "/brif"); len(ents) > 0 {
			return fmt.Errorf("%d veths on %s", len(ents), bridgeName)
		}
		for _, d := range podCgroups() {
			if b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs")); len(strings.TrimSpace(string(b))) > 0 {
				return fmt.Errorf("processes in %s", d)
			}
		}
		return nil
	})
}

// permanent is an error that waitFor returns at once: waiting longer
// cannot help.
type permanent struct{ error }

// waitFor polls f until it returns nil, for at most limit.
func waitFor(limit time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return fmt.Errorf("%s: %w", what, p.error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %v: %w", what, limit, err)
		}
		time.Sleep(200 * time.Millisecond) // polling another process's progress
	}
}

// Logs returns the log of one of the node's processes (kubelet,
// containerd, kube-proxy, coredns, kube-apiserver, ...).
func (n *Node) Logs(name string) string {
	for _, p := range n.procs {
		if p.name == name {
			b, _ := os.ReadFile(p.logPath)
			return string(b)
		}
	}
	return ""
}

// PodLogs returns a container's log, read through the API server from the
// kubelet.
func (n *Node) PodLogs(ctx context.Context, namespace, pod, container string) (string, error) {
	rc, err := n.Clientset.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container}).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	return string(b), err
}
