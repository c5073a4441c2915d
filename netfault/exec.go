package netfault

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecSubcommand is the hidden subcommand of the faultline binary that
// Command runs: faultline ExecSubcommand ARGS… must call ExecMain(ARGS),
// before anything else of the binary starts.
const ExecSubcommand = "__netns-exec"

// Command returns the command that runs name with args inside ns: self (the
// path of the faultline binary) is started with ExecSubcommand, enters the
// namespace and executes name in its place, so the process left is name's
// own, with its pid, as `ip netns exec` does. Set its Stdout, Env, SysProcAttr
// and so on as for any command; name is looked up in PATH inside ExecMain.
func Command(self string, ns NS, name string, args ...string) *exec.Cmd {
	argv := append([]string{ExecSubcommand, ns.Path, fmt.Sprintf("%d:%d", ns.Dev, ns.Ino), "--", name}, args...)
	return exec.Command(self, argv...)
}

// ExecMain enters a network namespace and executes a command in the
// process's place; it returns only on an error, which the subcommand prints
// before exiting non-zero (127 is what shells use when a command cannot be
// run). args are what Command put after ExecSubcommand: PATH DEV:INO -- NAME
// ARGS…; a DEV:INO of 0:0 enters whatever PATH is. A namespace that is no
// longer the one recorded is not entered.
func ExecMain(args []string) error {
	if len(args) < 4 || args[2] != "--" {
		return errors.New("usage: " + ExecSubcommand + " NSPATH DEV:INO -- COMMAND [ARG...]")
	}
	ns := NS{Path: args[0]}
	dev, ino, ok := strings.Cut(args[1], ":")
	var err1, err2 error
	ns.Dev, err1 = strconv.ParseUint(dev, 10, 64)
	ns.Ino, err2 = strconv.ParseUint(ino, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("namespace identity %q: want DEV:INO", args[1])
	}
	name := args[3]
	path, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	// The namespace belongs to this thread: it must be the one that execs.
	runtime.LockOSThread()
	f, err := ns.open()
	if err != nil {
		return err
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter %s: %w", ns, err)
	}
	f.Close()
	return syscall.Exec(path, args[3:], os.Environ())
}
