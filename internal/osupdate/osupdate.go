// Package osupdate is the optional packages step: the seed's `dnf update -y`
// (or apt on Debian-family hosts), run once and remembered.
package osupdate

import (
	"context"
	"fmt"
	"time"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/pkgmgr"
)

// Step updates the OS packages once when enabled.
type Step struct {
	Enabled bool
	// Root holds the etc/os-release that names the package manager.
	Root string
	Run  command.Runner

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
	m, err := pkgmgr.Detect(s.Root, s.Run)
	if err != nil {
		return fmt.Errorf("%w; or set packages.update: false", err)
	}
	if err := m.Upgrade(ctx); err != nil {
		return err
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
