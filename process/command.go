package process

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// RunCommand runs a command for at most a minute, in a process group of
// its own that is killed whole when ctx ends (a shell's children too, so
// an interrupt does not wait for them), and returns its error with the
// end of its output. What it starts in the background and leaves running
// when it exits on its own stays (a revert command may stop it); its
// output is waited for at most a second after the exit.
func RunCommand(ctx context.Context, args []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second // for output pipes held by what escaped the group
	out, err := cmd.CombinedOutput()
	if err != nil {
		s := strings.TrimSpace(string(out))
		if len(s) > 300 {
			s = "…" + s[len(s)-300:]
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, s)
	}
	return nil
}
