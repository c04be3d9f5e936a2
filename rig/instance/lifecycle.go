package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Poweroff halts the instance cleanly: SIGTERM to systemd-nspawn (which
// has systemd halt the container), waiting at most StopTimeout (and no
// longer than ctx) before killing it. Its cgroups, network rules and
// forwarders go; the root directory stays, so that Start with
// Options{Root: in.Root()} boots the same disk again. An error says the
// instance did not halt cleanly (it is stopped all the same). A second
// call does nothing.
func (in *Instance) Poweroff(ctx context.Context) error {
	if in.stopped {
		return nil
	}
	start := time.Now()
	if err := in.shutdown(ctx); err != nil {
		return fmt.Errorf("rig/instance: instance %s: poweroff: %w\nconsole %s, last %d lines:\n%s",
			in.name, err, in.console, consoleLines, tailFile(in.console, consoleLines))
	}
	in.logf("rig/instance: instance %s powered off in %s", in.name, time.Since(start).Round(time.Millisecond))
	return nil
}

// Close undoes Start: it stops the instance if it runs (as Poweroff),
// unmounts the overlay this boot mounted and checks that nothing stays
// mounted below the root. A root booted again with Options.Root by a
// later instance must be closed by that instance first. Close is
// idempotent; the boot's directory (Options.Dir) stays, for its owner to
// remove.
func (in *Instance) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	var errs []error
	if !in.stopped {
		start := time.Now()
		if err := in.shutdown(context.Background()); err != nil {
			errs = append(errs, err)
		} else if in.cmd != nil {
			in.logf("rig/instance: instance %s stopped by Close in %s", in.name, time.Since(start).Round(time.Millisecond))
		}
	}
	if err := in.releaseRoot(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("rig/instance: instance %s: close: %w\nconsole %s, last %d lines:\n%s",
			in.name, errors.Join(errs...), in.console, consoleLines, tailFile(in.console, consoleLines))
	}
	return nil
}

// releaseRoot unmounts the overlay this boot mounted, or checks that
// nothing is left mounted below a root it was given.
func (in *Instance) releaseRoot() error {
	if in.root == "" {
		return nil
	}
	if in.overlay {
		return unmountAll(in.root)
	}
	points, err := mountsUnder(in.root)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range points {
		if p != in.root {
			errs = append(errs, fmt.Errorf("left mounted: %s", p))
		}
	}
	return errors.Join(errs...)
}

// shutdown stops nspawn and removes the instance's cgroups and network.
func (in *Instance) shutdown(ctx context.Context) error {
	in.stopped = true
	err := in.stop(ctx)
	if in.cg != nil {
		err = errors.Join(err, in.cg.remove())
	}
	if in.veth != nil {
		err = errors.Join(err, in.veth.down())
	}
	// nspawn leaves this directory when /run is not a tmpfs ("we can't
	// allow that"): remove it if it is empty.
	_ = os.Remove(filepath.Join("/run/systemd/nspawn/propagate", in.name))
	return err
}

// stop stops systemd-nspawn: SIGTERM, then after stopTimeout (or when ctx
// ends) SIGKILL to the container's init (which ends its PID namespace)
// and to nspawn.
func (in *Instance) stop(ctx context.Context) error {
	if in.cmd == nil {
		return nil
	}
	if in.exited() {
		if in.waitErr != nil {
			return fmt.Errorf("systemd-nspawn had exited by itself: %w", in.waitErr)
		}
		return nil
	}
	pid := in.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGTERM to systemd-nspawn (PID %d): %w", pid, err)
	}
	timer := time.NewTimer(in.stopTimeout)
	defer timer.Stop()
	why := fmt.Sprintf("within %s of SIGTERM", in.stopTimeout)
	select {
	case <-in.done:
		if in.waitErr != nil {
			return fmt.Errorf("systemd-nspawn after SIGTERM: %w", in.waitErr)
		}
		return nil
	case <-timer.C:
	case <-ctx.Done():
		why = fmt.Sprintf("before the poweroff's context ended (%v)", ctx.Err())
	}
	if in.initPID != 0 {
		if ppid, _, err := procStat(in.initPID); err == nil && ppid == pid {
			_ = syscall.Kill(in.initPID, syscall.SIGKILL)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-in.done:
		return fmt.Errorf("systemd-nspawn (PID %d) did not halt %s: killed it", pid, why)
	case <-time.After(killWait):
		return fmt.Errorf("systemd-nspawn (PID %d) did not exit within %s of SIGKILL", pid, killWait)
	}
}
