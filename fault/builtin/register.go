package builtin

import (
	"strconv"
	"strings"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
)

// Register gives r every built-in family and the undos recover replays
// for them.
func Register(r *fault.Registry) {
	fault.RegisterFunc(r, injectToxic)
	fault.RegisterFunc(r, injectDown)
	fault.RegisterFunc(r, injectStop)
	fault.RegisterFunc(r, injectKill)
	fault.RegisterFunc(r, injectExec)
	fault.RegisterFunc(r, injectDNS)
	fault.RegisterFunc(r, injectStress)
	fault.RegisterFunc(r, injectPodKill)
	fault.RegisterFunc(r, injectScale)
	fault.RegisterFunc(r, injectCordon)
	fault.RegisterFunc(r, injectPartition)
	fault.RegisterFunc(r, injectPacketLoss)
	r.RegisterUndo("remove_toxic", undoRemoveToxic)
	r.RegisterUndo("enable_proxy", undoEnableProxy)
	r.RegisterUndo("sigcont", undoSigcont)
	r.RegisterUndo("kill", undoKill)
	r.RegisterUndo("exec", undoExec)
	r.RegisterUndo("remove_file", undoRemoveFile)
	r.RegisterUndo("scale", undoScale)
	r.RegisterUndo("uncordon", undoUncordon)
	r.RegisterUndo("netfault", undoNetfault)
	r.RegisterUndo("pod_agent", undoPodAgent)
	r.RegisterInPlace("remove_toxic", toxicInPlace)
	r.RegisterInPlace("enable_proxy", downInPlace)
	r.RegisterInPlace("sigcont", stoppedInPlace)
	r.RegisterInPlace("kill", launchedInPlace)
	r.RegisterInPlace("exec", execInPlace)
	r.RegisterInPlace("remove_file", fillInPlace)
	r.RegisterInPlace("scale", scaleInPlace)
	r.RegisterInPlace("uncordon", cordonInPlace)
}

// pids lists the pids of an undo's processes.
func pids(u *journal.Undo) string {
	var out []string
	for _, p := range u.Procs {
		out = append(out, strconv.Itoa(p.PID))
	}
	return strings.Join(out, ", ")
}

// Registry returns a registry with every built-in family.
func Registry() *fault.Registry {
	r := fault.NewRegistry()
	Register(r)
	return r
}

// Actions is the action types the built-in families do, for a check that
// every one the experiment format knows has a family.
var Actions = []experiment.Action{experiment.ProxyToxic{}, experiment.Down{}, experiment.Stop{}, experiment.Kill{},
	experiment.Exec{}, experiment.DNS{}, experiment.Stress{}, experiment.PodKill{}, experiment.Scale{}, experiment.Cordon{},
	experiment.Partition{}, experiment.PacketLoss{}}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
