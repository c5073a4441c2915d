// Package kube is faultline's Kubernetes client: it finds pods by
// namespace and label selector and does the faults' work on them (delete
// pods, scale a Deployment or StatefulSet, cordon a node) and their
// reverts, with client-go.
package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client talks to one cluster.
type Client struct {
	cs  kubernetes.Interface
	cfg *rest.Config // for streams (attach)
}

// Config finds the cluster: kubeconfig if given, else $KUBECONFIG, else
// ~/.kube/config, else the in-cluster service account. Its rate limits are
// raised so that killing a hundred pods takes milliseconds, not seconds.
func Config(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	case os.Getenv("KUBECONFIG") != "":
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	default:
		home, _ := os.UserHomeDir()
		path := filepath.Join(home, ".kube", "config")
		if _, serr := os.Stat(path); serr == nil {
			cfg, err = clientcmd.BuildConfigFromFlags("", path)
		} else {
			cfg, err = rest.InClusterConfig()
			if err != nil {
				err = fmt.Errorf("no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a cluster: %w", err)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "faultline"
	return cfg, nil
}

// New returns a client for cfg.
func New(cfg *rest.Config) (*Client, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{cs: cs, cfg: cfg}, nil
}

// Open connects to the cluster of a kubeconfig, found as Config finds it.
func Open(kubeconfig string) (*Client, error) {
	cfg, err := Config(kubeconfig)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// Pod is a pod as a fault sees it.
type Pod struct {
	Namespace, Name string
	UID             string
	Node            string
	Labels          map[string]string
	Ready           bool
	Grace           int64 // its termination grace period, in seconds
	// IP is its address (empty until it has one); HostNetwork says it
	// shares the node's network namespace.
	IP          string
	HostNetwork bool
	// Containers are its containers' names, in the spec's order, and
	// ContainerIDs their runtime ids (without "containerd://") once they
	// run; SharesProcesses says the pod shares one process namespace.
	Containers      []string
	ContainerIDs    map[string]string
	SharesProcesses bool
}

// Pods lists the pods of a namespace that match a label selector
// ("app=checkout"), sorted by name; pods being deleted are left out.
func (c *Client) Pods(ctx context.Context, namespace, selector string) ([]Pod, error) {
	list, err := c.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s (%s): %w", namespace, selector, err)
	}
	var out []Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		pod := Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName, Labels: p.Labels, Grace: 30,
			IP: p.Status.PodIP, HostNetwork: p.Spec.HostNetwork}
		for _, c := range p.Spec.Containers {
			pod.Containers = append(pod.Containers, c.Name)
		}
		pod.SharesProcesses = p.Spec.ShareProcessNamespace != nil && *p.Spec.ShareProcessNamespace
		pod.ContainerIDs = map[string]string{}
		for _, cs := range p.Status.ContainerStatuses {
			if _, id, ok := strings.Cut(cs.ContainerID, "://"); ok {
				pod.ContainerIDs[cs.Name] = id
			}
		}
		if p.Spec.TerminationGracePeriodSeconds != nil {
			pod.Grace = *p.Spec.TerminationGracePeriodSeconds
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				pod.Ready = true
			}
		}
		out = append(out, pod)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeletePods deletes pods at once (in parallel), each only if it is still
// the pod that was selected (same UID). grace nil uses each pod's own
// grace period; 0 kills at once.
func (c *Client) DeletePods(ctx context.Context, pods []Pod, grace *int64) error {
	var wg sync.WaitGroup
	errs := make([]error, len(pods))
	for i, p := range pods {
		wg.Go(func() {
			uid := types.UID(p.UID)
			opts := metav1.DeleteOptions{GracePeriodSeconds: grace, Preconditions: &metav1.Preconditions{UID: &uid}}
			if err := c.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, opts); err != nil {
				errs[i] = fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Replicas returns a Deployment's or StatefulSet's replicas.
func (c *Client) Replicas(ctx context.Context, namespace, kind, name string) (int32, error) {
	var err error
	var replicas int32
	switch kind {
	case "deployment":
		s, gerr := c.cs.AppsV1().Deployments(namespace).GetScale(ctx, name, metav1.GetOptions{})
		if err = gerr; err == nil {
			replicas = s.Spec.Replicas
		}
	case "statefulset":
		s, gerr := c.cs.AppsV1().StatefulSets(namespace).GetScale(ctx, name, metav1.GetOptions{})
		if err = gerr; err == nil {
			replicas = s.Spec.Replicas
		}
	default:
		return 0, fmt.Errorf("scale: kind %q: want deployment or statefulset", kind)
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s/%s: %w", kind, namespace, name, err)
	}
	return replicas, nil
}

// Scale sets the replicas of a Deployment or StatefulSet ("deployment",
// "statefulset") through its scale subresource and returns what it was.
func (c *Client) Scale(ctx context.Context, namespace, kind, name string, replicas int32) (int32, error) {
	get := c.cs.AppsV1().Deployments(namespace).GetScale
	update := c.cs.AppsV1().Deployments(namespace).UpdateScale
	switch kind {
	case "deployment":
	case "statefulset":
		get, update = c.cs.AppsV1().StatefulSets(namespace).GetScale, c.cs.AppsV1().StatefulSets(namespace).UpdateScale
	default:
		return 0, fmt.Errorf("scale: kind %q: want deployment or statefulset", kind)
	}
	s, err := get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("scale %s %s/%s: %w", kind, namespace, name, unchanged{err})
	}
	before := s.Spec.Replicas
	s.Spec.Replicas = replicas
	if _, err := update(ctx, name, s, metav1.UpdateOptions{}); err != nil {
		return before, fmt.Errorf("scale %s %s/%s to %d: %w", kind, namespace, name, replicas, err)
	}
	return before, nil
}

// unchanged marks an error that came before any write: nothing changed.
type unchanged struct{ error }

func (u unchanged) Unwrap() error { return u.error }

// Refused reports whether a failed Scale or Cordon certainly changed
// nothing: it failed before writing, or the API server refused the write
// (a 4xx answer other than a timeout). Otherwise (no answer, a timeout, a
// 5xx, an interrupt) the change may have been made, and is to be undone
// as if it had.
func Refused(err error) bool {
	var u unchanged
	if errors.As(err, &u) {
		return true
	}
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		code := se.Status().Code
		return code >= 400 && code < 500 && code != 408 && code != 504
	}
	return false
}

// Cordon marks a node unschedulable (or schedulable again) and returns
// whether it was unschedulable before.
func (c *Client) Cordon(ctx context.Context, node string, unschedulable bool) (bool, error) {
	n, err := c.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("node %s: %w", node, unchanged{err})
	}
	before := n.Spec.Unschedulable
	patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%v}}`, unschedulable)
	if _, err := c.cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return before, fmt.Errorf("cordon %s: %w", node, err)
	}
	return before, nil
}

// ReadyShare is the share of the selected pods that are Ready (0 without
// pods), with the counts.
func (c *Client) ReadyShare(ctx context.Context, namespace, selector string) (float64, int, int, error) {
	pods, err := c.Pods(ctx, namespace, selector)
	if err != nil || len(pods) == 0 {
		return 0, 0, len(pods), err
	}
	ready := 0
	for _, p := range pods {
		if p.Ready {
			ready++
		}
	}
	return float64(ready) / float64(len(pods)), ready, len(pods), nil
}

// HaltAnnotation on a namespace is the kill switch in a cluster: runs and
// monkeys acting on the namespace abort (exit 3) while it is there.
const HaltAnnotation = "faultline/halt"

// SetHalt sets (note not empty) or removes the kill switch on a namespace.
func (c *Client) SetHalt(ctx context.Context, namespace, note string) error {
	value := "null"
	if note != "" {
		value = strconv.Quote(note)
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%s}}}`, HaltAnnotation, value)
	if _, err := c.cs.CoreV1().Namespaces().Patch(ctx, namespace, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	return nil
}

