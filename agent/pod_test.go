package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kubetest"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/record"
)

// These tests run faultline's agent in pods of a real node (package
// kubetest): the runner is the faultline binary, its agent image is the
// node's image of this checkout.

func binary(t *testing.T) string { return processtest.Faultline(t) }

// paymentsPod starts, in a namespace of its own, one pod of the shop's
// card processor on :8090 and waits until it is Ready.
func paymentsPod(t *testing.T, n *kubetest.Node, ns string) *corev1.Pod {
	t.Helper()
	if _, err := n.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return shopPod(t, n, ns, "payments", 8090, "shop", "payments", "--listen", ":8090")
}

// shopPod starts a pod of the faultline image running args, ready when
// port takes connections, and waits until it is Ready.
func shopPod(t *testing.T, n *kubetest.Node, ns, name string, port int32, args ...string) *corev1.Pod {
	t.Helper()
	return shopPodShared(t, n, ns, name, port, false, args...)
}

// shopPodShared is shopPod, sharing one process namespace in the pod if
// shared.
func shopPodShared(t *testing.T, n *kubetest.Node, ns, name string, port int32, shared bool, args ...string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	cs := n.Clientset
	zero := int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &zero, Containers: []corev1.Container{{
			Name: name, Image: kubetest.FaultlineImage, ImagePullPolicy: corev1.PullNever, Args: args,
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}, PeriodSeconds: 1},
		}}},
	}
	if shared {
		pod.Spec.ShareProcessNamespace = &shared
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ready *corev1.Pod
	processtest.WaitFor(t, "pod "+name+" Ready", func() bool {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.Status.PodIP == "" {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = p
				return true
			}
		}
		return false
	})
	return ready
}

// answers reports whether the pod's card processor answers the host.
func answers(pod *corev1.Pod) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + net.JoinHostPort(pod.Status.PodIP, "8090") + "/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// experimentFile writes an experiment that cuts the pod off from the node
// (where the host's requests come from) through an agent, for duration,
// with the lease given.
func experimentFile(t *testing.T, n *kubetest.Node, ns, kubeconfig, duration, lease string) string {
	t.Helper()
	src := fmt.Sprintf(`name: pod partition
targets:
  payments:
    pods: {namespace: %s, selector: app=payments, kubeconfig: %q, agent_image: %q}
baseline: 1s
faults:
  - name: cut off from the node
    target: payments
    partition: {to: %q, reject: true}
    lease: %s
    duration: %s
recovery: 1s
`, ns, kubeconfig, kubetest.FaultlineImage, n.GatewayIP, lease, duration)
	return writeFile(t, "pod-partition.yaml", src)
}

// agentMessages returns the termination messages of the pod's exited
// agents, by container name.
func agentMessages(t *testing.T, n *kubetest.Node, ns string) map[string]string {
	t.Helper()
	return podAgentMessages(t, n, ns, "payments")
}

func podAgentMessages(t *testing.T, n *kubetest.Node, ns, pod string) map[string]string {
	t.Helper()
	p, err := n.Clientset.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range p.Status.EphemeralContainerStatuses {
		if s.State.Terminated != nil {
			out[s.Name] = s.State.Terminated.Message
		}
	}
	return out
}

func waitAgentExit(t *testing.T, n *kubetest.Node, ns string, count int) map[string]string {
	t.Helper()
	var msgs map[string]string
	processtest.WaitFor(t, "the agent's container to exit", func() bool {
		msgs = agentMessages(t, n, ns)
		return len(msgs) >= count
	})
	return msgs
}

// startRun starts faultline run in the background and waits until the
// fault is in place (the pod stops answering the host).
func startRun(t *testing.T, n *kubetest.Node, pod *corev1.Pod, file, out string) *exec.Cmd {
	t.Helper()
	return startRunIn(t, pod, file, out, t.TempDir())
}

// startRunIn is startRun with the state directory given.
func startRunIn(t *testing.T, pod *corev1.Pod, file, out, stateDir string) *exec.Cmd {
	t.Helper()
	cmd := launch(t, file, out, stateDir)
	processtest.WaitFor(t, "the partition inside the pod", func() bool {
		return errors.Is(answers(pod), syscall.ECONNREFUSED)
	})
	return cmd
}

