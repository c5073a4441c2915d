package builtin

import (
	"context"
	"strings"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
)

// exec: a command to inject, another to revert. An inject command that
// was interrupted, or failed halfway, may have done part of its work: the
// revert command runs all the same, so it must be safe to run then.

func injectExec(ctx context.Context, f *fault.Fault, a experiment.Exec) error {
	err := f.Step(ctx, fault.Step{
		Undo: &journal.Undo{Kind: "exec", Command: a.Revert},
		Do:   func(ctx context.Context) error { return process.RunCommand(ctx, a.Inject) },
	})
	if err != nil {
		return err
	}
	f.Hit("command " + strings.Join(a.Inject, " "))
	f.Evidence("inject command exited 0")
	return nil
}

func undoExec(ctx context.Context, u *journal.Undo) (string, error) {
	return "ran " + strings.Join(u.Command, " "), process.RunCommand(ctx, u.Command)
}

func execInPlace(e journal.Event) string {
	if e.Message != "" {
		return e.Message + "; undone by running " + strings.Join(e.Undo.Command, " ")
	}
	return "undone by running " + strings.Join(e.Undo.Command, " ")
}
