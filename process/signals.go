package process

import (
	"maps"
	"slices"
	"strings"
	"syscall"
)

// Signals are the signals a fault or the monkey may send, by name.
var Signals = map[string]syscall.Signal{
	"SIGKILL": syscall.SIGKILL, "SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT,
	"SIGQUIT": syscall.SIGQUIT, "SIGHUP": syscall.SIGHUP, "SIGABRT": syscall.SIGABRT,
	"SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
}

// SignalNames lists Signals' names, sorted.
func SignalNames() []string { return slices.Sorted(maps.Keys(Signals)) }

// SignalName is a signal as people write it: SIGKILL, not "killed".
func SignalName(sig syscall.Signal) string {
	for name, s := range Signals {
		if s == sig {
			return name
		}
	}
	return sig.String()
}

// ParseSignal reads a signal's name as a file may give it (SIGTERM, TERM,
// term) and returns it as Signals names it.
func ParseSignal(s string) (string, bool) {
	sig := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(sig, "SIG") {
		sig = "SIG" + sig // KILL is SIGKILL
	}
	_, ok := Signals[sig]
	return sig, ok
}
