package builtin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/faultline/faultline/experiment"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/journal"
	"github.com/faultline/faultline/process"
	"github.com/faultline/faultline/stress"
	"github.com/faultline/faultline/target"
)

// The stresses: 'faultline stress KIND ...' as a child of the run (it
// dies with the runner), in place once it says "ready:". A disk fill's
// file is journaled before the child starts, so that recover removes it
// even if the child was killed before it could.

func injectStress(ctx context.Context, f *fault.Fault, a experiment.Stress) error {
	if t, ok := f.Target.(*target.Pods); ok {
		return injectPodStress(ctx, f, t, a)
	}
	args := append([]string{"stress", a.Resource}, a.Args...)
	args = append(args, "--json", "--journaled-by-run") // this run journals and registers it
	if a.Resource == "disk" {
		file := filepath.Join(a.Path, ".faultline-fill-"+f.Run+"-"+strings.NewReplacer(" ", "-", "/", "-").Replace(f.Spec.Name))
		args = append(args, "--file", file)
		err := f.Step(ctx, fault.Step{
			What: "fill " + a.Path,
			Undo: &journal.Undo{Kind: "remove_file", Path: file},
			Do:   func(context.Context) error { return nil }, // the child below fills it
		})
		if err != nil {
			return err
		}
	}
	child, err := startStress(f, a.Resource, args)
	if err != nil {
		return err
	}
	var placed string
	err = f.Step(ctx, fault.Step{
		What: "faultline " + strings.Join(args, " "),
		Undo: &journal.Undo{Kind: "kill", Procs: []journal.Proc{child.proc}, Group: true},
		Do: func(ctx context.Context) error {
			var err error
			placed, err = child.waitReady(ctx, f.Spec.Name)
			return err
		},
		Revert: func(context.Context) error { return child.revert(f) },
	})
	if err != nil {
		if fault.IsNotApplied(err) {
			_, _ = child.stop() // gone already: collect it
		}
		return err
	}
	f.Hit(fmt.Sprintf("stress %s (pid %d): %s", a.Resource, child.cmd.Process.Pid, placed))
	return nil
}

// stressChild is a 'faultline stress' process of the run.
type stressChild struct {
	resource string
	args     []string
	cmd      *exec.Cmd
	proc     journal.Proc
	said     *lastLine   // why it ended, if it ends early
	ready    chan string // its "ready: ..." line
	final    chan string // its last line, once its output ends
	exited   chan error  // its exit, after final

	once     sync.Once
	evidence string
	waitErr  error
}

// startStress starts the child in a process group of its own; it dies
// with the runner.
func startStress(f *fault.Fault, resource string, args []string) (*stressChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &stressChild{resource: resource, args: args, said: &lastLine{},
		ready: make(chan string, 1), final: make(chan string, 1), exited: make(chan error, 1)}
	c.cmd = exec.Command(self, args...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.cmd.Stderr = io.MultiWriter(&target.PrefixWriter{W: f.Log, Prefix: "stress " + resource + " "}, c.said)
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("fault %s: %w", f.Spec.Name, err)
	}
	c.proc, _ = process.Identify(c.cmd.Process.Pid)
	go func() {
		var last string
		defer func() {
			c.final <- last
			c.exited <- c.cmd.Wait()
		}()
		read := func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if d, ok := strings.CutPrefix(line, "ready: "); ok {
					c.ready <- d
					continue
				}
				last = line
			}
		}
		if f.Guard != nil {
			f.Guard("reading the stress's output", read)
		} else {
			read()
		}
	}()
	return c, nil
}

// waitReady waits until the stress is in place and returns what it holds.
// A stress that ended first did nothing that stays: NotApplied.
func (c *stressChild) waitReady(ctx context.Context, name string) (string, error) {
	select {
	case placed := <-c.ready:
		return placed, nil
	case <-time.After(2 * time.Minute):
		return "", fmt.Errorf("fault %s: stress %s not in place after 2 minutes", name, c.resource)
	case <-ctx.Done():
		return "", ctx.Err()
	case err := <-c.exited:
		c.exited <- err                                           // for stop, which waits for it too
		why := strings.TrimPrefix(c.said.String(), "faultline: ") // Wait has copied all of stderr
		if why == "" {
			why = "'faultline " + strings.Join(c.args, " ") + "' exited"
		}
		return "", fault.NotApplied(fmt.Errorf("the stress ended before it was in place: %s (its output is in processes.log)", why))
	}
}

// stop ends the stress (SIGTERM, SIGKILL after 15 s) and returns what it
// said it did, and its exit.
func (c *stressChild) stop() (string, error) {
	c.once.Do(func() {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case c.evidence = <-c.final:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			c.evidence = <-c.final
		}
		c.waitErr = <-c.exited
		var res stress.Result
		if jerr := json.Unmarshal([]byte(c.evidence), &res); jerr == nil {
			c.evidence = res.String()
		}
	})
	return c.evidence, c.waitErr
}

// revert stops the stress and records what it did as evidence.
func (c *stressChild) revert(f *fault.Fault) error {
	evidence, err := c.stop()
	if evidence != "" {
		f.Evidence("%s", evidence)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
		// Killed (the OOM killer picks a memory stress first): what it
		// held is given back all the same.
		f.Evidence("the stress process was killed by %s before the end", process.SignalName(ee.Sys().(syscall.WaitStatus).Signal()))
		return nil
	case errors.As(err, &ee) && ee.ExitCode() != 0:
		return fmt.Errorf("stress %s exited %d", c.resource, ee.ExitCode())
	}
	return nil
}

func undoRemoveFile(_ context.Context, u *journal.Undo) (string, error) {
	err := os.Remove(u.Path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil // the stress removed it on its way out
	}
	return "removed " + u.Path, err
}

func fillInPlace(e journal.Event) string { return "fill file " + e.Undo.Path }

// lastLine keeps the last line written to it that is not empty.
type lastLine struct {
	mu        sync.Mutex
	line, cur []byte
}

func (l *lastLine) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range b {
		if c != '\n' {
			l.cur = append(l.cur, c)
			continue
		}
		if len(strings.TrimSpace(string(l.cur))) > 0 {
			l.line = append(l.line[:0], l.cur...)
		}
		l.cur = l.cur[:0]
	}
	return len(b), nil
}

func (l *lastLine) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := strings.TrimSpace(string(l.cur)); s != "" {
		return s
	}
	return strings.TrimSpace(string(l.line))
}
