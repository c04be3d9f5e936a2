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

// Step updates the OS packages once when enabled.
type Step struct {
	Enabled bool
	Run     command.Runner

	updatedAt string
}

func (s *Step) Name() string { return "packages" }

func (s *Step) Fingerprint(context.Context) (string, error) {
	return fmt.Sprintf("update=%t", s.Enabled), nil
}

// Check passes when the update is off, or has run on this host before.
func (s *Step) Check(context.Context) (bool, error) {
	return !s.Enabled || s.updatedAt != "", nil
}

func (s *Step) Apply(ctx context.Context) error {
	if !s.Enabled {
		return nil
	}
	switch {
	case found("dnf"):
		if _, err := s.Run.Run(ctx, "dnf", "update", "-y"); err != nil {
			return fmt.Errorf("OS update: %w", err)
		}
	case found("apt-get"):
		if _, err := s.Run.Run(ctx, "apt-get", "update"); err != nil {
			return fmt.Errorf("OS update: %w", err)
		}
		if _, err := s.Run.Run(ctx, "apt-get", "-y", "-o", "Dpkg::Options::=--force-confold", "upgrade"); err != nil {
			return fmt.Errorf("OS update: %w", err)
		}
	default:
		return errors.New("OS update: neither dnf nor apt-get found; set packages.update: false or install one")
	}
	s.updatedAt = time.Now().UTC().Format(time.RFC3339)
	return nil
}

func (s *Step) Restore(memo map[string]string) { s.updatedAt = memo["updated_at"] }

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
