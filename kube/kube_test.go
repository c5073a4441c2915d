package kube_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault/builtin"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/kubetest"
)

// shop creates namespace shop with pods checkout-0..n-1 (app=checkout,
// zones a, b, c), a Deployment checkout with 3 replicas and a node.
func shop(t *testing.T, cs kubernetes.Interface, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("checkout-%d", i), Labels: map[string]string{"app": "checkout", "zone": string(rune('a' + i%3))}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}},
		}
		if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:15"}}}}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	three := int32(3)
	labels := map[string]string{"app": "checkout"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: appsv1.DeploymentSpec{
		Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}}},
	}}
	if _, err := cs.AppsV1().Deployments("shop").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestFaultsOnARealAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	shop(t, cs, 6)
	cfg, err := kube.Config(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	pods, err := c.Pods(ctx, "shop", "app=checkout")
	if err != nil || len(pods) != 6 {
		t.Fatalf("Pods = %d, %v; want the 6 checkout pods", len(pods), err)
	}
	zoneA, _ := c.Pods(ctx, "shop", "app=checkout,zone=a")
	if len(zoneA) != 2 {
		t.Fatalf("zone a: %d pods", len(zoneA))
	}
	zero := int64(0)
	if err := c.DeletePods(ctx, zoneA, &zero); err != nil {
		t.Fatal(err)
	}
	left, _ := c.Pods(ctx, "shop", "app=checkout")
	if len(left) != 4 {
		t.Errorf("after killing zone a: %d pods, want 4", len(left))
	}
	for _, p := range left {
		if p.Labels["zone"] == "a" {
			t.Errorf("pod %s of zone a still there", p.Name)
		}
	}
	if db, _ := c.Pods(ctx, "shop", "app=db"); len(db) != 1 {
		t.Error("a pod outside the selection was deleted")
	}
	// A pod that was replaced under the same name (a StatefulSet's) is
	// not deleted: the delete names the old one's UID.
	again := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: zoneA[0].Name, Labels: map[string]string{"app": "checkout", "zone": "a"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}},
	}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, again, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePods(ctx, zoneA[:1], &zero); err == nil {
		t.Error("deleting a pod by the name of one that is gone succeeded")
	}
	if _, err := cs.CoreV1().Pods("shop").Get(ctx, zoneA[0].Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the replacement under the same name: %v", err)
	}
	if err := cs.CoreV1().Pods("shop").Delete(ctx, zoneA[0].Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}

	before, err := c.Scale(ctx, "shop", "deployment", "checkout", 1)
	if err != nil || before != 3 {
		t.Fatalf("Scale = %d, %v", before, err)
	}
	d, _ := cs.AppsV1().Deployments("shop").Get(ctx, "checkout", metav1.GetOptions{})
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas %d after scaling to 1", *d.Spec.Replicas)
	}
	if _, err := c.Scale(ctx, "shop", "deployment", "checkout", before); err != nil {
		t.Fatal(err)
	}
	d, _ = cs.AppsV1().Deployments("shop").Get(ctx, "checkout", metav1.GetOptions{})
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas %d after the revert, want 3", *d.Spec.Replicas)
	}
	if _, err := c.Scale(ctx, "shop", "daemonset", "x", 1); err == nil {
		t.Error("scaling a daemonset accepted")
	}

	was, err := c.Cordon(ctx, "node-a", true)
	if err != nil || was {
		t.Fatalf("Cordon = %v, %v", was, err)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if !n.Spec.Unschedulable {
		t.Error("node not cordoned")
	}
	if _, err := c.Cordon(ctx, "node-a", was); err != nil {
		t.Fatal(err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if n.Spec.Unschedulable {
		t.Error("node still cordoned after the revert")
	}

	share, ready, total, err := c.ReadyShare(ctx, "shop", "app=checkout")
	if err != nil || total != 4 || ready != 0 || share != 0 {
		t.Errorf("ReadyShare = %v %d/%d %v (pods without a node are not Ready)", share, ready, total, err)
	}
}

// ready_pods(...) in a steady state reads the Ready share from the API.
func TestReadyPodsProbe(t *testing.T) {
	cluster := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	shop(t, cs, 4)
	ctx := context.Background()
	for _, name := range []string{"checkout-0", "checkout-1", "checkout-2"} {
		p, err := cs.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		if _, err := cs.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src := fmt.Sprintf(`name: ready
targets:
  checkout: {pods: {namespace: shop, selector: app=checkout, kubeconfig: %q}}
steady_state:
  - ready_pods(app=checkout) >= 75%%
  - ready_pods(shop/app=checkout) > 75%%
inject: 1s
faults: [{name: scale, target: checkout, scale: {name: checkout, replicas: 1}}]
`, cluster.Kubeconfig)
	x, err := experiment.Parse("ready.yaml", []byte(src), experiment.Options{AllowNoStop: true})
	if err != nil {
		t.Fatal(err)
	}
	prober := builtin.Prober()
	for i, want := range []bool{true, false} {
		res, err := prober.Run(ctx, x.SteadyState[i].Probe)
		ok, why := res.Passed, res.Detail
		if err != nil || ok != want || why != "3 of 4 pods Ready" {
			t.Errorf("%s: %v (%s), want %v", x.SteadyState[i].Probe.Selector, ok, why, want)
		}
	}
}

// With controllers, a scheduler and kwok nodes, a killed pod is replaced
// and Ready again: what pod_kill relies on to need no revert.
func TestKilledPodsAreReplaced(t *testing.T) {
	cluster := kubetest.StartWithNodes(t, 3)
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	six := int32(6)
	labels := map[string]string{"app": "checkout"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: appsv1.DeploymentSpec{
		Replicas: &six, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Containers:  []corev1.Container{{Name: "app", Image: "shop:1"}},
			Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		}},
	}}
	if _, err := cs.AppsV1().Deployments("shop").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := kube.Config(cluster.Kubeconfig)
	c, _ := kube.New(cfg)
	waitReady := func(what string, want int) []kube.Pod {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			pods, _ := c.Pods(ctx, "shop", "app=checkout")
			ready := 0
			for _, p := range pods {
				if p.Ready {
					ready++
				}
			}
			if ready == want && len(pods) == want {
				return pods
			}
			if time.Now().After(deadline) {
				list, _ := cs.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
				for _, p := range list.Items {
					t.Logf("pod %s: node %q phase %s conditions %v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
				}
				nodes, _ := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
				for _, n := range nodes.Items {
					t.Logf("node %s: taints %v conditions %v", n.Name, n.Spec.Taints, n.Status.Conditions)
				}
				t.Fatalf("%s: %d of %d pods Ready, want %d", what, ready, len(pods), want)
			}
			time.Sleep(50 * time.Millisecond) // polling the cluster's progress
		}
	}
	pods := waitReady("the Deployment", 6)
	zero := int64(0)
	if err := c.DeletePods(ctx, pods[:3], &zero); err != nil {
		t.Fatal(err)
	}
	again := waitReady("after killing 3", 6)
	old := map[string]bool{}
	for _, p := range pods[:3] {
		old[p.UID] = true
	}
	for _, p := range again {
		if old[p.UID] {
			t.Errorf("pod %s survived", p.Name)
		}
	}
}