// TestPodPartitionRun: a run puts a partition inside a pod through an
// agent, the pod's traffic from the node is refused while it holds, and
// the run takes it back; the agent says it was told to.
func TestPodPartitionRun(t *testing.T) {
	n := kubetest.SharedNode(t)
	pod := paymentsPod(t, n, "agent-run")
	if err := answers(pod); err != nil {
		t.Fatalf("before the run: %v", err)
	}
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(binary(t), "run", experimentFile(t, n, "agent-run", n.Kubeconfig, "3s", "15s"), "--allow-no-stop", "--allow-remote", "--out", out)
	cmd.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+t.TempDir())
	began := time.Now()
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("faultline run: %v\n%s", err, output)
	}
	t.Logf("the run took %.1f s:\n%s", time.Since(began).Seconds(), output)
	b, err := os.ReadFile(filepath.Join(out, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res record.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Faults) != 1 || res.Faults[0].InjectedAt == nil || res.Faults[0].RevertedAt == nil {
		t.Fatalf("faults %+v: want one injected and reverted\n%s", res.Faults, output)
	}
	if err := answers(pod); err != nil {
		t.Errorf("after the run: %v, want the pod to answer", err)
	}
	msgs := waitAgentExit(t, n, "agent-run", 1)
	for name, msg := range msgs {
		if !strings.HasPrefix(name, "faultline-") || !strings.Contains(msg, "reverted: told to") {
			t.Errorf("agent %s ended with %q, want faultline-… told to revert", name, msg)
		}
	}
}

// TestPodLeaseOutlivesNoRunner: a runner killed with SIGKILL while a
// partition holds inside a pod leaves it for at most the lease; then the
// pod answers again with no recover run. And recover, right after such a
// kill, takes it back at once.
func TestPodLeaseOutlivesNoRunner(t *testing.T) {
	n := kubetest.SharedNode(t)
	pod := paymentsPod(t, n, "agent-lease")

	const lease = 5 * time.Second
	cmd := startRun(t, n, pod, experimentFile(t, n, "agent-lease", n.Kubeconfig, "10m", lease.String()), filepath.Join(t.TempDir(), "run"))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	processtest.WaitFor(t, "the pod to answer once the lease ran out", func() bool { return answers(pod) == nil })
	t.Logf("measured: the pod answered again %.1f s after the runner was killed (lease %v)", time.Since(killed).Seconds(), lease)
	for name, msg := range waitAgentExit(t, n, "agent-lease", 1) {
		if !strings.Contains(msg, "lease of 5s ran out") {
			t.Errorf("agent %s ended with %q, want the lease to have run out", name, msg)
		}
	}

	// A lease of an hour: only recover can end it soon.
	out := filepath.Join(t.TempDir(), "run2")
	cmd = startRun(t, n, pod, experimentFile(t, n, "agent-lease", n.Kubeconfig, "10m", "1h"), out)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	rec := exec.Command(binary(t), "recover", out)
	rec.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+t.TempDir())
	if output, err := rec.CombinedOutput(); err != nil || !strings.Contains(string(output), "told to") {
		t.Fatalf("faultline recover: %v\n%s", err, output)
	}
	if err := answers(pod); err != nil {
		t.Errorf("right after recover: %v, want the pod to answer", err)
	}
	msgs := waitAgentExit(t, n, "agent-lease", 2)
	told := 0
	for _, msg := range msgs {
		if strings.Contains(msg, "reverted: told to") {
			told++
		}
	}
	if told != 1 {
		t.Errorf("agents ended with %v: want one told to revert by recover", msgs)
	}
}

