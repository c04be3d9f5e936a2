// Package systemdbus enables and starts units through systemd's D-Bus API
// (the system bus at /run/dbus/system_bus_socket), waiting for the job's
// result instead of shelling out to systemctl.
package systemdbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
)

// jobTimeout bounds a start job: docker.service starts in seconds.
const jobTimeout = 3 * time.Minute

// systemBus is where a running systemd's bus listens.
const systemBus = "/run/dbus/system_bus_socket"

// ErrNoSystemd means there is no system bus to talk to: the host does not
// run systemd (a container, or the test rig's bare host).
var ErrNoSystemd = errors.New("no systemd: the system bus is not there")

// Units starts units on this host.
type Units struct{}

// Available reports whether the system bus is there.
func (Units) Available() bool {
	_, err := os.Stat(systemBus)
	return err == nil
}

// EnableAndStart enables unit (as systemctl enable would: its [Install]
// section), reloads systemd, starts the unit and waits for the start job
// to finish. A job that ends other than "done" is an error naming the
// result and where to look.
func (u Units) EnableAndStart(ctx context.Context, unit string) error {
	if !u.Available() {
		return fmt.Errorf("start %s: %w", unit, ErrNoSystemd)
	}
	ctx, cancel := context.WithTimeout(ctx, jobTimeout)
	defer cancel()
	conn, err := dbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("start %s: connect to systemd over D-Bus: %w", unit, err)
	}
	defer conn.Close()
	if _, _, err := conn.EnableUnitFilesContext(ctx, []string{unit}, false, true); err != nil {
		return fmt.Errorf("enable %s: %w", unit, err)
	}
	if err := conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("reload systemd after enabling %s: %w", unit, err)
	}
	done := make(chan string, 1)
	if _, err := conn.StartUnitContext(ctx, unit, "replace", done); err != nil {
		return fmt.Errorf("start %s: %w", unit, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("start %s: the job ended %q: see systemctl status %s and journalctl -u %s", unit, result, unit, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("start %s: no job result after %v: %w", unit, jobTimeout, ctx.Err())
	}
}
