package kube_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/kubetest"
	"github.com/faultline/faultline/monkey"
)

// apply creates every object of a manifest file.
func apply(t *testing.T, cs kubernetes.Interface, path string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var objs []runtime.Object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = cs.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = cs.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *batchv1.Job:
			_, err = cs.BatchV1().Jobs(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *batchv1.CronJob:
			_, err = cs.BatchV1().CronJobs(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("%s: no test support for %T", path, obj)
		}
		if err != nil {
			t.Fatalf("%s: create %T: %v", path, obj, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

// can asks the API server whether the faultline ServiceAccount may do
// something, as the server decides it for that account.
func can(t *testing.T, cfg *rest.Config, verb, group, resource, sub, ns, name string) bool {
	t.Helper()
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:shop:faultline"}
	cs, err := kubernetes.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authv1.SelfSubjectAccessReview{
		Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
			Verb: verb, Group: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return review.Status.Allowed
}

// The manifests apply to a real API server, and their RBAC allows what
// faultline does and nothing else.
func TestManifestsAndLeastPrivilege(t *testing.T) {
	cluster := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	shop(t, cs, 3)
	dir := filepath.Join("..", "deploy", "kubernetes")
	apply(t, cs, filepath.Join(dir, "rbac.yaml"))
	objs := apply(t, cs, filepath.Join(dir, "experiment.yaml"))
	apply(t, cs, filepath.Join(dir, "monkey.yaml"))
	// The files the Job and the CronJob run are valid.
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			if _, err := experiment.Parse("configmap", []byte(cm.Data["experiment.yaml"]), experiment.Options{AllowNoStop: true}); err != nil {
				t.Errorf("the ConfigMap's experiment: %v", err)
			}
		}
	}
	mcm, _ := cs.CoreV1().ConfigMaps("shop").Get(context.Background(), "faultline-monkey", metav1.GetOptions{})
	if _, err := monkey.Parse("configmap", []byte(mcm.Data["monkey.yaml"])); err != nil {
		t.Errorf("the ConfigMap's monkey file: %v", err)
	}
	type access struct{ verb, group, resource, sub, ns, name string }
	allowed := []access{
		{"get", "", "namespaces", "", "", "shop"},
		{"list", "", "pods", "", "shop", ""}, {"delete", "", "pods", "", "shop", ""},
		{"get", "apps", "deployments", "scale", "shop", ""}, {"update", "apps", "deployments", "scale", "shop", ""},
		{"update", "apps", "statefulsets", "scale", "shop", ""},
	}
	denied := []access{
		{"delete", "", "pods", "", "kube-system", ""}, {"create", "", "pods", "", "shop", ""},
		{"update", "apps", "deployments", "", "shop", ""}, {"delete", "apps", "deployments", "", "shop", ""},
		{"get", "", "secrets", "", "shop", ""}, {"patch", "", "nodes", "", "", ""},
		{"get", "", "namespaces", "", "", "kube-system"}, {"patch", "", "namespaces", "", "", "shop"},
	}
	for _, a := range allowed {
		if !can(t, cluster.Config, a.verb, a.group, a.resource, a.sub, a.ns, a.name) {
			t.Errorf("denied %v, which faultline needs", a)
		}
	}
	for _, a := range denied {
		if can(t, cluster.Config, a.verb, a.group, a.resource, a.sub, a.ns, a.name) {
			t.Errorf("allowed %v, which faultline does not need", a)
		}
	}
	// agent-rbac.yaml, a Role of its own, grants what agents in pods take,
	// and only that.
	agentAccess := []access{
		{"update", "", "pods", "ephemeralcontainers", "shop", ""}, {"create", "", "pods", "attach", "shop", ""},
	}
	for _, a := range agentAccess {
		if can(t, cluster.Config, a.verb, a.group, a.resource, a.sub, a.ns, a.name) {
			t.Errorf("rbac.yaml alone allows %v: the agent's rights belong in agent-rbac.yaml", a)
		}
	}
	apply(t, cs, filepath.Join(dir, "agent-rbac.yaml"))
	for _, a := range agentAccess {
		if !can(t, cluster.Config, a.verb, a.group, a.resource, a.sub, a.ns, a.name) {
			t.Errorf("agent-rbac.yaml: denied %v, which an agent needs", a)
		}
	}
	for _, a := range []access{
		{"create", "", "pods", "exec", "shop", ""}, {"update", "", "pods", "ephemeralcontainers", "kube-system", ""},
		{"create", "", "pods", "attach", "kube-system", ""}, {"update", "", "pods", "", "shop", ""},
	} {
		if can(t, cluster.Config, a.verb, a.group, a.resource, a.sub, a.ns, a.name) {
			t.Errorf("agent-rbac.yaml: allowed %v, which an agent does not need", a)
		}
	}
	// cordon.yaml grants nodes, only get and patch.
	apply(t, cs, filepath.Join(dir, "cordon.yaml"))
	if !can(t, cluster.Config, "patch", "", "nodes", "", "", "") || can(t, cluster.Config, "delete", "", "nodes", "", "", "") {
		t.Error("cordon.yaml: want patch on nodes, not delete")
	}
	// And the account really can do its job: delete a pod as it.
	as := rest.CopyConfig(cluster.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:shop:faultline"}
	sa, _ := kubernetes.NewForConfig(as)
	if err := sa.CoreV1().Pods("shop").Delete(context.Background(), "checkout-0", metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete a pod as the ServiceAccount: %v", err)
	}
	if _, err := sa.CoreV1().Secrets("shop").List(context.Background(), metav1.ListOptions{}); err == nil {
		t.Error("the ServiceAccount can list secrets")
	}
}

// The monkey on pods: one opted-in pod is deleted per decision.
func TestMonkeyOnPods(t *testing.T) {
	cluster := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	shop(t, cs, 4)
	m, err := monkey.Parse("m.yaml", []byte(`
schedule: {timezone: UTC, days: [mon], hours: "00:00-24:00", mean_time_between: 1m, min_gap: 0s, daily_cap: 2}
groups:
  checkout: {pods: {namespace: shop, selector: app=checkout, kubeconfig: `+cluster.Kubeconfig+`}}
`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC) // a Monday
	ds, err := monkey.Run(context.Background(), m, monkey.Options{Clock: &clock{now: start}, Seed: 5, Until: start.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Action != "terminated" || ds[1].Action != "terminated" || !strings.HasPrefix(ds[0].Pod, "shop/checkout-") {
		t.Fatalf("decisions: %+v", ds)
	}
	pods, _ := cs.CoreV1().Pods("shop").List(context.Background(), metav1.ListOptions{LabelSelector: "app=checkout"})
	if len(pods.Items) != 2 {
		t.Errorf("%d checkout pods left, want 2 (the daily cap)", len(pods.Items))
	}
	if db, _ := cs.CoreV1().Pods("shop").Get(context.Background(), "db-0", metav1.GetOptions{}); db == nil || db.Name != "db-0" {
		t.Error("the monkey deleted a pod outside its group")
	}
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }
func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	return ctx.Err()
}