// TestPodFaultRefusedWithoutAgentRole: an account that may kill pods but
// not run agents in them is refused before anything is touched.
func TestPodFaultRefusedWithoutAgentRole(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-refused"
	pod := paymentsPod(t, n, ns)
	ctx := context.Background()
	cs := n.Clientset
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "delete"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pods"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "faultline-user"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agent-refused-halt"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, ResourceNames: []string{ns}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent-refused-halt"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "agent-refused-halt"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "faultline-user"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(ctx, "agent-refused-halt", metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(ctx, "agent-refused-halt", metav1.DeleteOptions{})
	})
	file := experimentFile(t, n, ns, n.UserKubeconfig, "3s", "15s")
	dry := exec.Command(binary(t), "run", file, "--dry-run", "--allow-no-stop", "--allow-remote")
	dry.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+t.TempDir())
	if output, err := dry.CombinedOutput(); err == nil || !strings.Contains(string(output), "REFUSED: faults inside these pods run agents, but this account may not update pods/ephemeralcontainers, create pods/attach") {
		t.Errorf("--dry-run without the agent Role: %v\n%s\nwant it refused, naming what is missing", err, output)
	}
	cmd := exec.Command(binary(t), "run", file, "--allow-no-stop", "--allow-remote", "--out", filepath.Join(t.TempDir(), "run"))
	cmd.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+t.TempDir())
	output, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(string(output), "update pods/ephemeralcontainers, create pods/attach") || !strings.Contains(string(output), "agent-rbac.yaml") {
		t.Fatalf("run without the agent Role: %v\n%s\nwant exit 4 naming what is missing and agent-rbac.yaml", err, output)
	}
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.EphemeralContainers) != 0 {
		t.Errorf("the refused run added %v to the pod", p.Spec.EphemeralContainers)
	}
}

// TestPodHaltRelayed: 'faultline halt --namespace' stops a live run, whose
// agents take their fault back at once: the pod answers again long before
// the fault's end or its lease.
func TestPodHaltRelayed(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-halt"
	pod := paymentsPod(t, n, ns)
	stateDir := t.TempDir()
	cmd := startRunIn(t, pod, experimentFile(t, n, ns, n.Kubeconfig, "10m", "1h"), filepath.Join(t.TempDir(), "run"), stateDir)
	// status shows the fault inside the pod, and its agent.
	status := exec.Command(binary(t), "status")
	status.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+stateDir)
	if output, err := status.CombinedOutput(); err != nil || !strings.Contains(string(output), "inside pod "+ns+"/payments, held by its agent container faultline-") {
		t.Errorf("faultline status: %v\n%s\nwant the partition inside the pod named", err, output)
	}
	halt := exec.Command(binary(t), "halt", "--namespace", ns, "--kubeconfig", n.Kubeconfig, "--reason", "test")
	if output, err := halt.CombinedOutput(); err != nil {
		t.Fatalf("faultline halt --namespace: %v\n%s", err, output)
	}
	halted := time.Now()
	processtest.WaitFor(t, "the pod to answer after the halt", func() bool { return answers(pod) == nil })
	t.Logf("measured: the pod answered again %.2f s after the halt", time.Since(halted).Seconds())
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("the halted run: %v, want exit 3", err)
	}
	for name, msg := range waitAgentExit(t, n, ns, 1) {
		if !strings.Contains(msg, "reverted: told to") {
			t.Errorf("agent %s ended with %q, want told to revert", name, msg)
		}
	}
}

