// Package retry holds what every step needs to wait well: a backoff, a
// bounded poll, the mark of an error that retrying cannot fix, and the
// classification of AWS errors into throttling, transient and permanent.
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Backoff spaces the attempts of a wait: the delay starts at Initial and
// doubles up to Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// DefaultBackoff suits a wait on the AWS API: a change is noticed within
// a fifth of a second (on a boot's critical path, the volume's release and
// its attachment), with at most five calls a second, within EC2's request
// rate for describe calls.
var DefaultBackoff = Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}

// Next is the delay that follows d.
func (b Backoff) Next(d time.Duration) time.Duration {
	if d <= 0 {
		return b.first()
	}
	return min(2*d, max(b.Max, b.first()))
}

func (b Backoff) first() time.Duration {
	if b.Initial <= 0 {
		return DefaultBackoff.Initial
	}
	return b.Initial
}

// ErrTimeout is wrapped by Poll's error when its timeout passes.
var ErrTimeout = errors.New("timed out")

// Poll calls f until it reports done, or returns an error that is not
// Retryable, waiting by b between calls. After timeout it returns an error
// wrapping ErrTimeout and the last transient error. A cancelled ctx ends
// the wait with ctx's error.
func Poll(ctx context.Context, b Backoff, timeout time.Duration, log *zap.Logger,
	f func(context.Context) (bool, error)) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var delay time.Duration
	var last error
	for {
		done, err := f(pctx)
		switch {
		case err == nil && done:
			return nil
		case err != nil && pctx.Err() != nil && ctx.Err() == nil:
			// Cut short by our own deadline; the timeout below reports it.
		case err != nil && !Retryable(err):
			return err
		case err != nil:
			last = err
			if log != nil {
				log.Info("transient error, retrying", zap.Error(err))
			}
		}
		delay = b.Next(delay)
		if err := sleep(pctx, delay); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if last != nil {
				return fmt.Errorf("%w after %v (last error: %w)", ErrTimeout, timeout, last)
			}
			return fmt.Errorf("%w after %v", ErrTimeout, timeout)
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
