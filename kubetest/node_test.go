package kubetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// hostBefore is the host before any node of this test binary ran, once
// what a node of a killed test binary left was removed.
var hostBefore map[string]string

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("nft"); err == nil && os.Geteuid() == 0 {
		if hostBefore, err = cleanHostSnapshot(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// deployment is replicas pods of the faultline image running args, ready
// when their port answers.
func deployment(name string, replicas int32, port int32, readiness corev1.ProbeHandler, args ...string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name: name, Image: FaultlineImage, ImagePullPolicy: corev1.PullNever,
						Args:  args,
						Ports: []corev1.ContainerPort{{ContainerPort: port}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: readiness, PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
}

func service(name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(port)}},
		},
	}
}

// readyPods waits for want Running and Ready pods of app in ns.
func readyPods(t *testing.T, n *Node, ns, app string, want int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := waitFor(2*time.Minute, fmt.Sprintf("%d ready %s pods", want, app), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list, err := n.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return err
		}
		pods = pods[:0]
		var states []string
		for _, p := range list.Items {
			ready := p.Status.Phase == corev1.PodRunning
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
					ready = false
				}
			}
			if ready && p.Status.PodIP != "" {
				pods = append(pods, p)
			}
			states = append(states, fmt.Sprintf("%s %s %v", p.Name, p.Status.Phase, p.Status.ContainerStatuses))
		}
		if len(pods) != want {
			return fmt.Errorf("%d of %d ready: %s", len(pods), want, strings.Join(states, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// payments creates namespace ns and in it a Deployment of replicas
// payments pods (faultline shop payments on port 8090, ready when /health
// answers), and waits for them to be Running and Ready.
func payments(ctx context.Context, t *testing.T, n *Node, ns string, replicas int32) []corev1.Pod {
	t.Helper()
	if _, err := n.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	health := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8090)}}
	if _, err := n.Clientset.AppsV1().Deployments(ns).Create(ctx, deployment("payments", replicas, 8090, health,
		"shop", "payments", "--listen", ":8090"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return readyPods(t, n, ns, "payments", int(replicas))
}

// get fetches url from the host until it answers 200 (a Service answers
// once kube-proxy has its endpoints), for at most 30 s, and returns the
// last answer: status, body and one response header.
func get(t *testing.T, url, header string) (int, string, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var status int
	var body, value string
	err := waitFor(30*time.Second, "GET "+url, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		status, body, value = resp.StatusCode, string(b), resp.Header.Get(header)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("%d %q", status, body)
		}
		return err
	})
	if err != nil && status == 0 {
		t.Fatal(err)
	}
	return status, body, value
}