// stressProcs lists the host's processes running 'faultline stress cpu'
// in the PID namespace of pid.
func stressProcs(t *testing.T, pid string) []string {
	t.Helper()
	want, err := os.Readlink("/proc/" + pid + "/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), "stress\x00cpu") {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && ns == want {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPodCPUStress: a cpu stress on a pods target runs inside the pod, by
// its agent, in the target container's PID namespace, and is gone once
// the run ends.
func TestPodCPUStress(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-stress"
	pod := paymentsPod(t, n, ns)
	// The app's process, found on the host by its container's cgroup.
	p, err := n.Clientset.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil || len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("pod %s: %v", pod.Name, err)
	}
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	var appPid string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cg, err := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if err == nil && id != "" && strings.Contains(string(cg), id) {
			appPid = e.Name()
			break
		}
	}
	if appPid == "" {
		t.Fatalf("no process of container %s on the host", id)
	}
	src := fmt.Sprintf(`name: pod cpu
targets:
  payments:
    pods: {namespace: %s, selector: app=payments, kubeconfig: %q, agent_image: %q}
baseline: 1s
faults:
  - {name: busy card processor, target: payments, cpu: {workers: 1, load: 50}, duration: 10m}
recovery: 1s
`, ns, n.Kubeconfig, kubetest.FaultlineImage)
	cmd := launch(t, writeFile(t, "pod-cpu.yaml", src), filepath.Join(t.TempDir(), "run"), t.TempDir())
	processtest.WaitFor(t, "the stress inside the pod", func() bool { return len(stressProcs(t, appPid)) == 1 })
	// Every thread of the stress runs at the lowest priority: the agent
	// beside it gets the CPU to revert it.
	for _, pid := range stressProcs(t, appPid) {
		tasks, _ := os.ReadDir("/proc/" + pid + "/task")
		for _, task := range tasks {
			stat, err := os.ReadFile("/proc/" + pid + "/task/" + task.Name() + "/stat")
			if err != nil {
				continue // the thread ended
			}
			// Field 19 is the nice value; fields count after the ")" that ends the name.
			f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
			if len(f) < 17 || f[16] != "19" {
				t.Errorf("stress %s thread %s runs at nice %v, want 19", pid, task.Name(), f[16:17])
			}
		}
	}
	// Ended as Ctrl-C ends a run: the fault is reverted, the agent stops the stress.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	processtest.WaitFor(t, "the stress to end", func() bool { return len(stressProcs(t, appPid)) == 0 })
	for name, msg := range waitAgentExit(t, n, ns, 1) {
		if !strings.Contains(msg, "reverted: told to") {
			t.Errorf("agent %s ended with %q, want told to revert", name, msg)
		}
	}
}

// latencyPods starts in ns the card processor and a balancer in front of
// it, and returns how long a call through the balancer takes (an error for
// a failed one) and an experiment that adds 1 s of latency to the
// balancer's connections to the processor, inside its pod, with the lease
// given ("" for the default).
func latencyPods(t *testing.T, n *kubetest.Node, ns, lease string) (took func() (time.Duration, error), src string) {
	t.Helper()
	payments := paymentsPod(t, n, ns)
	bal := shopPod(t, n, ns, "balancer", 8080, "shop", "balancer", "--listen", ":8080", "--backends", net.JoinHostPort(payments.Status.PodIP, "8090"))
	url := "http://" + net.JoinHostPort(bal.Status.PodIP, "8080") + "/stats"
	took = func() (time.Duration, error) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	if lease != "" {
		lease = ", lease: " + lease
	}
	src = fmt.Sprintf(`name: pod latency
targets:
  balancer:
    pods: {namespace: %s, selector: app=balancer, kubeconfig: %q, agent_image: %q}
  to-payments:
    intercept: {from: balancer, to: ":8090"}
baseline: 1s
faults:
  - {name: slow card processor, target: to-payments, latency: {delay: 1s}%s, duration: 10m}
recovery: 1s
`, ns, n.Kubeconfig, kubetest.FaultlineImage, lease)
	return took, src
}

