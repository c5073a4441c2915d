package monkey

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// runCommand runs a group's restart command, at most a minute.
func runCommand(ctx context.Context, args []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
