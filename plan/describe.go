package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faultline/faultline/agent"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/kube"
	"github.com/faultline/faultline/netfault"
	"github.com/faultline/faultline/process"
)

// ErrRefused says a run would refuse the experiment when it sets up.
var ErrRefused = errors.New("a run would refuse this experiment")

// Describe writes what a run of the plan would do, touching nothing: the
// phases, the targets (with the processes and pods they reach now), each
// fault's window, the steady state and the stop conditions. It returns an
// error wrapping ErrRefused when a run would refuse the experiment at
// setup (a target that reaches init or faultline's own ancestry, say).
func (p *Plan) Describe(w io.Writer) error {
	x, seed := p.x, p.seed
	fmt.Fprintf(w, "plan for %q (%s)\n", x.Name, x.File)
	if x.Hypothesis != "" {
		fmt.Fprintf(w, "hypothesis: %s\n", x.Hypothesis)
	}
	fmt.Fprintf(w, "phases: baseline %v, inject %v, recovery up to %v (max_duration %v)\n", x.Baseline, x.Inject, x.Recovery, x.MaxDuration)
	if x.Traffic != nil {
		fmt.Fprintf(w, "traffic: %g requests/s, timeout %v, %d kind(s) of request\n", x.Traffic.Rate, x.Traffic.Timeout, len(x.Traffic.Requests))
	}
	refused := describeTargets(w, x)
	fmt.Fprintln(w, "faults (times from the start of injection):")
	for i, f := range x.Faults {
		end := "end of inject"
		if f.Duration > 0 {
			end = p.windows[i].End.String()
		}
		sel := "  select " + f.Select.String()
		if f.Target == "" {
			sel = ""
		}
		fmt.Fprintf(w, "  %-24q %-11s on %-12s [%v, %s)%s\n", f.Name, f.Action.Kind(), orMachine(f.Target), f.Start, end, sel)
	}
	if len(x.SteadyState) > 0 {
		fmt.Fprintln(w, "steady state:")
		for _, c := range x.SteadyState {
			what := ""
			if c.Condition != nil {
				what = c.Condition.Text
			} else {
				what = c.Probe.Text()
			}
			fmt.Fprintf(w, "  %-50s in %s\n", what, strings.Join(c.Phases, ", "))
		}
	}
	describeFaultDetails(w, x)
	if x.UsesNetwork() {
		for _, l := range netfault.Lacks(context.Background()) {
			fmt.Fprintf(w, "REFUSED: this machine cannot: %s\n", l)
			refused = append(refused, fmt.Errorf("this machine cannot: %s", l))
		}
	}
	if len(x.StopWhen) == 0 {
		fmt.Fprintln(w, "stop conditions: none (--allow-no-stop)")
	} else {
		fmt.Fprintln(w, "stop when any of:")
	}
	for _, c := range x.StopWhen {
		fmt.Fprintf(w, "  %s\n", c.Text)
	}
	if p.seedGiven {
		fmt.Fprintf(w, "seed: %d (instances are picked with it)\n", seed)
	}
	fmt.Fprintln(w, "dry run: nothing was started or touched")
	if len(refused) > 0 {
		return fmt.Errorf("%w: %w", ErrRefused, errors.Join(refused...))
	}
	return nil
}