// TestPodInterceptLatency: an intercept from a pods target puts the
// connections its pods open to :8090 through a proxy inside each pod, with
// a latency toxic: the balancer's answers from the card processor take at
// least the second it adds, until the run ends.
func TestPodInterceptLatency(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-intercept"
	took, src := latencyPods(t, n, ns, "")
	if _, err := took(); err != nil {
		t.Fatalf("before the run: %v", err)
	}
	cmd := launch(t, writeFile(t, "pod-latency.yaml", src), filepath.Join(t.TempDir(), "run"), t.TempDir())
	processtest.WaitFor(t, "the latency inside the balancer's pod", func() bool {
		d, err := took()
		return err == nil && d >= time.Second
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for name, msg := range waitPodAgentExit(t, n, ns, "balancer") {
		if !strings.Contains(msg, "reverted: told to") {
			t.Errorf("agent %s ended with %q, want told to revert", name, msg)
		}
	}
	if _, err := took(); err != nil {
		t.Errorf("after the run: %v", err)
	}
	if msgs := podAgentMessages(t, n, ns, "payments"); len(msgs) != 0 {
		t.Errorf("agents in the payments pod %v: the intercept is the balancer's alone", msgs)
	}
}

func waitPodAgentExit(t *testing.T, n *kubetest.Node, ns, pod string) map[string]string {
	t.Helper()
	var msgs map[string]string
	processtest.WaitFor(t, "the agent's container in "+pod+" to exit", func() bool {
		msgs = podAgentMessages(t, n, ns, pod)
		return len(msgs) >= 1
	})
	return msgs
}

// TestPodStop: stop: {} on a pods target freezes the target container's
// processes (SIGSTOP by the agent, in a pod that shares one process
// namespace) until the run ends; in a pod that does not, the run is
// refused before anything is touched, saying why.
func TestPodStop(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-stop"
	if _, err := n.Clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	write := func(app string) string {
		src := fmt.Sprintf(`name: pod stop
targets:
  app:
    pods: {namespace: %s, selector: app=%s, kubeconfig: %q, agent_image: %q}
baseline: 1s
faults:
  - {name: frozen card processor, target: app, stop: {}, duration: 10m}
recovery: 1s
`, ns, app, n.Kubeconfig, kubetest.FaultlineImage)
		return writeFile(t, app+".yaml", src)
	}

	alone := shopPod(t, n, ns, "alone", 8090, "shop", "payments", "--listen", ":8090")
	cmd := exec.Command(binary(t), "run", write("alone"), "--allow-no-stop", "--allow-remote", "--out", filepath.Join(t.TempDir(), "refused"))
	cmd.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+t.TempDir())
	output, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(string(output), "shareProcessNamespace: true") {
		t.Errorf("stop in a pod of its own process namespace: %v\n%s\nwant exit 4 naming shareProcessNamespace", err, output)
	}
	if p, err := n.Clientset.CoreV1().Pods(ns).Get(context.Background(), alone.Name, metav1.GetOptions{}); err != nil || len(p.Spec.EphemeralContainers) != 0 {
		t.Errorf("the refused run touched the pod: %v %v", err, p.Spec.EphemeralContainers)
	}

	shared := shopPodShared(t, n, ns, "shared", 8090, true, "shop", "payments", "--listen", ":8090")
	cmd = launch(t, write("shared"), filepath.Join(t.TempDir(), "run"), t.TempDir())
	processtest.WaitFor(t, "the card processor frozen", func() bool {
		var ne net.Error
		return errors.As(answers(shared), &ne) && ne.Timeout() // the kernel still accepts; nobody answers
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := answers(shared); err != nil {
		t.Errorf("after the run: %v, want the card processor to answer", err)
	}
	for name, msg := range waitPodAgentExit(t, n, ns, "shared") {
		if !strings.Contains(msg, "reverted: told to") {
			t.Errorf("agent %s ended with %q, want told to revert", name, msg)
		}
	}
}

// launch starts faultline run FILE in the background, killed when the
// test ends, when it says what it printed if the test failed.
func launch(t *testing.T, file, out, stateDir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary(t), "run", file, "--allow-no-stop", "--allow-remote", "--out", out)
	cmd.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+stateDir)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("faultline run said:\n%s", logs.String())
		}
	})
	return cmd
}

