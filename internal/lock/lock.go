// Package lock makes monagent runs exclusive: an flock on one file, so a
// second invocation waits for the first and then sees converged state.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTimeout means another run held the lock for longer than the wait.
var ErrTimeout = errors.New("lock not obtained in time")

// Lock is a held lock.
type Lock struct{ f *os.File }

// Acquire takes an exclusive flock on path, waiting up to timeout. The
// kernel drops the lock when the process dies, so a crashed run never
// leaves the host locked.
func Acquire(ctx context.Context, path string, timeout time.Duration) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("%w: %s is held by another monagent run after %s; "+
					"wait for it (journalctl -u monagent) or raise --lock-timeout", ErrTimeout, path, timeout)
			}
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// File is the locked file: a program that inherits it holds the lock
// until it exits, even when this process is killed first.
func (l *Lock) File() *os.File { return l.f }

// Release drops the lock.
func (l *Lock) Release() error {
	if err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN); err != nil {
		l.f.Close()
		return fmt.Errorf("unlock: %w", err)
	}
	return l.f.Close()
}
