package engine

import (
	"context"
	"time"
)

// Step is one stage of convergence. The engine skips a step whose
// fingerprint matches its last successful run and whose Check passes;
// otherwise it calls Apply and then Check again to confirm the result.
type Step interface {
	// Fingerprint digests the step's inputs. It is called before Check and
	// may read cheap local facts or configuration, never mutate the host.
	Fingerprint(ctx context.Context) (string, error)
	// Check reports whether the host is converged for this step. A nil error
	// with false means "apply needed"; an error means the check itself failed.
	Check(ctx context.Context) (bool, error)
	// Apply converges the host. It must be idempotent.
	Apply(ctx context.Context) error
}

// Memoizer is a step that keeps a little data of its own across runs (the
// signal step remembers which instance it signalled for). The engine
// restores the memo before Fingerprint and saves it after the step
// converges.
type Memoizer interface {
	Restore(memo map[string]string)
	Memo() map[string]string
}

// Warner is a step that can converge with a reservation worth showing in
// status, such as "converged locally; AWS could not be asked".
type Warner interface {
	Warning() string
}

// Node is a step with its name, the steps whose results it needs, and the
// longest it may take.
type Node struct {
	Name   string
	Needs  []string
	Step   Step
	Budget time.Duration
	// KeepGoing starts the step even after another step failed, once its
	// own needs converged: the signal and the steps it needs, whose outcome
	// must not depend on how fast an unrelated step failed.
	KeepGoing bool
}
