// Package osupdate is the optional packages step: the seed's `dnf update -y`
// (or apt on Debian-family hosts), run once and remembered.
package osupdate

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/monagent/monagent/internal/command"
)

// Bounds of a package manager run: an update downloads, so it may take
// minutes, but a hung mirror must not hold the boot for ever.
const (
	refreshTimeout = 10 * time.Minute
	upgradeTimeout = 30 * time.Minute
)

// noninteractive keeps apt and dpkg from asking anything: there is no one
// to answer, and a prompt would hang the boot until the timeout.
var noninteractive = []string{"DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=a"}

// Step updates the OS packages once when enabled.
type Step struct {
	Enabled bool
	Run     command.Runner

	updatedAt string
}

// Fingerprint is whether the update is on.
func (s *Step) Fingerprint(context.Context) (string, error) {
	return fmt.Sprintf("update=%t", s.Enabled), nil
}

// Check passes when the update is off, or has run on this host before.
func (s *Step) Check(context.Context) (bool, error) {
	return !s.Enabled || s.updatedAt != "", nil
}

// Apply runs the update. A SIGTERM asks the package manager to stop
// (command.Exec sends SIGTERM, not SIGKILL), which dnf and dpkg handle
// without leaving their databases half-written.
func (s *Step) Apply(ctx context.Context) error {
	if !s.Enabled {
		return nil
	}
	var cmds []command.Cmd
	switch {
	case found("dnf"):
		cmds = []command.Cmd{{Name: "dnf", Args: []string{"-y", "update"}, Timeout: upgradeTimeout}}
	case found("apt-get"):
		cmds = []command.Cmd{
			{Name: "apt-get", Args: []string{"-q", "update"}, Env: noninteractive, Timeout: refreshTimeout},
			{Name: "apt-get", Args: []string{"-q", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", "upgrade"},
				Env: noninteractive, Timeout: upgradeTimeout},
		}
	default:
		return errors.New("OS update: neither dnf nor apt-get found; set packages.update: false or install one")
	}
	for _, c := range cmds {
		if _, err := s.Run.Run(ctx, c); err != nil {
			return fmt.Errorf("OS update: %w", err)
		}
	}
	s.updatedAt = time.Now().UTC().Format(time.RFC3339)
	return nil
}

// Restore implements engine.Memoizer.
func (s *Step) Restore(memo map[string]string) { s.updatedAt = memo["updated_at"] }

// Memo implements engine.Memoizer.
func (s *Step) Memo() map[string]string {
	if s.updatedAt == "" {
		return nil
	}
	return map[string]string{"updated_at": s.updatedAt}
}

func found(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}
