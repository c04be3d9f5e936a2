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
	"golang.org/x/sys/unix"

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
	if err := dataMounted(o); err != nil {
		return Restored{}, fmt.Errorf("restore: %w; nothing on this host was changed", err)
	}
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
	if d := m.Meta["deployment"]; d != "" && d != o.Deployment {
		return Restored{}, fmt.Errorf("restore: %s is a backup of deployment %s, not of %s (prefix); nothing on this host was changed", name, d, o.Deployment)
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
	// The run lock from here: a reconcile must not start the stack again
	// while its data is swapped. Not before: the download and the unpack
	// can take hours.
	release, err := o.lock(ctx)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w; nothing on this host was changed", err)
	}
	defer release()
	// Checked again: the download and the unpack may have taken hours.
	if err := dataMounted(o); err != nil {
		return Restored{}, fmt.Errorf("restore: %w; nothing on this host was changed", err)
	}
	if err := stopStack(ctx, o); err != nil {
		return Restored{}, err
	}
	res := Restored{Archive: name}
	var parts []string
	for _, t := range targets {
		parts = append(parts, t.to)
	}
	j, err := startJournal(o.Journal, name, parts, o.now())
	if err != nil {
		return res, fmt.Errorf("restore: %w; nothing on this host was changed", err)
	}
	stamp := o.now().UTC().Format("20060102T150405Z")
	for _, t := range targets {
		aside, err := replace(ctx, o, t.from, t.to, stamp)
		if err != nil {
			return res, fmt.Errorf("restore: %s: %w (the parts before it are restored: %s; reconcile refuses to start the stack until a restore completes)", t.to, err, strings.Join(res.Targets, ", "))
		}
		res.Targets = append(res.Targets, t.to)
		if aside != "" {
			res.Aside = append(res.Aside, aside)
		}
		// The journal already says a restore is under way: a failed update
		// stops nothing.
		if err := j.done(t.to); err != nil {
			o.Log.Warn("the restore journal is not updated", zap.Error(err))
		}
	}
	if err := j.finish(); err != nil {
		return res, fmt.Errorf("restore: %w", err)
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
	parts := []struct{ part, to string }{
		{partStack, c.Bundle.Dir},
		{partSecrets, c.Secrets.Dir},
		{partEnv, c.EnvFilePath()},
	}
	if c.Secrets.File != "" {
		parts = append(parts, struct{ part, to string }{partOperator, c.Secrets.File})
	}
	for _, p := range parts {
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
// two are on different filesystems), then swapped with to in one atomic
// exchange, so that to is never missing, not even for a kill -9. The old
// content stays beside it, dot-named so that no backup takes it for a
// volume of the stack.
func replace(ctx context.Context, o Options, from, to, stamp string) (aside string, err error) {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return "", err
	}
	dir, base := filepath.Split(to)
	next := filepath.Join(dir, "."+base+".restore-"+stamp)
	if err := os.Rename(from, next); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return "", err
		}
		if _, err := o.Run.Run(ctx, command.Cmd{Name: "cp", Args: []string{"-a", from, next}, Timeout: 30 * time.Minute}); err != nil {
			os.RemoveAll(next)
			return "", err
		}
	}
	if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
		return "", os.Rename(next, to)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, next, unix.AT_FDCWD, to, unix.RENAME_EXCHANGE); err != nil {
		os.RemoveAll(next)
		return "", fmt.Errorf("swap %s into place: %w", to, err)
	}
	aside = filepath.Join(dir, "."+base+".pre-restore-"+stamp)
	if err := os.Rename(next, aside); err != nil {
		return next, nil // restored; the old content is at next
	}
	return aside, nil
}

// Location reads --from or backup.location into a store and an archive
// name ("" for the newest); a local path is taken under root. An S3
// store stages uploads in tmp (a directory on disk, not a RAM /tmp).
func Location(root, s string, s3 backup.S3API, tmp string) (backup.Store, string, error) {
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
	if s3s, ok := st.(backup.S3Store); ok {
		s3s.TempDir = tmp
		st = s3s
	}
	return st, l.Name, nil
}