// Halted reports whether the kill switch is on for a namespace, and its note.
func (c *Client) Halted(ctx context.Context, namespace string) (bool, string, error) {
	ns, err := c.cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	note, ok := ns.Annotations[HaltAnnotation]
	return ok, note, nil
}

// HaltUnreadableLimit is how long WatchHalt goes on without reading the
// kill switch of a namespace (API server unreachable, access revoked)
// before it ends the context itself: a run that cannot see the switch
// stops, as if it had been pulled.
const HaltUnreadableLimit = 10 * time.Second

// haltPoll is how often WatchHalt reads the kill switch, and how long one
// read may take.
const haltPoll = 500 * time.Millisecond

// WatchHalt returns a context that ends when the kill switch is set on any
// of the namespaces (polled every 500 ms), or when one of them could not be
// read for HaltUnreadableLimit; its cause (context.Cause) says which.
func (c *Client) WatchHalt(parent context.Context, namespaces []string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	// One watcher a namespace: a slow read of one must not delay another's
	// halt. The first to stop the context gives its cause.
	for _, ns := range namespaces {
		go func() {
			t := time.NewTicker(haltPoll)
			defer t.Stop()
			lastRead := time.Now()
			for {
				readCtx, done := context.WithTimeout(ctx, 4*haltPoll)
				halted, note, err := c.Halted(readCtx, ns)
				done()
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					if since := time.Since(lastRead); since >= HaltUnreadableLimit {
						cancel(fmt.Errorf("the kill switch of namespace %s could not be read for %s: %w", ns, since.Round(time.Second), err))
						return
					}
				case halted:
					cancel(fmt.Errorf("namespace %s halted: %s", ns, note))
					return
				default:
					lastRead = time.Now()
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	return ctx, func() { cancel(nil) }
}
