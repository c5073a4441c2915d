package cli_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/kubetest"
	"github.com/faultline/faultline/process/processtest"
)

// cluster starts a real API server with namespace shop: 6 checkout pods
// on two nodes (zones a, b, c), a Deployment checkout with 3 replicas.
func cluster(t *testing.T) (*kubetest.Cluster, kubernetes.Interface) {
	t.Helper()
	c := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}))
	for _, n := range []string{"node-1", "node-2"} {
		must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}))
	}
	for i := range 6 {
		must(cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("checkout-%d", i), Labels: map[string]string{"app": "checkout", "zone": string(rune('a' + i%3))}},
			Spec:       corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", 1+i%2), Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}},
		}, metav1.CreateOptions{}))
	}
	three := int32(3)
	labels := map[string]string{"app": "checkout"}
	must(cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: appsv1.DeploymentSpec{
		Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}}},
	}}, metav1.CreateOptions{}))
	return c, cs
}

func writePodExperiment(t *testing.T, kubeconfig, inject string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pods.yaml")
	src := fmt.Sprintf(`name: pods
targets:
  checkout:
    pods: {namespace: shop, selector: app=checkout, kubeconfig: %q}
baseline: 1s
inject: %s
faults:
  - {name: zone a dies, target: checkout, select: {tags: {zone: a}}, pod_kill: {}}
  - {name: scale down, target: checkout, scale: {kind: deployment, name: checkout, replicas: 1}}
  - {name: cordon, target: checkout, select: {tags: {zone: b}}, cordon: {}}
recovery: 1s
`, kubeconfig, inject)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func replicas(t *testing.T, cs kubernetes.Interface) int32 {
	d, err := cs.AppsV1().Deployments("shop").Get(context.Background(), "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

func cordoned(t *testing.T, cs kubernetes.Interface) []string {
	var out []string
	nodes, _ := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			out = append(out, n.Name)
		}
	}
	return out
}

// Pod faults against a real kube-apiserver: zone a's pods are deleted, the
// Deployment scaled and the node cordoned for the window, then put back.
func TestPodFaultsOnARealAPIServer(t *testing.T) {
	c, cs := cluster(t)
	file := writePodExperiment(t, c.Kubeconfig, "2s")
	code, out, errOut := run(t, "run", file, "--dry-run", "--allow-no-stop", "--allow-remote")
	if code != 0 || !strings.Contains(out, "pod_kill") || !strings.Contains(out, "6 now (checkout-0") {
		t.Fatalf("dry run = %d %s %s", code, out, errOut)
	}
	if code, _, errOut := run(t, "run", file, "--allow-no-stop"); code != 2 || !strings.Contains(errOut, "Kubernetes cluster") {
		t.Fatalf("a pods target without --allow-remote = %d %q, want 2", code, errOut)
	}
	outDir := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := run(t, "run", file, "--allow-no-stop", "--allow-remote", "--out", outDir)
	if code != 0 {
		t.Fatalf("run = %d\n%s\n%s", code, stdout, stderr)
	}
	pods, _ := cs.CoreV1().Pods("shop").List(context.Background(), metav1.ListOptions{LabelSelector: "app=checkout"})
	if len(pods.Items) != 4 {
		t.Errorf("%d checkout pods left, want 4 (zone a's 2 deleted)", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Labels["zone"] == "a" {
			t.Errorf("pod %s of zone a survived", p.Name)
		}
	}
	if n := replicas(t, cs); n != 3 {
		t.Errorf("replicas %d after the run, want 3 back", n)
	}
	if c := cordoned(t, cs); len(c) != 0 {
		t.Errorf("nodes left cordoned: %v", c)
	}
	for _, want := range []string{"2 pod(s) deleted", "replicas 3 -> 1", "node(s) cordoned"} {
		if !strings.Contains(stdout, want) && !strings.Contains(readFile(t, filepath.Join(outDir, "result.json")), want) {
			t.Errorf("evidence %q missing", want)
		}
	}
}

func readFile(t *testing.T, path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// A runner killed with SIGKILL while the Deployment is scaled down and the
// nodes cordoned: recover puts both back from the journal.
func TestRecoverPutsKubernetesBack(t *testing.T) {
	c, cs := cluster(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(binary(t), "run", writePodExperiment(t, c.Kubeconfig, "60s"), "--allow-no-stop", "--allow-remote", "--out", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	processtest.WaitFor(t, "the faults", func() bool { return replicas(t, cs) == 1 && len(cordoned(t, cs)) > 0 })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	events, _ := journal.ReadFile(filepath.Join(out, "journal.jsonl"))
	if journal.Clean(events) {
		t.Fatal("the journal ended cleanly: the test proves nothing")
	}
	code, stdout, stderr := run(t, "recover", out)
	if code != 0 || !strings.Contains(stdout, "scaled deployment shop/checkout back to 3") || !strings.Contains(stdout, "uncordoned node") {
		t.Fatalf("recover = %d\n%s\n%s", code, stdout, stderr)
	}
	if n := replicas(t, cs); n != 3 {
		t.Errorf("replicas %d after recover, want 3", n)
	}
	if c := cordoned(t, cs); len(c) != 0 {
		t.Errorf("nodes left cordoned after recover: %v", c)
	}
}

// The kill switch in a cluster: 'halt --namespace' aborts a running pod
// experiment (exit 3) with every fault put back; a new run is refused
// until 'resume --namespace'.
func TestNamespaceHalt(t *testing.T) {
	c, cs := cluster(t)
	file := writePodExperiment(t, c.Kubeconfig, "60s")
	cmd := exec.Command(binary(t), "run", file, "--allow-no-stop", "--allow-remote", "--out", filepath.Join(t.TempDir(), "run"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	processtest.WaitFor(t, "the faults", func() bool { return replicas(t, cs) == 1 && len(cordoned(t, cs)) > 0 })
	if code, out, errOut := run(t, "halt", "--namespace", "shop", "--kubeconfig", c.Kubeconfig, "--reason", "test"); code != 0 {
		t.Fatalf("halt --namespace = %d %s %s", code, out, errOut)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("run after the namespace halt: %v, want exit 3", err)
	}
	if n := replicas(t, cs); n != 3 {
		t.Errorf("replicas %d after the halt, want 3 back", n)
	}
	if left := cordoned(t, cs); len(left) != 0 {
		t.Errorf("nodes left cordoned: %v", left)
	}
	code, _, errOut := run(t, "run", file, "--allow-no-stop", "--allow-remote", "--out", filepath.Join(t.TempDir(), "again"))
	if code != 4 || !strings.Contains(errOut, "namespace shop halted") {
		t.Errorf("run while the namespace is halted = %d %q, want 4", code, errOut)
	}
	if code, _, _ := run(t, "resume", "--namespace", "shop", "--kubeconfig", c.Kubeconfig); code != 0 {
		t.Errorf("resume --namespace = %d", code)
	}
	ns, _ := cs.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{})
	if _, ok := ns.Annotations["faultline/halt"]; ok {
		t.Error("annotation still there after resume")
	}
}

// With controllers and kwok nodes, pod_kill's evidence says when the
// replacements were Ready.
func TestPodKillEvidenceOfReplacement(t *testing.T) {
	c := kubetest.StartWithNodes(t, 3)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	four := int32(4)
	labels := map[string]string{"app": "checkout"}
	if _, err := cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: appsv1.DeploymentSpec{
		Replicas: &four, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "kill.yaml")
	_ = os.WriteFile(file, fmt.Appendf(nil, `name: kill-half
targets:
  checkout: {pods: {namespace: shop, selector: app=checkout, kubeconfig: %q}}
steady_state: [{condition: "ready_pods(app=checkout) >= 100%%", phases: [baseline, recovery]}]
baseline: 2s
inject: 10s
faults: [{name: half, target: checkout, select: {percent: 50}, pod_kill: {}}]
recovery: 10s
`, c.Kubeconfig), 0o644)
	out := filepath.Join(t.TempDir(), "run")
	// The baseline waits for the Deployment: its steady state is every pod Ready.
	processtest.WaitFor(t, "the Deployment Ready", func() bool {
		d, err := cs.AppsV1().Deployments("shop").Get(ctx, "checkout", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 4
	})
	code, stdout, stderr := run(t, "run", file, "--allow-no-stop", "--allow-remote", "--out", out)
	res := readFile(t, filepath.Join(out, "result.json"))
	if code != 0 || !strings.Contains(res, "2 pod(s) deleted") || !strings.Contains(res, "replacements Ready (4 pods)") {
		t.Fatalf("run = %d\n%s\n%s\n%s", code, stdout, stderr, res)
	}
}

// grant binds a new ClusterRole of these rules to kubetest's unprivileged
// user, both named name.
func grant(t *testing.T, cs kubernetes.Interface, name string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "faultline-user"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A run that could not read a namespace's kill switch could not be stopped
// by it: without the right to read namespaces the run is refused before it
// touches anything, and a run that loses that right (or the API server)
// stops and rolls back once the switch has been unreadable for
// kube.HaltUnreadableLimit.
func TestNamespaceKillSwitchUnreadable(t *testing.T) {
	c, cs := cluster(t)
	// What the pod experiment does, without reading namespaces.
	grant(t, cs, "faultline-pods",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"*"}},
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments", "deployments/scale", "replicasets", "statefulsets", "statefulsets/scale"}, Verbs: []string{"*"}})
	file := writePodExperiment(t, c.UserKubeconfig, "60s")
	code, _, errOut := run(t, "run", file, "--allow-no-stop", "--allow-remote", "--out", filepath.Join(t.TempDir(), "refused"))
	if code != 4 || !strings.Contains(errOut, "namespace shop: cannot read its kill switch") || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("run without the right to read namespaces = %d %q, want 4 naming the kill switch", code, errOut)
	}
	if n, left := replicas(t, cs), cordoned(t, cs); n != 3 || len(left) != 0 {
		t.Fatalf("the refused run touched the cluster: replicas %d, cordoned %v", n, left)
	}
	pods, err := cs.CoreV1().Pods("shop").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 6 {
		t.Fatalf("the refused run touched the pods: %d left, %v", len(pods.Items), err)
	}

	grant(t, cs, "faultline-namespaces", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}})
	var stdout, stderr strings.Builder
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(binary(t), "run", file, "--allow-no-stop", "--allow-remote", "--out", out)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	processtest.WaitFor(t, "the faults", func() bool { return replicas(t, cs) == 1 && len(cordoned(t, cs)) > 0 })
	if err := cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), "faultline-namespaces", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("run after losing the right to read namespaces: %v, want exit 3\n%s\n%s", err, stdout.String(), stderr.String())
	}
	// It gives up once the switch has been unreadable for the limit (10s),
	// said rounded to the second, at the first read that fails past it.
	b, err := os.ReadFile(filepath.Join(out, "result.json"))
	m := regexp.MustCompile(`interrupted during injection: the kill switch of namespace shop could not be read for (\d+)s`).FindSubmatch(b)
	if err != nil || m == nil {
		t.Errorf("result.json does not say why the run stopped (%v):\n%s", err, b)
	} else if secs, _ := strconv.Atoi(string(m[1])); time.Duration(secs)*time.Second < kube.HaltUnreadableLimit {
		t.Errorf("the run stopped after the switch was unreadable for %ss, before the limit %v", m[1], kube.HaltUnreadableLimit)
	}
	if n := replicas(t, cs); n != 3 {
		t.Errorf("replicas %d after the run stopped, want 3 back", n)
	}
	if left := cordoned(t, cs); len(left) != 0 {
		t.Errorf("nodes left cordoned: %v", left)
	}
}
