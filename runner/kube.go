package runner

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
)

// setupPods connects to a pods target's cluster.
func (r *run) setupPods(t *target) error {
	var err error
	if t.kube, err = kube.Open(t.spec.Pods.Kubeconfig); err != nil {
		return fmt.Errorf("target %s: %w", t.spec.Name, err)
	}
	return nil
}

// selectPods resolves a pods target now, with the fault's selection (tags
// are labels), at random with the run's seed.
func (r *run) selectPods(ctx context.Context, t *target, sel experiment.Selection) ([]kube.Pod, error) {
	p := t.spec.Pods
	selector := p.Selector
	keys := make([]string, 0, len(sel.Tags))
	for k := range sel.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		selector += "," + k + "=" + sel.Tags[k]
	}
	pods, err := t.kube.Pods(ctx, p.Namespace, selector)
	if err != nil {
		return nil, err
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("target %s: no pod matches %s in namespace %s", t.spec.Name, selector, p.Namespace)
	}
	return choose(r, t, pods, sel, "pods")
}

func podNames(pods []kube.Pod) string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// injectPodKill deletes the selected pods; their controllers replace them,
// so there is nothing to revert.
func (r *run) injectPodKill(ctx context.Context, f *fault, t *target, a experiment.PodKill) error {
	pods, err := r.selectPods(ctx, t, f.spec.Select)
	if err != nil {
		return err
	}
	_, readyBefore, _, _ := t.kube.ReadyShare(ctx, t.spec.Pods.Namespace, t.spec.Pods.Selector)
	id := r.nextID()
	if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name, Message: "delete pods " + podNames(pods)}); err != nil {
		return err
	}
	var grace *int64
	if !a.PodGrace {
		zero := int64(0)
		grace = &zero
	}
	err = t.kube.DeletePods(ctx, pods, grace)
	_ = r.journal(journal.Event{Type: journal.Done, ID: id, Message: errString(err)})
	r.journalUndone(id, nil) // nothing to put back: controllers replace pods
	for _, p := range pods {
		f.hit = append(f.hit, "pod "+p.Namespace+"/"+p.Name)
	}
	if err != nil {
		return err
	}
	f.evidence = append(f.evidence, fmt.Sprintf("%d pod(s) deleted", len(pods)))
	// Evidence of the recovery: how long until as many pods are Ready as
	// before, watched until the fault's window ends.
	if readyBefore == 0 {
		return nil
	}
	killed := time.Now()
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan string, 1)
	go func() {
		said := false
		defer func() {
			if !said {
				done <- "the replacements were not watched to the end"
			}
		}()
		watch := replacementWatch(wctx, t, readyBefore, killed, done)
		r.guard("watching the replacements", func() { said = watch() })
	}()
	f.revert = func(context.Context) error {
		stop()
		f.evidence = append(f.evidence, <-done)
		return nil
	}
	return nil
}

// replacementWatch returns a func that polls until as many pods as
// readyBefore are Ready, or wctx ends, and sends what it saw on done; it
// reports whether it sent.
func replacementWatch(wctx context.Context, t *target, readyBefore int, killed time.Time, done chan<- string) func() bool {
	return func() bool {
		lastReady := 0 // from the last look that worked: a look cut short by the window's end says nothing
		for {
			_, ready, _, err := t.kube.ReadyShare(wctx, t.spec.Pods.Namespace, t.spec.Pods.Selector)
			if err == nil && ready >= readyBefore {
				done <- fmt.Sprintf("replacements Ready (%d pods) %.1f s after the kill", ready, time.Since(killed).Seconds())
				return true
			}
			if err == nil {
				lastReady = ready
			}
			select {
			case <-wctx.Done():
				done <- fmt.Sprintf("%d pods Ready by the window's end (%d were before the kill)", lastReady, readyBefore)
				return true
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// injectScale sets a Deployment's or StatefulSet's replicas, journaling
// the count to put back first.
func (r *run) injectScale(ctx context.Context, f *fault, t *target, a experiment.Scale) error {
	ns := t.spec.Pods.Namespace
	before, err := t.kube.Replicas(ctx, ns, a.Resource, a.Name)
	if err != nil {
		return err
	}
	id := r.nextID()
	if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name,
		Undo: &journal.Undo{Kind: "scale", Kubeconfig: t.spec.Pods.Kubeconfig, Namespace: ns, Resource: a.Resource, Name: a.Name, Replicas: &before}}); err != nil {
		return err
	}
	scaleBack := func(ctx context.Context) error {
		_, err := t.kube.Scale(ctx, ns, a.Resource, a.Name, before)
		r.journalUndone(id, err)
		return err
	}
	if _, err := t.kube.Scale(ctx, ns, a.Resource, a.Name, int32(a.Replicas)); err != nil {
		if kube.Refused(err) {
			_ = r.journal(journal.Event{Type: journal.Failed, ID: id, Message: err.Error()})
			return err
		}
		_ = r.journal(journal.Event{Type: journal.Unknown, ID: id, Message: err.Error()})
		f.revert = scaleBack // it may have been scaled all the same
		return err
	}
	_ = r.journal(journal.Event{Type: journal.Done, ID: id})
	f.hit = append(f.hit, fmt.Sprintf("%s %s/%s", a.Resource, ns, a.Name))
	f.evidence = append(f.evidence, fmt.Sprintf("replicas %d -> %d", before, a.Replicas))
	f.revert = scaleBack
	return nil
}

// injectCordon cordons the nodes of the selected pods that were not.
func (r *run) injectCordon(ctx context.Context, f *fault, t *target, _ experiment.Cordon) error {
	pods, err := r.selectPods(ctx, t, f.spec.Select)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var undo []func(context.Context) error
	f.revert = func(ctx context.Context) error {
		var errs []string
		for _, u := range undo {
			if err := u(ctx); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
	for _, p := range pods {
		if p.Node == "" || seen[p.Node] {
			continue
		}
		seen[p.Node] = true
		node := p.Node
		id := r.nextID()
		if err := r.journal(journal.Event{Type: journal.Intent, ID: id, Name: f.spec.Name,
			Undo: &journal.Undo{Kind: "uncordon", Kubeconfig: t.spec.Pods.Kubeconfig, Node: node}}); err != nil {
			return err
		}
		uncordon := func(ctx context.Context) error {
			_, err := t.kube.Cordon(ctx, node, false)
			r.journalUndone(id, err)
			return err
		}
		was, err := t.kube.Cordon(ctx, node, true)
		if err != nil {
			if kube.Refused(err) {
				_ = r.journal(journal.Event{Type: journal.Failed, ID: id, Message: err.Error()})
				return err
			}
			// It may be cordoned all the same (it was read first: was says
			// whether it was before).
			_ = r.journal(journal.Event{Type: journal.Unknown, ID: id, Message: err.Error()})
			if was {
				r.journalUndone(id, nil)
			} else {
				undo = append(undo, uncordon)
			}
			return err
		}
		_ = r.journal(journal.Event{Type: journal.Done, ID: id})
		f.hit = append(f.hit, "node "+node)
		if was {
			r.journalUndone(id, nil) // it was cordoned already: leave it so
			continue
		}
		undo = append(undo, uncordon)
	}
	if len(seen) == 0 {
		return fmt.Errorf("target %s: the selected pods run on no node yet", t.spec.Name)
	}
	f.evidence = append(f.evidence, fmt.Sprintf("%d node(s) cordoned, %d already were", len(undo), len(seen)-len(undo)))
	return nil
}
