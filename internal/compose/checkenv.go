package compose

import (
	"context"
	"fmt"
)

// CheckEnv loads the compose file of the stack in dir against env (.env as
// parsed) exactly as the compose step does before `up`, and returns what
// that step's check finds: errors for a variable a started service needs
// with no value and no default, warnings for unread keys and secrets that
// fall back to defaults or are written as literals. Services in off (left
// out for an absent optional value), and those that depend on them, are
// not started, so what only they read is not needed. `monagent doctor`
// asks this without running the step.
func CheckEnv(ctx context.Context, dir, project, file string, env map[string]string, off []string) (errs, warnings []string, err error) {
	m, err := load(ctx, dir, project, []string{file}, env)
	if err != nil {
		return nil, nil, fmt.Errorf("check .env: %w", err)
	}
	left := map[string]bool{}
	for _, svc := range off {
		if _, ok := m.project.Services[svc]; ok {
			left[svc] = true
		}
	}
	for _, d := range m.dependants(left) {
		left[d.service] = true
	}
	var enabled []string
	for _, svc := range m.services() {
		if !left[svc] {
			enabled = append(enabled, svc)
		}
	}
	f := m.check(env, enabled)
	return f.errs, f.warnings, nil
}