// TestNodeRunsADeploymentReachableByPodIPAndServiceName: pods of the
// faultline image run on the real node, answer on their pod IPs, and a
// pod of another Deployment reaches them through their Service's DNS name
// (CoreDNS, then kube-proxy's nftables rules).
func TestNodeRunsADeploymentReachableByPodIPAndServiceName(t *testing.T) {
	n := SharedNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := "shop"
	pods := payments(ctx, t, n, ns, 2)
	if _, err := n.Clientset.CoreV1().Services(ns).Create(ctx, service("payments", 8090), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The balancer resolves its backend's short name through the pod's
	// resolv.conf (search shop.svc.cluster.local ...) at each request.
	listening := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}
	if _, err := n.Clientset.AppsV1().Deployments(ns).Create(ctx, deployment("balancer", 1, 8080, listening,
		"shop", "balancer", "--listen", ":8080", "--backends", "payments:8090"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, p := range pods {
		_, pn, err := net.ParseCIDR(n.PodCIDR)
		if err != nil {
			t.Fatal(err)
		}
		if ip := net.ParseIP(p.Status.PodIP); !pn.Contains(ip) {
			t.Errorf("pod %s has IP %s, want one in %s", p.Name, ip, n.PodCIDR)
		}
		if p.Spec.NodeName != n.Name {
			t.Errorf("pod %s runs on %q, want %q", p.Name, p.Spec.NodeName, n.Name)
		}
		status, body, _ := get(t, "http://"+net.JoinHostPort(p.Status.PodIP, "8090")+"/health", "")
		if status != http.StatusOK {
			t.Errorf("GET pod %s /health = %d %q, want 200", p.Name, status, body)
		}
	}

	bal := readyPods(t, n, ns, "balancer", 1)[0]
	status, body, instance := get(t, "http://"+net.JoinHostPort(bal.Status.PodIP, "8080")+"/stats", "X-Shop-Instance")
	if status != http.StatusOK || instance != "payments:8090" {
		t.Fatalf("GET balancer /stats = %d, X-Shop-Instance %q, body %q; want 200 from payments:8090", status, instance, body)
	}
	var stats map[string]any
	if err := json.Unmarshal([]byte(body), &stats); err != nil {
		t.Fatalf("balancer /stats from payments: %v: %q", err, body)
	}

	// The Service's cluster IP answers from the host too, and CoreDNS names it.
	svc, err := n.Clientset.CoreV1().Services(ns).Get(ctx, "payments", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(n.DNSIP, "53"))
	}}
	addrs, err := r.LookupHost(ctx, "payments.shop.svc.cluster.local")
	if err != nil || len(addrs) != 1 || addrs[0] != svc.Spec.ClusterIP {
		t.Errorf("lookup payments.shop.svc.cluster.local at %s = %v, %v; want [%s]", n.DNSIP, addrs, err, svc.Spec.ClusterIP)
	}
	if status, body, _ := get(t, "http://"+net.JoinHostPort(svc.Spec.ClusterIP, "8090")+"/health", ""); status != http.StatusOK {
		t.Errorf("GET service %s /health = %d %q, want 200", svc.Spec.ClusterIP, status, body)
	}
}

// cleanHostSnapshot removes what a node that died left, as NewNode does,
// and takes a snapshot of the host, holding the node lock meanwhile.
func cleanHostSnapshot() (map[string]string, error) {
	lock, err := lockHost(15 * time.Minute)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := sweepHost(NodeAssets()); err != nil {
		return nil, err
	}
	return hostSnapshot()
}

// hostSnapshot is what a node may change on the host, as tools other than
// kubetest's own see it. What other packages' tests, running beside this
// one, make and remove is left out: the network namespaces, bridges and
// nftables tables of runs (faultline names them so), and mounts under the
// temporary directory. So is the node lock's file, which stays for the
// next node.
func hostSnapshot() (map[string]string, error) {
	var errs []error
	others := func(out string) string {
		var keep []string
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, "flb-") && !strings.Contains(line, "faultline_") && !strings.Contains(line, "/run/netns/") &&
				!strings.HasPrefix(line, os.TempDir()+"/") && line != lockFile {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "\n")
	}
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %v: %v: %s", name, args, err, out))
		}
		return string(out)
	}
	snap := map[string]string{
		"links":    others(run("ip", "-o", "link", "show")),
		"addrs":    others(run("ip", "-o", "addr", "show")),
		"routes":   others(run("ip", "route", "show", "table", "all")),
		"nftables": others(run("nft", "list", "tables")),
	}
	var mounts []string
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			mounts = append(mounts, f[4])
		}
	}
	sort.Strings(mounts)
	snap["mounts"] = others(strings.Join(mounts, "\n"))
	var sysctls []string
	for _, s := range append(kubeletSysctls, "net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables",
		"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established") {
		b, _ := os.ReadFile("/proc/sys/" + s)
		sysctls = append(sysctls, s+"="+strings.TrimSpace(string(b)))
	}
	snap["sysctls"] = strings.Join(sysctls, "\n")
	var dirs []string
	for _, glob := range []string{"/run/*", "/var/run/netns/*", "/var/lib/*", "/var/log/*", "/etc/cni", "/opt/*", "/usr/libexec/*"} {
		m, _ := filepath.Glob(glob)
		dirs = append(dirs, m...)
	}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		ents, _ := os.ReadDir(h)
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(h, e.Name()))
			}
		}
	}
	sort.Strings(dirs)
	snap["files"] = others(strings.Join(dirs, "\n"))
	return snap, errors.Join(errs...)
}

