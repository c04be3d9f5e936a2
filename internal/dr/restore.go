package dr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/backup"
	"github.com/monagent/monagent/internal/command"
)

// Restored is what a restore put back, and where the replaced copies
// were moved.
type Restored struct {
	Archive string
	Targets []string
	// Aside are the previous contents, kept beside each target until the
	// operator removes them: a restore loses nothing.
	Aside []string
}

// Restore reads archive name of store into a staging directory, which
// verifies every byte (age authentication, the manifest's digests), and
// only then stops the stack and moves each part into place. A tampered,
// truncated or foreign archive is refused with the host unchanged. The
// caller starts the stack again (a reconcile) and runs smoke.
func Restore(ctx context.Context, o Options, store backup.Store, name string, id age.Identity) (Restored, error) {
	c := o.Config
	data := o.path(c.StackDataDir())
	if err := os.MkdirAll(data, 0o755); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	removeStale(o)
	staging, err := os.MkdirTemp(data, ".monagent-restore-")
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(staging)
	m, err := backup.Restore(ctx, store, name, id, staging)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w; nothing on this host was changed", err)
	}
	if p := m.Meta["project"]; p != "" && p != c.Compose.Project {
		return Restored{}, fmt.Errorf("restore: %s is a backup of Compose project %s, not of %s (compose.project); nothing on this host was changed", name, p, c.Compose.Project)
	}
	// Unpack does not sync: the staged tree is made durable before it
	// replaces anything, so a crash after the swap cannot leave holes.
	syscall.Sync()
	targets, err := o.targets(staging)
	if err != nil {
		return Restored{}, err
	}
	if err := stopStack(ctx, o); err != nil {
		return Restored{}, err
	}
	res := Restored{Archive: name}
	stamp := o.now().UTC().Format("20060102T150405Z")
	for _, t := range targets {
		aside, err := replace(ctx, o, t.from, t.to, stamp)
		if err != nil {
			return res, fmt.Errorf("restore: %s: %w (the parts listed before it are restored)", t.to, err)
		}
		res.Targets = append(res.Targets, t.to)
		if aside != "" {
			res.Aside = append(res.Aside, aside)
		}
	}
	o.Log.Info("backup restored", zap.String("archive", name), zap.Strings("targets", res.Targets), zap.Strings("aside", res.Aside))
	return res, nil
}

type target struct{ from, to string }

// targets maps the archive's parts onto this host's configuration. The
// archived monagent configuration is not put back: this host's own says
// where everything goes.
func (o Options) targets(staging string) ([]target, error) {
	c := o.Config
	var out []target
	vols, err := os.ReadDir(filepath.Join(staging, partData))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("restore: %w", err)
	}
	for _, v := range vols {
		out = append(out, target{filepath.Join(staging, partData, v.Name()), filepath.Join(o.path(c.StackDataDir()), v.Name())})
	}
	for _, p := range []struct{ part, to string }{
		{partStack, c.Bundle.Dir},
		{partSecrets, c.Secrets.Dir},
		{partEnv, c.EnvFilePath()},
	} {
		if _, err := os.Lstat(filepath.Join(staging, p.part)); err == nil {
			out = append(out, target{filepath.Join(staging, p.part), o.path(p.to)})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("restore: the archive holds neither data nor configuration; nothing on this host was changed")
	}
	return out, nil
}

// stopStack stops every container of the project, so that no service
// writes to what is being replaced.
func stopStack(ctx context.Context, o Options) error {
	ids, err := containers(ctx, o, nil, false)
	if err != nil {
		return fmt.Errorf("restore: %w; nothing on this host was changed", err)
	}
	for _, id := range ids {
		if _, err := o.Docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
			return fmt.Errorf("restore: stop container %s: %w", id, err)
		}
	}
	o.Log.Info("stack stopped for the restore", zap.Int("containers", len(ids)))
	return nil
}

// replace puts from at to: first beside to (a rename, or a copy when the
// two are on different filesystems), then the old to is renamed aside
// and the new one into place, so that to is never half there.
func replace(ctx context.Context, o Options, from, to, stamp string) (aside string, err error) {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return "", err
	}
	next := to + ".restore-" + stamp
	if err := os.Rename(from, next); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return "", err
		}
		if _, err := o.Run.Run(ctx, command.Cmd{Name: "cp", Args: []string{"-a", from, next}, Timeout: 30 * time.Minute}); err != nil {
			os.RemoveAll(next)
			return "", err
		}
	}
	if _, err := os.Lstat(to); err == nil {
		aside = to + ".pre-restore-" + stamp
		if err := os.Rename(to, aside); err != nil {
			os.RemoveAll(next)
			return "", err
		}
	}
	if err := os.Rename(next, to); err != nil {
		return aside, fmt.Errorf("%w (the previous content is at %s)", err, aside)
	}
	return aside, nil
}

// Location reads --from or backup.location into a store and an archive
// name ("" for the newest); a local path is taken under root.
func Location(root, s string, s3 backup.S3API) (backup.Store, string, error) {
	l, err := backup.ParseLocation(strings.TrimSpace(s))
	if err != nil {
		return nil, "", err
	}
	if l.Bucket == "" {
		l.Dir = filepath.Join(root, l.Dir)
	}
	st, err := l.Store(s3)
	if err != nil {
		return nil, "", err
	}
	return st, l.Name, nil
}
