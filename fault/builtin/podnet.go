package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultline/faultline/agent"
	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/target"
)

// Network faults inside pods: each selected pod gets an agent (package
// agent) in an ephemeral container of its own, named after the run, that
// holds the fault in the pod's network namespace on a lease this runner
// renews over the container's standard input. A runner that dies stops
// renewing, and the agent takes the fault back when the lease runs out.

// agentStart bounds how long an agent container may take to start (its
// image pulled); an agent that starts later applies nothing.
const agentStart = 2 * time.Minute

// agentAnswer bounds how long an agent may take to answer apply or revert.
const agentAnswer = 30 * time.Second

// podAgentData is what recover needs of an agent beyond the pod: the
// agent's container.
type podAgentData struct {
	Container string `json:"container"`
}

func injectPodNetwork(ctx context.Context, f *fault.Fault, t *target.Pods, to experiment.NetTo, build func([]netfault.Dest) netfault.Fault) error {
	pods, err := t.Select(ctx, f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	dests, err := podDests(ctx, t, to)
	if err != nil {
		return fmt.Errorf("fault %s: %w", f.Spec.Name, err)
	}
	// Every pod is checked before anything is touched.
	for _, p := range pods {
		if p.HostNetwork && !f.Spec.AllowHostNetwork {
			return fmt.Errorf("fault %s: pod %s/%s runs in its node's network namespace (hostNetwork), where %s hits every process of the node that talks to %s: add allow_host_network: true to the fault", f.Spec.Name, p.Namespace, p.Name, f.Spec.Action.Kind(), to)
		}
	}
	if err := checkPods(f, t, pods); err != nil {
		return err
	}
	nf := build(dests)
	return runAgents(ctx, f, t, pods, fmt.Sprintf("%s to %s", f.Spec.Action.Kind(), dests), true, func(as *agent.Spec) {
		switch nf := nf.(type) {
		case netfault.Partition:
			as.Partition = &nf
		case netfault.PacketLoss:
			as.PacketLoss = &nf
		}
	})
}

// injectPodStress runs a stress inside each selected pod, by its agent:
// the agent's container is in the pod's cgroup, so the pod's CPU and
// memory are what the stress uses up.
func injectPodStress(ctx context.Context, f *fault.Fault, t *target.Pods, a experiment.Stress) error {
	pods, err := t.Select(ctx, f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	if err := checkPods(f, t, pods); err != nil {
		return err
	}
	return runAgents(ctx, f, t, pods, "faultline stress "+a.Resource+" "+strings.Join(a.Args, " "), false, func(as *agent.Spec) {
		as.Stress = &agent.Stress{Resource: a.Resource, Args: a.Args}
	})
}

// injectPodIntercept intercepts, inside each selected pod of the
// intercept's from, its connections to the intercept's to:, through a
// proxy of the agent's own with the fault's toxics (or down).
func injectPodIntercept(ctx context.Context, f *fault.Fault, t *target.Proxy, what string, ic *agent.Intercept) error {
	pods, err := t.InPods.Select(ctx, f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	if ic.To, err = podDests(ctx, t.InPods, t.Spec().Intercept.To); err != nil {
		return fmt.Errorf("fault %s: %w", f.Spec.Name, err)
	}
	for _, p := range pods {
		if p.HostNetwork && !t.Spec().Intercept.AllowHostNetwork {
			return fmt.Errorf("fault %s: pod %s/%s runs in its node's network namespace (hostNetwork), where an intercept takes every connection of the node to %s: add allow_host_network: true to the intercept", f.Spec.Name, p.Namespace, p.Name, t.Spec().Intercept.To)
		}
	}
	if err := checkPods(f, t.InPods, pods); err != nil {
		return err
	}
	return runAgents(ctx, f, t.InPods, pods, fmt.Sprintf("%s on the connections to %s", what, dests(ic.To)), true, func(as *agent.Spec) {
		as.Intercept = ic
	})
}

// injectPodSignal signals the processes of each selected pod's target
// container, by its agent: the pod must share its process namespace, for
// inside a container's own the app is PID 1, which ignores SIGSTOP and
// SIGKILL sent from inside it. SIGSTOP is taken back with SIGCONT.
func injectPodSignal(ctx context.Context, f *fault.Fault, t *target.Pods, sig string) error {
	if !agent.Signals(sig) {
		return fmt.Errorf("fault %s: an agent sends SIGSTOP, SIGKILL, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2, not %s", f.Spec.Name, sig)
	}
	pods, err := t.Select(ctx, f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	if err := checkPods(f, t, pods); err != nil {
		return err
	}
	for _, p := range pods {
		switch c := targetContainer(t, p); {
		case !p.SharesProcesses:
			return fmt.Errorf("fault %s: pod %s/%s does not share its process namespace: in its container's own, the app is PID 1, which ignores %s sent from inside (the kernel's rule for an init), so an agent cannot reach it: set shareProcessNamespace: true in the pod's spec, or use pod_kill", f.Spec.Name, p.Namespace, p.Name, sig)
		case p.ContainerIDs[c] == "":
			return fmt.Errorf("fault %s: container %s of pod %s/%s is not running", f.Spec.Name, c, p.Namespace, p.Name)
		}
	}
	return runAgentsFor(ctx, f, t, pods, sig+" to the processes of the target container", kube.Agent{Root: true}, func(as *agent.Spec, p kube.Pod, c string) {
		as.Signal = &agent.Signal{Signal: sig, Container: p.ContainerIDs[c]}
	})
}

// injectPodDNS answers the DNS queries of each selected pod of the dns
// target's intercept with a resolver of the fault's agent, the fault's
// rules first.
func injectPodDNS(ctx context.Context, f *fault.Fault, t *target.DNS, a experiment.DNS) error {
	pods, err := t.InPods.Select(ctx, f.Spec.Select, f.Rand, f.MaxTargets)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.HostNetwork {
			return fmt.Errorf("fault %s: pod %s/%s runs in its node's network namespace (hostNetwork), whose resolver the whole node shares: a DNS intercept there is refused", f.Spec.Name, p.Namespace, p.Name)
		}
	}
	if err := checkPods(f, t.InPods, pods); err != nil {
		return err
	}
	spec := t.Spec().DNS
	return runAgents(ctx, f, t.InPods, pods, "dns rules "+strings.Join(a.Rules, ", "), true, func(as *agent.Spec) {
		as.DNS = &agent.DNS{Rules: a.Rules, Records: spec.Records, Upstream: spec.Upstream}
	})
}

// targetContainer is the container of p an agent joins: the target's
// container:, else the pod's first.
func targetContainer(t *target.Pods, p kube.Pod) string {
	if c := t.Spec().Pods.Container; c != "" {
		return c
	}
	if len(p.Containers) > 0 {
		return p.Containers[0]
	}
	return ""
}

// checkPods checks, before anything is touched, that an agent can act in
// each pod as the target says.
func checkPods(f *fault.Fault, t *target.Pods, pods []kube.Pod) error {
	spec := t.Spec().Pods
	for _, p := range pods {
		if spec.Container != "" && !slices.Contains(p.Containers, spec.Container) {
			return fmt.Errorf("fault %s: pod %s/%s has no container %q (it has %s)", f.Spec.Name, p.Namespace, p.Name, spec.Container, strings.Join(p.Containers, ", "))
		}
	}
	return nil
}

// runAgents gives each pod an agent that holds what fill says, on the
// fault's lease.
func runAgents(ctx context.Context, f *fault.Fault, t *target.Pods, pods []kube.Pod, what string, netAdmin bool, fill func(*agent.Spec)) error {
	return runAgentsFor(ctx, f, t, pods, what, kube.Agent{NetAdmin: netAdmin}, func(as *agent.Spec, _ kube.Pod, _ string) { fill(as) })
}

// runAgentsFor is runAgents with the agent's privileges given in priv and
// a spec filled for each pod and its target container.
func runAgentsFor(ctx context.Context, f *fault.Fault, t *target.Pods, pods []kube.Pod, what string, priv kube.Agent, fill func(as *agent.Spec, p kube.Pod, container string)) error {
	spec := t.Spec().Pods
	lease := f.Spec.Lease
	if lease == 0 {
		lease = agent.DefaultLease
	}
	for i, p := range pods {
		container := targetContainer(t, p)
		as := agent.Spec{Run: f.Run, Fault: chainName(f.Spec.Name, 0), Lease: agent.Duration(lease), StartBy: time.Now().Add(agentStart).UTC().Truncate(time.Second)}
		fill(&as, p, container)
		a := kube.Agent{Namespace: p.Namespace, Pod: p.Name, UID: p.UID, Name: agentName(f.Run, f.Spec.Name, i),
			Target: container, Image: spec.AgentImage, Args: []string{"agent", "--spec", as.String()}, NetAdmin: priv.NetAdmin, Root: priv.Root}
		data, _ := json.Marshal(podAgentData{Container: a.Name})
		log := f.Log
		if log == nil {
			log = io.Discard
		}
		h := &heldAgent{client: t.Client, a: a, lease: lease, log: log, stop: make(chan struct{}), done: make(chan struct{})}
		err := f.Step(ctx, fault.Step{
			What:   fmt.Sprintf("%s inside pod %s/%s, held by its agent container %s (lease %v)", what, p.Namespace, p.Name, a.Name, lease),
			Undo:   &journal.Undo{Kind: "pod_agent", Kubeconfig: spec.Kubeconfig, Namespace: p.Namespace, Name: p.Name, Data: data},
			Do:     h.apply,
			Revert: h.revert,
		})
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.renewing = true
		h.mu.Unlock()
		f.Go("renewing the lease of agent "+a.Name, h.renew)
		f.Hit(fmt.Sprintf("pod %s/%s (agent %s)", p.Namespace, p.Name, a.Name))
	}
	f.Evidence("%s by agents in %s", what, plural(len(pods), "pod", "pods"))
	return nil
}

// podDests are a pod fault's destinations: addresses as given, and the
// pods of pods targets by their addresses now.
func podDests(ctx context.Context, t *target.Pods, to experiment.NetTo) ([]netfault.Dest, error) {
	var out []netfault.Dest
	for _, name := range to.Targets {
		ips, err := t.PodIPs(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, fmt.Errorf("to: pod address %q: %w", ip, err)
			}
			out = append(out, netfault.Dest{Prefix: netip.PrefixFrom(a, a.BitLen())})
		}
	}
	for _, d := range to.Dests {
		dest, err := netfault.ParseDest(d)
		if err != nil {
			return nil, fmt.Errorf("to: %w", err)
		}
		out = append(out, dest)
	}
	return out, nil
}

// agentName names the i-th agent of a fault: faultline-RUN-FAULT-i, within
// the 63 characters of a container's name. Ephemeral containers are never
// removed from a pod, so no run reuses another's.
func agentName(run, fault string, i int) string {
	tail := fmt.Sprintf("-%d", i)
	s := strings.Trim(strings.ToLower(strings.ReplaceAll(slug(fault), "_", "-")), "-")
	name := "faultline-" + strings.ToLower(run) + "-" + s
	if len(name)+len(tail) > 63 {
		name = strings.TrimRight(name[:63-len(tail)], "-")
	}
	return name + tail
}

// heldAgent is one agent of a run, its stream and its renewals.
type heldAgent struct {
	client *kube.Client
	a      kube.Agent
	lease  time.Duration
	log    io.Writer

	mu       sync.Mutex
	conn     *kube.AgentConn
	stop     chan struct{} // closed at revert: the renewals end
	done     chan struct{} // closed when they have, if they started
	renewing bool
	stopOnce sync.Once
}

// apply adds the agent's container, waits for it to run, and has it apply
// the fault. Until "apply" is sent nothing is in place: an agent that was
// never told exits by itself.
func (h *heldAgent) apply(ctx context.Context) error {
	if err := h.client.AddAgent(ctx, h.a); err != nil {
		return kubeRefused(err)
	}
	wctx, cancel := context.WithTimeout(ctx, agentStart)
	defer cancel()
	if err := h.client.WaitAgent(wctx, h.a.Namespace, h.a.Pod, h.a.Name); err != nil {
		return fault.NotApplied(err)
	}
	conn, err := h.client.Attach(ctx, h.a.Namespace, h.a.Pod, h.a.Name)
	if err != nil {
		return fault.NotApplied(fmt.Errorf("attach to agent %s: %w", h.a.Name, err))
	}
	h.mu.Lock()
	h.conn = conn
	h.mu.Unlock()
	if err := conn.Send(agent.Apply); err != nil {
		return err // it may have arrived
	}
	actx, cancel := context.WithTimeout(ctx, agentAnswer)
	defer cancel()
	line, err := conn.Expect(actx, agent.Applied, agent.Failed)
	if err != nil {
		return fmt.Errorf("agent %s did not answer apply: %w", h.a.Name, err)
	}
	if strings.HasPrefix(line, agent.Failed) { // it took back what it made
		return fault.NotApplied(fmt.Errorf("agent %s in pod %s/%s: %s", h.a.Name, h.a.Namespace, h.a.Pod, line))
	}
	return nil
}

// renew sends a renewal three times a lease until revert, on a new stream
// when the last one broke.
func (h *heldAgent) renew() {
	defer close(h.done)
	every := h.lease / 3
	for {
		select {
		case <-h.stop:
			return
		case <-time.After(every):
		}
		h.mu.Lock()
		conn := h.conn
		h.mu.Unlock()
		err := errors.New("no stream")
		if conn != nil {
			err = conn.Send(agent.Renew)
		}
		if err == nil {
			continue
		}
		fmt.Fprintf(h.log, "agent %s: renewal failed (%v): attaching again\n", h.a.Name, err)
		ctx, cancel := context.WithTimeout(context.Background(), every)
		fresh, aerr := h.client.Attach(ctx, h.a.Namespace, h.a.Pod, h.a.Name)
		cancel()
		if aerr != nil {
			fmt.Fprintf(h.log, "agent %s: attach: %v (its lease of %v ends the fault if this goes on)\n", h.a.Name, aerr, h.lease)
			continue
		}
		h.mu.Lock()
		old := h.conn
		h.conn = fresh
		h.mu.Unlock()
		if old != nil {
			old.Close()
		}
		_ = fresh.Send(agent.Renew)
	}
}

// revert ends the renewals and has the agent take the fault back; an agent
// that already exited has nothing left.
func (h *heldAgent) revert(ctx context.Context) error {
	h.stopOnce.Do(func() { close(h.stop) })
	h.mu.Lock()
	renewing := h.renewing
	h.mu.Unlock()
	if renewing {
		select {
		case <-h.done:
		case <-ctx.Done():
		}
	}
	h.mu.Lock()
	conn := h.conn
	h.conn = nil
	h.mu.Unlock()
	_, err := revertAgent(ctx, h.client, conn, h.a.Namespace, h.a.Pod, h.a.Name)
	return err
}

// revertAgent tells an agent to take its fault back, on conn or on a new
// stream, and waits for it to say so; it closes the stream it used. An
// agent's last line may be lost as its container exits and its stream
// ends: then its termination message says it.
func revertAgent(ctx context.Context, c *kube.Client, conn *kube.AgentConn, namespace, pod, name string) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, agentAnswer)
	defer cancel()
	var sendErr error
	if conn != nil {
		defer conn.Close()
		if sendErr = conn.Send(agent.Revert); sendErr == nil {
			line, err := conn.Expect(rctx, agent.Reverted, agent.Failed)
			if err == nil {
				return answer(name, line)
			}
			sendErr = err
			// Told, and the stream ended: it may be exiting.
			if said, done, err := exitedWithin(rctx, c, namespace, pod, name, 5*time.Second); done {
				return said, err
			}
		}
	}
	st, err := c.AgentStatus(rctx, namespace, pod, name)
	switch {
	case errors.Is(err, kube.ErrAgentGone):
		return fmt.Sprintf("agent %s is gone with its pod: nothing left", name), nil
	case errors.Is(err, kube.ErrNoAgent):
		// An add still in flight starts an agent that, never told to
		// apply, applies nothing and exits.
		return fmt.Sprintf("agent %s was never added to pod %s/%s: nothing applied", name, namespace, pod), nil
	case err != nil:
		return "", errors.Join(sendErr, err)
	case st.Exited:
		return answer(name, st.Message)
	case !st.Running:
		return fmt.Sprintf("agent %s has not started (%s): never told to apply, it applies nothing and exits by itself", name, st.Waiting), nil
	}
	fresh, err := c.Attach(rctx, namespace, pod, name)
	if err != nil {
		return "", errors.Join(sendErr, err)
	}
	defer fresh.Close()
	if err := fresh.Send(agent.Revert); err != nil {
		return "", errors.Join(sendErr, err)
	}
	line, err := fresh.Expect(rctx, agent.Reverted, agent.Failed)
	if err == nil {
		return answer(name, line)
	}
	if said, done, serr := exitedWithin(rctx, c, namespace, pod, name, agentAnswer); done {
		return said, serr
	}
	return "", fmt.Errorf("agent %s in pod %s/%s did not answer revert: %w", name, namespace, pod, err)
}

