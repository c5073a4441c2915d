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
	self, err := os.Executable()
	if err != nil {
		return err
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
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var said lastLine // why it ended, if it ends early
	cmd.Stderr = io.MultiWriter(&target.PrefixWriter{W: f.Log, Prefix: "stress " + a.Resource + " "}, &said)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("fault %s: %w", f.Spec.Name, err)
	}
	proc, _ := process.Identify(cmd.Process.Pid)
	ready := make(chan string, 1)
	final := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		var last string
		defer func() {
			final <- last
			exited <- cmd.Wait()
		}()
		read := func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if d, ok := strings.CutPrefix(line, "ready: "); ok {
					ready <- d
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
	var once sync.Once
	var evidence string
	var waitErr error
	stopChild := func() (string, error) {
		once.Do(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case evidence = <-final:
			case <-time.After(15 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				evidence = <-final
			}
			waitErr = <-exited
			var res stress.Result
			if jerr := json.Unmarshal([]byte(evidence), &res); jerr == nil {
				evidence = res.String()
			}
		})
		return evidence, waitErr
	}
	var placed string
	err = f.Step(ctx, fault.Step{
		What: "faultline " + strings.Join(args, " "),
		Undo: &journal.Undo{Kind: "kill", Procs: []journal.Proc{proc}, Group: true},
		Do: func(ctx context.Context) error {
			select {
			case placed = <-ready:
				return nil
			case <-time.After(2 * time.Minute):
				return fmt.Errorf("fault %s: stress %s not in place after 2 minutes", f.Spec.Name, a.Resource)
			case <-ctx.Done():
				return ctx.Err()
			case <-exited:
				exited <- nil                                           // for stopChild, which waits for it too
				why := strings.TrimPrefix(said.String(), "faultline: ") // Wait has copied all of stderr
				if why == "" {
					why = "'faultline " + strings.Join(args, " ") + "' exited"
				}
				return fault.NotApplied(fmt.Errorf("the stress ended before it was in place: %s (its output is in processes.log)", why))
			}
		},
		Revert: func(context.Context) error {
			evidence, err := stopChild()
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
				return fmt.Errorf("stress %s exited %d", a.Resource, ee.ExitCode())
			}
			return nil
		},
	})
	if err != nil {
		if fault.IsNotApplied(err) {
			_, _ = stopChild() // gone already: collect it
		}
		return err
	}
	f.Hit(fmt.Sprintf("stress %s (pid %d): %s", a.Resource, cmd.Process.Pid, placed))
	return nil
}

func undoRemoveFile(_ context.Context, u *journal.Undo) (string, error) {
	err := os.Remove(u.Path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil // the stress removed it on its way out
	}
	return "removed " + u.Path, err
}

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
