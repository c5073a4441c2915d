package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// commandProbe runs a command and compares its exit status with Expect;
// a failure says the last line the command printed.
func commandProbe(ctx context.Context, _ *Prober, s *Spec) (Result, error) {
	cmd := exec.CommandContext(ctx, s.Command[0], s.Command[1:]...)
	var said lastLine
	cmd.Stdout, cmd.Stderr = &said, &said
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return Result{}, err
	}
	want, _ := strconv.Atoi(s.Expect)
	detail := fmt.Sprintf("exit status %d", code)
	if code != want {
		if line := said.String(); line != "" {
			if len(line) > 200 {
				line = line[:200] + "…"
			}
			detail += ": " + line
		}
	}
	return Result{Passed: code == want, Detail: detail}, nil
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
		if len(bytes.TrimSpace(l.cur)) > 0 {
			l.line = append(l.line[:0], l.cur...)
		}
		l.cur = l.cur[:0]
	}
	return len(b), nil
}

func (l *lastLine) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(bytes.TrimSpace(l.cur)) > 0 {
		return string(bytes.TrimSpace(l.cur))
	}
	return string(bytes.TrimSpace(l.line))
}