// describeTargets writes the targets, with the processes and pods they
// reach now, and returns what a run would refuse of them at setup.
func describeTargets(w io.Writer, x *experiment.Experiment) (refused []error) {
	fmt.Fprintln(w, "targets:")
	for _, t := range x.Targets {
		switch {
		case t.Proxy != nil && t.Proxy.API != "":
			fmt.Fprintf(w, "  %-12s remote proxy %s at %s\n", t.Name, t.Proxy.Name, t.Proxy.API)
		case t.Proxy != nil:
			fmt.Fprintf(w, "  %-12s embedded proxy %s -> %s\n", t.Name, t.Proxy.Listen, t.Proxy.Upstream)
		case t.DNS != nil && t.DNS.Intercept != nil:
			fmt.Fprintf(w, "  %-12s dns resolver answering the queries %s sends to any resolver, in its network namespace (upstream %s, %d record(s))\n", t.Name, t.DNS.Intercept.From, orNone(t.DNS.Upstream), len(t.DNS.Records))
		case t.DNS != nil:
			fmt.Fprintf(w, "  %-12s dns resolver on %s (upstream %s, %d record(s))\n", t.Name, t.DNS.Listen, orNone(t.DNS.Upstream), len(t.DNS.Records))
		case t.Intercept != nil:
			where := "in its network namespace"
			if from := targetOf(x, t.Intercept.From); from != nil && from.Pods != nil {
				where = fmt.Sprintf("inside each selected pod, by an agent (image %s) per fault on it, in an ephemeral container with NET_ADMIN, on the fault's lease", from.Pods.AgentImage)
			} else if t.Intercept.AllowHostNetwork {
				where += " (if that is the host's: every process of this machine that connects there)"
			}
			fmt.Fprintf(w, "  %-12s intercept: the TCP connections %s opens to %s, through a proxy %s\n", t.Name, t.Intercept.From, t.Intercept.To, where)
		case t.Pods != nil:
			agents := slices.ContainsFunc(x.Faults, func(f experiment.Fault) bool { return x.InPods(f) == t.Name })
			now, err := podsNow(t.Pods, agents)
			fmt.Fprintf(w, "  %-12s pods %s in namespace %s: %s\n", t.Name, t.Pods.Selector, t.Pods.Namespace, now)
			if err != nil {
				fmt.Fprintf(w, "  %-12s REFUSED: %v\n", "", err)
				refused = append(refused, fmt.Errorf("target %s: %w", t.Name, err))
			}
		case t.Process.Launched():
			iso := ""
			if t.Process.Isolated {
				iso = " (each in a network namespace of its own)"
			}
			fmt.Fprintf(w, "  %-12s launched: %d × %s%s\n", t.Name, t.Process.Instances, strings.Join(t.Process.Command, " "), iso)
		default:
			desc, err := describeExisting(t.Process)
			if err != nil {
				desc = "REFUSED: " + strings.ReplaceAll(err.Error(), "\n", "\n"+strings.Repeat(" ", 16))
				refused = append(refused, fmt.Errorf("target %s: %w", t.Name, err))
			}
			fmt.Fprintf(w, "  %-12s running process(es): %s\n", t.Name, desc)
		}
	}
	return refused
}

// describeFaultDetails writes what the faults that run something, or act
// on the network, will do.
func describeFaultDetails(w io.Writer, x *experiment.Experiment) {
	for _, f := range x.Faults {
		switch a := f.Action.(type) {
		case experiment.Exec:
			fmt.Fprintf(w, "fault %q runs: %s; reverts with: %s\n", f.Name, strings.Join(a.Inject, " "), strings.Join(a.Revert, " "))
		case experiment.Stress:
			if t := targetOf(x, f.Target); t != nil && t.Pods != nil {
				fmt.Fprintf(w, "fault %q runs: faultline stress %s %s inside each selected pod of %s, by an agent (image %s) in an ephemeral container of the pod's cgroup; stopped on revert, or by the agent when its lease of %v is not renewed\n",
					f.Name, a.Resource, strings.Join(a.Args, " "), t.Name, t.Pods.AgentImage, leaseOf(f))
				break
			}
			fmt.Fprintf(w, "fault %q runs: faultline stress %s %s; stopped on revert\n", f.Name, a.Resource, strings.Join(a.Args, " "))
		case experiment.Partition, experiment.PacketLoss:
			fmt.Fprintf(w, "fault %q: %s\n", f.Name, describeNetwork(x, f))
		}
	}
}