// TestNodeRunsAnEphemeralContainerInATargetsNamespaces: an ephemeral
// container added through the pods/ephemeralcontainers subresource, with
// targetContainerName, runs in the pod's network namespace (it serves on
// the pod's IP) and in the target container's PID namespace; the pod's
// spec keeps it.
func TestNodeRunsAnEphemeralContainerInATargetsNamespaces(t *testing.T) {
	n := SharedNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "agent"
	pod := payments(ctx, t, n, ns, 1)[0]

	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, corev1.EphemeralContainer{
		TargetContainerName: "payments",
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "agent", Image: FaultlineImage, ImagePullPolicy: corev1.PullNever,
			Args: []string{"shop", "payments", "--listen", ":9090"},
		},
	})
	if _, err := n.Clientset.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, pod.Name, &pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var running *corev1.Pod
	err := waitFor(time.Minute, "ephemeral container running", func() error {
		p, err := n.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, s := range p.Status.EphemeralContainerStatuses {
			if s.Name == "agent" && s.State.Running != nil {
				running = p
				return nil
			}
		}
		return fmt.Errorf("statuses %v", p.Status.EphemeralContainerStatuses)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(running.Spec.EphemeralContainers) != 1 || running.Spec.EphemeralContainers[0].TargetContainerName != "payments" {
		t.Errorf("pod spec ephemeralContainers = %+v, want agent targeting payments", running.Spec.EphemeralContainers)
	}
	if status, body, _ := get(t, "http://"+net.JoinHostPort(pod.Status.PodIP, "9090")+"/health", ""); status != http.StatusOK {
		t.Errorf("GET the ephemeral container on the pod IP = %d %q, want 200", status, body)
	}

	// The two containers' processes, found on the host by their cgroups,
	// share one PID namespace.
	ids := map[string]string{}
	for _, s := range running.Status.ContainerStatuses {
		ids[s.Name] = strings.TrimPrefix(s.ContainerID, "containerd://")
	}
	for _, s := range running.Status.EphemeralContainerStatuses {
		ids[s.Name] = strings.TrimPrefix(s.ContainerID, "containerd://")
	}
	pidns := map[string]string{}
	for name, id := range ids {
		pid := containerPID(t, id)
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil {
			t.Fatal(err)
		}
		pidns[name] = link
	}
	if pidns["agent"] == "" || pidns["agent"] != pidns["payments"] {
		t.Errorf("PID namespaces %v: want the agent's to be the payments container's", pidns)
	}
}

// TestNodeLeavesTheHostAsItFoundIt: once the shared node ran a pod and
// stopped, the host's links, addresses, routes, nftables tables, mounts,
// cgroups, sysctls and directories are as they were before the first node
// of this test binary started. It stops the shared node: it comes last.
func TestNodeLeavesTheHostAsItFoundIt(t *testing.T) {
	n := SharedNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	payments(ctx, t, n, "leaves", 1)
	during, err := hostSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for what, want := range map[string]string{"links": bridgeName, "nftables": "table ip kube-proxy", "mounts": nodeDir, "files": "/sys/fs/cgroup/memory/kubepods"} {
		if !strings.Contains(during[what], want) {
			t.Errorf("while the node runs, host %s has no %s:\n%s", what, want, during[what])
		}
	}
	// The host once the node stopped, before another test binary's node
	// may start.
	var after map[string]string
	n.beforeUnlock = func() { after, err = hostSnapshot() }
	start := time.Now()
	if err := CloseShared(); err != nil {
		t.Errorf("CloseShared: %v", err)
	}
	t.Logf("node stopped in %v", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for k := range hostBefore {
		if d := cmp.Diff(hostBefore[k], after[k]); d != "" {
			t.Errorf("host %s after the node stopped (-before +after):\n%s", k, d)
		}
	}
}

// containerPID is the pid of a process in the cgroup of the container id.
func containerPID(t *testing.T, id string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if err == nil && strings.Contains(string(b), id) {
			var pid int
			fmt.Sscan(e.Name(), &pid)
			return pid
		}
	}
	t.Fatalf("no process in the cgroup of container %s", id)
	return 0
}