// exitedWithin waits up to limit for the agent's container to have exited
// (or gone with its pod), and says what its termination message says;
// done is false if it still runs.
func exitedWithin(ctx context.Context, c *kube.Client, namespace, pod, name string, limit time.Duration) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		st, err := c.AgentStatus(ctx, namespace, pod, name)
		switch {
		case errors.Is(err, kube.ErrAgentGone):
			return fmt.Sprintf("agent %s is gone with its pod: nothing left", name), true, nil
		case err == nil && st.Exited:
			said, aerr := answer(name, st.Message)
			return said, true, aerr
		}
		select {
		case <-ctx.Done():
			return "", false, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func answer(name, line string) (string, error) {
	if strings.HasPrefix(line, agent.Failed) || !strings.HasPrefix(line, agent.Reverted) {
		return "", fmt.Errorf("agent %s: %s", name, line)
	}
	return "agent " + name + " " + line, nil
}

// undoPodAgent has an agent that a run left take its fault back.
func undoPodAgent(ctx context.Context, u *journal.Undo) (string, error) {
	var d podAgentData
	if err := json.Unmarshal(u.Data, &d); err != nil || d.Container == "" {
		return "", fmt.Errorf("the journal's pod_agent change names no container: %v", err)
	}
	c, err := kube.Open(u.Kubeconfig)
	if err != nil {
		return "", err
	}
	return revertAgent(ctx, c, nil, u.Namespace, u.Name, d.Container)
}