// writeFile writes an experiment file for the test.
func writeFile(t *testing.T, name, src string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestPodKilledBeforeApplied: a runner killed as soon as it has journaled
// its intent to add an agent (the agent's container added or not, told to
// apply or not) leaves a pod that recover puts right, and a second recover
// has nothing to do.
func TestPodKilledBeforeApplied(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-intent"
	pod := paymentsPod(t, n, ns)
	out := filepath.Join(t.TempDir(), "run")
	stateDir := t.TempDir()
	cmd := launch(t, experimentFile(t, n, ns, n.Kubeconfig, "10m", "1h"), out, stateDir)
	processtest.WaitFor(t, "the agent's intent in the journal", func() bool {
		events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
		for _, e := range events {
			if e.Type == journal.Intent && e.Undo != nil && e.Undo.Kind == "pod_agent" {
				return true
			}
		}
		return false
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	recover := func() string {
		rec := exec.Command(binary(t), "recover", out)
		rec.Env = append(os.Environ(), "FAULTLINE_STATE_DIR="+stateDir)
		output, err := rec.CombinedOutput()
		if err != nil {
			t.Fatalf("faultline recover: %v\n%s", err, output)
		}
		return string(output)
	}
	t.Logf("recover said:\n%s", recover())
	if err := answers(pod); err != nil {
		t.Errorf("after recover: %v, want the pod to answer", err)
	}
	if again := recover(); !strings.Contains(again, "nothing to do") {
		t.Errorf("second recover said %q, want nothing to do", again)
	}
}

// TestPodDNSIntercept: a dns target intercepting a pods target's queries
// answers them inside each pod, by its agent, with the fault's rules: the
// balancer, which resolves its backend's Service name at each request,
// fails while the rule holds and works once the run ends.
func TestPodDNSIntercept(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-dns"
	paymentsPod(t, n, ns)
	ctx := context.Background()
	if _, err := n.Clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "payments"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "payments"},
			Ports: []corev1.ServicePort{{Port: 8090, TargetPort: intstr.FromInt32(8090)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bal := shopPod(t, n, ns, "balancer", 8080, "shop", "balancer", "--listen", ":8080", "--backends", "payments:8090")
	status := func() int {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + net.JoinHostPort(bal.Status.PodIP, "8080") + "/stats")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	processtest.WaitFor(t, "the balancer to reach payments by its Service name", func() bool { return status() == http.StatusOK })
	src := fmt.Sprintf(`name: pod dns
targets:
  balancer:
    pods: {namespace: %s, selector: app=balancer, kubeconfig: %q, agent_image: %q}
  names:
    dns: {intercept: {from: balancer}}
baseline: 1s
faults:
  - {name: payments unresolvable, target: names, dns: {rules: ["payments.*=SERVFAIL"]}, duration: 10m}
recovery: 1s
`, ns, n.Kubeconfig, kubetest.FaultlineImage)
	cmd := launch(t, writeFile(t, "pod-dns.yaml", src), filepath.Join(t.TempDir(), "run"), t.TempDir())
	processtest.WaitFor(t, "the balancer failing to resolve payments", func() bool { s := status(); return s != 0 && s != http.StatusOK })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	processtest.WaitFor(t, "the balancer to resolve payments again", func() bool { return status() == http.StatusOK })
	for name, msg := range waitPodAgentExit(t, n, ns, "balancer") {
		if !strings.Contains(msg, "reverted: told to") {
			t.Errorf("agent %s ended with %q, want told to revert", name, msg)
		}
	}
}

// TestPodLatencyLeaseOutlivesNoRunner: a runner killed with SIGKILL in the
// middle of an in-pod latency fault leaves it in place no longer than its
// lease: the balancer's calls to the card processor are fast again with
// no recover run (the time it took is logged as the figure), and a call
// in flight at the revert ends then (it hung for its client's whole
// timeout while the proxy's connections outlived the redirect's NAT).
func TestPodLatencyLeaseOutlivesNoRunner(t *testing.T) {
	n := kubetest.SharedNode(t)
	ns := "agent-latency-lease"
	const lease = 5 * time.Second
	took, src := latencyPods(t, n, ns, lease.String())
	cmd := launch(t, writeFile(t, "pod-latency-lease.yaml", src), filepath.Join(t.TempDir(), "run"), t.TempDir())
	processtest.WaitFor(t, "the latency inside the balancer's pod", func() bool {
		d, err := took()
		return err == nil && d >= time.Second
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	processtest.WaitFor(t, "the balancer's calls to be fast once the lease ran out", func() bool {
		d, err := took()
		return err == nil && d < 500*time.Millisecond
	})
	t.Logf("measured: calls through the pod were fast again %.1f s after the runner was killed (lease %v)", time.Since(killed).Seconds(), lease)
	msgs := waitPodAgentExit(t, n, ns, "balancer")
	if p, err := n.Clientset.CoreV1().Pods(ns).Get(context.Background(), "balancer", metav1.GetOptions{}); err == nil {
		for _, s := range p.Status.EphemeralContainerStatuses {
			if s.State.Terminated != nil {
				t.Logf("agent %s exited %.1f s after the runner was killed", s.Name, s.State.Terminated.FinishedAt.Sub(killed).Seconds())
			}
		}
	}
	for name, msg := range msgs {
		if !strings.Contains(msg, "lease of 5s ran out") {
			t.Errorf("agent %s ended with %q, want the lease to have run out", name, msg)
		}
	}
}
