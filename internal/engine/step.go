package engine

import "context"

// Step is one stage of convergence. The engine skips a step whose
// fingerprint matches its last successful run and whose Check passes;
// otherwise it calls Apply and then Check again to confirm the result.
type Step interface {
	// Name is the step's stable identifier (state key, --only, --until).
	Name() string
	// Fingerprint digests the step's inputs. It is called before Check and
	// may read cheap local facts or configuration, never mutate the host.
	Fingerprint(ctx context.Context) (string, error)
	// Check reports whether the host is converged for this step. A nil error
	// with false means "apply needed"; an error means the check itself failed.
	Check(ctx context.Context) (bool, error)
	// Apply converges the host. It must be idempotent.
	Apply(ctx context.Context) error
}

// Permanent marks an error that retrying cannot fix (wrong AZ, revoked KMS
// key, a volume holding a foreign filesystem). The CLI maps it onto the same
// exit code as any failed step; systemd uses it to stop restart loops.
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

// PermanentError wraps err as permanent.
func PermanentError(err error) error {
	if err == nil {
		return nil
	}
	return &Permanent{Err: err}
}
