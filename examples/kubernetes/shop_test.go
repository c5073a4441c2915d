package kubernetes_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/faultline/faultline/kubetest"
	"github.com/faultline/faultline/process/processtest"
	"github.com/faultline/faultline/record"
)

func TestMain(m *testing.M) {
	code := kubetest.Main(m) // stops the node the tests share
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// deployShop applies shop.yaml, as it ships, into namespace ns with the
// ConfigMap's build set and the node's shop image for faultline-shop,
// waits until every Deployment is available, and returns the front
// Service's HOST:PORT (its cluster IP: the test runs on the node).
func deployShop(t *testing.T, n *kubetest.Node, ns, build string) string {
	t.Helper()
	ctx := context.Background()
	cs := n.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	docs := yaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := docs.Read()
		if err != nil {
			break
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("shop.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			o.Data["build"] = build
			_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = cs.CoreV1().Services(ns).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			for i := range o.Spec.Template.Spec.Containers {
				c := &o.Spec.Template.Spec.Containers[i]
				if c.Image != "faultline-shop:latest" {
					t.Fatalf("shop.yaml: deployment %s runs %s, want faultline-shop:latest", o.Name, c.Image)
				}
				c.Image, c.ImagePullPolicy = kubetest.ShopImage, corev1.PullNever // no registry here
			}
			_, err = cs.AppsV1().Deployments(ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("shop.yaml: unexpected %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	waitShop(t, n, ns)
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "front", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(svc.Spec.ClusterIP, "8080")
}

// waitShop waits until every Deployment of the shop in ns has its one
// pod available and no other.
func waitShop(t *testing.T, n *kubetest.Node, ns string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list, err := n.Clientset.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{})
		if err == nil {
			var waiting []string
			for _, d := range list.Items {
				if d.Status.AvailableReplicas != 1 || d.Status.Replicas != 1 || d.Status.ObservedGeneration < d.Generation {
					waiting = append(waiting, d.Name)
				}
			}
			if len(list.Items) > 0 && len(waiting) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("shop in %s not available after 2 minutes: waiting for %v\n%s", ns, waiting, podReport(n, ns))
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// podReport says, for each pod in ns that is not Ready, its containers'
// states and the last lines of their logs.
func podReport(n *kubetest.Node, ns string) string {
	ctx := context.Background()
	pods, err := n.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
		if ready {
			continue
		}
		fmt.Fprintf(&b, "pod %s: %s\n", p.Name, p.Status.Phase)
		for _, c := range p.Status.ContainerStatuses {
			st, _ := json.Marshal(c.State)
			fmt.Fprintf(&b, "  %s restarts %d %s\n", c.Name, c.RestartCount, st)
			logs, err := n.PodLogs(ctx, ns, p.Name, c.Name)
			if err != nil {
				logs = err.Error()
			}
			if len(logs) > 1500 {
				logs = logs[len(logs)-1500:]
			}
			fmt.Fprintf(&b, "  log: %s\n", logs)
		}
	}
	return b.String()
}

// waitSettled waits until the shop behind front has no order left to
// pay (its /stats says "queued":0), for up to a minute.
func waitSettled(t *testing.T, front string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + front + "/stats")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if last = string(b); resp.StatusCode == http.StatusOK && strings.Contains(last, `"queued":0,`) {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("shop behind %s still paying after a minute: %s", front, last)
}

// stats is the shop's /stats, or why not.
func stats(front string) string {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + front + "/stats")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// get returns the status of GET url.
func get(url string) (int, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// runExperiment runs the shipped experiment file against the shop in ns
// and returns its result.
func runExperiment(t *testing.T, n *kubetest.Node, file, ns, front string) record.Result {
	t.Helper()
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(processtest.Faultline(t), "run", file, "--out", out, "--allow-remote",
		"--var", "FRONT="+front, "--var", "NAMESPACE="+ns, "--agent-image", kubetest.FaultlineImage)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+n.Kubeconfig, "FAULTLINE_STATE_DIR="+t.TempDir())
	outb, _ := cmd.CombinedOutput() // a FAILED run exits non-zero: the result says what it was
	var res record.Result
	b, err := os.ReadFile(filepath.Join(out, "result.json"))
	if err == nil {
		err = json.Unmarshal(b, &res)
	}
	if err != nil {
		t.Fatalf("%s in %s: no result (%v):\n%s", file, ns, err, outb)
	}
	return res
}

// traffic is a line per phase and request of the run's traffic: the
// figures behind its verdict.
func traffic(res record.Result) string {
	var b strings.Builder
	for _, tr := range res.Traffic {
		fmt.Fprintf(&b, "  %-9s %-9s %5d requests %5.1f%% errors p50 %4.0f ms p99 %5.0f ms\n",
			tr.Phase, cmp.Or(tr.Request, "all"), tr.Requests, tr.ErrorRate, tr.P50*1000, tr.P99*1000)
	}
	start := time.Time(res.Started)
	for _, f := range res.Faults {
		if f.InjectedAt != nil && f.RevertedAt != nil {
			fmt.Fprintf(&b, "  fault %q held from %.1f s to %.1f s: %s\n", f.Name,
				time.Time(*f.InjectedAt).Sub(start).Seconds(), time.Time(*f.RevertedAt).Sub(start).Seconds(), strings.Join(f.Evidence, "; "))
		}
	}
	return b.String()
}

// TestShopExperiments deploys the shop twice on the real node, the
// fragile build and the resilient one, and runs each shipped experiment
// against both at once: the fragile shop fails each (FAILED, or ABORTED by
// its stop condition) and the resilient one passes.
func TestShopExperiments(t *testing.T) {
	n := kubetest.SharedNode(t)
	builds := []string{"fragile", "resilient"}
	fronts := map[string]string{}
	var mu sync.Mutex
	t.Run("deploy", func(t *testing.T) {
		for _, b := range builds {
			t.Run(b, func(t *testing.T) {
				t.Parallel()
				f := deployShop(t, n, "shop-"+b, b)
				mu.Lock()
				fronts[b] = f
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}
	for _, b := range builds {
		// Available pods are not yet Service endpoints everywhere: the
		// front answers once kube-proxy has them all.
		processtest.WaitFor(t, b+" shop's front answering", func() bool {
			code, err := get("http://" + fronts[b] + "/products")
			return err == nil && code == http.StatusOK
		})
	}
	// The CPU stress last: its processor works off its backlog for a while.
	for _, file := range []string{"db-latency.yaml", "zone-partition.yaml", "pod-kill.yaml", "cpu-stress.yaml"} {
		t.Run(strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
			results := map[string]record.Result{}
			t.Run("runs", func(t *testing.T) {
				for _, b := range builds {
					t.Run(b, func(t *testing.T) {
						t.Parallel()
						start := time.Now()
						res := runExperiment(t, n, file, "shop-"+b, fronts[b])
						mu.Lock()
						results[b] = res
						mu.Unlock()
						t.Logf("%s on the %s build: %s in %.0f s %v\n%s  stats after: %s", file, b, res.Verdict, time.Since(start).Seconds(), res.Reasons, traffic(res), stats(fronts[b]))
					})
				}
			})
			if t.Failed() {
				return
			}
			if v := results["fragile"].Verdict; v != "FAILED" && v != "ABORTED" {
				t.Errorf("fragile build: %s, want FAILED or ABORTED: %v", v, results["fragile"].Reasons)
			}
			if v := results["resilient"].Verdict; v != "PASSED" {
				t.Errorf("resilient build: %s, want PASSED: %v", v, results["resilient"].Reasons)
			}
			for _, b := range builds {
				waitShop(t, n, "shop-"+b) // the next experiment starts from a whole shop,
				waitSettled(t, fronts[b]) // with nothing left to pay
			}
		})
	}
}