// describeNetwork says where a network fault acts, and what it hits there.
func describeNetwork(x *experiment.Experiment, f experiment.Fault) string {
	var t *experiment.Target
	for i := range x.Targets {
		if x.Targets[i].Name == f.Target {
			t = &x.Targets[i]
		}
	}
	to := ""
	switch a := f.Action.(type) {
	case experiment.Partition:
		to = a.To.String()
	case experiment.PacketLoss:
		to = fmt.Sprintf("%s (%d %%, %s, %s)", a.To, a.Percent, a.Protocol, f.Direction)
	}
	switch {
	case t != nil && t.Pods != nil:
		lease := leaseOf(f)
		return fmt.Sprintf("nftables rules to %s inside each selected pod of %s, by an agent (image %s) in an ephemeral container named faultline-RUNID-…, with NET_ADMIN; the agent takes them back by itself if this runner has not renewed its lease for %v (pods keep an exited ephemeral container in their spec)", to, t.Name, t.Pods.AgentImage, lease)
	case t == nil || t.Process == nil:
		return "no process target"
	case t.Process.Isolated:
		return fmt.Sprintf("nftables rules to %s in the network namespace of each selected instance of %s; nothing of the host's changes", to, t.Name)
	case t.Process.Launched():
		return fmt.Sprintf("nftables rules to %s in the host's network namespace (allow_host_network): every process of this machine that talks to %s is hit, not only %s", to, to, t.Name)
	}
	return fmt.Sprintf("nftables rules to %s in the network namespace of each selected process of %s (/proc/PID/ns/net); if that is the host's, every process of this machine that talks to %s is hit (allow_host_network is then needed)", to, t.Name, to)
}

// describeExisting lists the running processes a target names now, as a
// run would find them; err is what a run would refuse.
func describeExisting(p *experiment.ProcessTarget) (string, error) {
	pids, err := process.Find(p.Selector())
	if err != nil {
		return "", err
	}
	var lines []string
	for i, pid := range pids {
		if i == 10 {
			lines = append(lines, fmt.Sprintf("and %d more", len(pids)-10))
			break
		}
		owner := "?"
		if uid, err := process.UID(pid); err == nil {
			owner = strconv.Itoa(uid)
			if u, err := user.LookupId(owner); err == nil {
				owner = u.Username
			}
		}
		lines = append(lines, fmt.Sprintf("pid %d (%s) %s", pid, owner, process.Command(pid)))
	}
	return fmt.Sprintf("%d now:\n%16s%s", len(pids), "", strings.Join(lines, "\n"+strings.Repeat(" ", 16))), nil
}

// podsNow lists the pods a target selects now (reading only), for the plan.
// podsNow lists the pods a target names now, as a run would find them,
// and, when agents will act in them, what the account may not do of what
// that takes (err; nil when it may, or when the cluster cannot be asked:
// the list says so).
func podsNow(p *experiment.PodsTarget, agents bool) (string, error) {
	c, err := kube.Open(p.Kubeconfig)
	if err != nil {
		return "cannot reach the cluster: " + err.Error(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := c.Pods(ctx, p.Namespace, p.Selector)
	if err != nil {
		return "cannot list them: " + err.Error(), nil
	}
	names := make([]string, 0, len(pods))
	for _, pod := range pods {
		names = append(names, pod.Name)
	}
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	now := fmt.Sprintf("%d now (%s); each fault resolves its selection when it starts", len(pods), strings.Join(names, ", "))
	if !agents {
		return now, nil
	}
	if err := c.CheckAgentAccess(ctx, p.Namespace); errors.Is(err, kube.ErrNoAgentRights) {
		return now, err
	}
	return now, nil
}

// orMachine names a fault's target; stress and exec faults have none.
func orMachine(target string) string {
	if target == "" {
		return "the machine"
	}
	return target
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func targetOf(x *experiment.Experiment, name string) *experiment.Target {
	for i := range x.Targets {
		if x.Targets[i].Name == name {
			return &x.Targets[i]
		}
	}
	return nil
}

// leaseOf is a fault's lease inside a pod.
func leaseOf(f experiment.Fault) time.Duration {
	if f.Lease == 0 {
		return agent.DefaultLease
	}
	return f.Lease
}
