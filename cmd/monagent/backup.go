package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/awsclient"
	"github.com/monagent/monagent/internal/backup"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/dr"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/lock"
	"github.com/monagent/monagent/internal/smoke"
)

func backupCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "backup",
		Short: "Take an age-encrypted backup (Prometheus snapshot, service data, stack, secrets) to backup.location",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBackup(cmd.Context(), g, stdout)
		},
	}
}

func restoreCmd(g *globals, stdout io.Writer) *cobra.Command {
	var from, identity string
	c := &cobra.Command{
		Use:   "restore",
		Short: "Verify and restore a backup (--from), then reconcile and smoke",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRestore(cmd, g, from, identity, stdout)
		},
	}
	c.Flags().StringVar(&from, "from", "", "the archive (a file or s3:// key), or a store whose newest archive is restored; default backup.location")
	c.Flags().StringVar(&identity, "identity", "", "file holding the age identity (AGE-SECRET-KEY-1...); default the backup key in the host's secrets")
	return c
}

// drSetup is what backup and restore share: the host, the lock, and the
// options of package dr.
func drSetup(ctx context.Context, g *globals, stdout io.Writer) (*app, *host.Host, dr.Options, error) {
	a, err := newApp(ctx, g, stdout)
	if err != nil {
		return nil, nil, dr.Options{}, err
	}
	if a.cfg.Example {
		return nil, nil, dr.Options{}, usageError(fmt.Errorf("%s is the package's example configuration (example: true)", g.configPath))
	}
	h, err := a.discover(ctx)
	if err != nil {
		return nil, nil, dr.Options{}, err
	}
	o := dr.Options{Root: h.Root, Config: h.Config, ConfigFile: g.configPath, Docker: h.Docker, Run: h.Run,
		Host: h.Identity.InstanceID, Version: version, Deployment: h.Config.Prefix, Log: a.log,
		Lock: a.runLock(g.lockTimeout), Journal: journalPath(g.root)}
	return a, h, o, nil
}

// runLock takes the run lock for package dr, waiting up to wait.
func (a *app) runLock(wait time.Duration) func(context.Context) (func(), error) {
	return func(ctx context.Context) (func(), error) {
		l, err := lock.Acquire(ctx, a.lockPath(), wait)
		if err != nil {
			return nil, err
		}
		return func() { l.Release() }, nil //nolint:errcheck // the kernel drops it at exit anyway
	}
}

// restoreLockWait is the least a restore waits for the run lock once its
// archive is unpacked: giving up would throw away hours of download.
const restoreLockWait = time.Hour

// drLock keeps backups and restores one at a time, for their whole run.
// Apart from the run lock, which they hold only while they capture or
// swap the data: a reconcile waits for seconds, not for an upload.
func (a *app) drLock(ctx context.Context) (*lock.Lock, error) {
	return lock.Acquire(ctx, a.path("/run/monagent-backup.lock"), a.g.lockTimeout)
}

// backupS3 is an S3 client for archives: one call moves a whole archive,
// so it is bounded by the archive's budget, not aws.call_timeout.
func backupS3(h *host.Host) *s3.Client {
	return s3.NewFromConfig(h.AWS, func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, awsclient.CallTimeout(archiveTimeout))
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}

// archiveTimeout bounds one archive's upload or download.
const archiveTimeout = 2 * time.Hour

// storedValue reads env key k's value where the env step keeps it: SSM,
// or off AWS the host's store.
func storedValue(ctx context.Context, h *host.Host, k string) (string, error) {
	v, ok := h.Config.Env[k]
	if !ok {
		return "", fmt.Errorf("env.%s is not in the configuration", k)
	}
	if v.Value != nil {
		return *v.Value, nil
	}
	found, _, err := h.Values.GetMany(ctx, []string{v.Parameter})
	if err != nil {
		return "", fmt.Errorf("env.%s: %w", k, err)
	}
	p, ok := found[v.Parameter]
	if !ok {
		return "", fmt.Errorf("env.%s: %s has no value yet: run `monagent reconcile`, which creates it", k, v.Parameter)
	}
	h.Secrets.Add(p.Value)
	return p.Value, nil
}

func runBackup(ctx context.Context, g *globals, stdout io.Writer) error {
	a, h, o, err := drSetup(ctx, g, stdout)
	if err != nil {
		return err
	}
	loc := h.Config.Backup.Location
	if loc == "" {
		return usageError(errors.New("backup.location is empty: set it to s3://BUCKET/PREFIX/ or an absolute directory"))
	}
	store, _, err := dr.Location(h.Root, loc, backupS3(h), h.Path(h.Config.StackDataDir()))
	if err != nil {
		return usageError(fmt.Errorf("backup.location: %w", err))
	}
	key, err := storedValue(ctx, h, h.Config.Backup.KeyEnv)
	if err != nil {
		return fmt.Errorf("backup key: %w", err)
	}
	id, err := backup.ParseIdentity(key)
	if err != nil {
		return fmt.Errorf("backup key env.%s: %w", h.Config.Backup.KeyEnv, err)
	}
	if o.HTTP, err = smoke.HTTPClient(caFile(h.Root, h.Config)); err != nil {
		return err
	}
	// A snapshot of a large TSDB takes minutes; the run's context bounds it.
	o.HTTP.Timeout = dr.SnapshotTimeout
	if k := h.Config.Smoke.PasswordKey; k != "" {
		o.User = h.Config.Smoke.User
		if o.Password, err = storedValue(ctx, h, k); err != nil {
			return err
		}
	}
	l, err := a.drLock(ctx)
	if err != nil {
		return err
	}
	defer l.Release() //nolint:errcheck // the kernel drops it at exit anyway
	res, err := dr.Backup(ctx, o, store, id.Recipient())
	if err != nil {
		a.log.Error("backup failed", zap.Error(err))
		return err
	}
	fmt.Fprintf(stdout, "backup %s stored in %s: %d entries, %d bytes before compression", res.Name, res.Store, res.Entries, res.Bytes)
	if res.Snapshot != "" {
		fmt.Fprintf(stdout, ", Prometheus snapshot %s", res.Snapshot)
	}
	fmt.Fprintln(stdout)
	if len(res.Pruned) > 0 {
		fmt.Fprintf(stdout, "pruned (backup.keep %d): %s\n", h.Config.Backup.Keep, strings.Join(res.Pruned, ", "))
	}
	return nil
}

func runRestore(cmd *cobra.Command, g *globals, from, identityFile string, stdout io.Writer) error {
	ctx := cmd.Context()
	a, h, o, err := drSetup(ctx, g, stdout)
	if err != nil {
		return err
	}
	root := "/" // --from is a path as the operator sees it
	if from == "" {
		from, root = h.Config.Backup.Location, h.Root
	}
	if from == "" {
		return usageError(errors.New("restore: give --from (an archive or a store), or set backup.location"))
	}
	store, name, err := dr.Location(root, from, backupS3(h), h.Path(h.Config.StackDataDir()))
	if err != nil {
		return usageError(fmt.Errorf("--from: %w", err))
	}
	if name == "" {
		if name, err = backup.Latest(ctx, store, h.Config.Prefix); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	key, err := restoreKey(ctx, h, identityFile)
	if err != nil {
		return err
	}
	id, err := backup.ParseIdentity(key)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	l, err := a.drLock(ctx)
	if err != nil {
		return err
	}
	defer l.Release() //nolint:errcheck // the kernel drops it at exit anyway
	o.Lock = a.runLock(max(g.lockTimeout, restoreLockWait))
	res, err := dr.Restore(ctx, o, store, name, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s: %s\n", res.Archive, strings.Join(res.Targets, ", "))
	if len(res.Aside) > 0 {
		fmt.Fprintf(stdout, "the previous contents are kept at: %s (remove them once the host is checked)\n", strings.Join(res.Aside, ", "))
	}
	if err := converge(ctx, g, modeReconcile, &runFlags{}, stdout); err != nil {
		return fmt.Errorf("restored, but reconcile failed: %w", err)
	}
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return err
	}
	rep, err := runSmoke(cmd, g, cfg)
	if err != nil {
		return err
	}
	printSmoke(stdout, rep)
	if rep.Failed > 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("restored, but %d smoke check(s) failed", rep.Failed)}
	}
	return nil
}

// restoreKey is the age identity: from --identity (a fresh host off AWS
// has no secrets yet: the operator brings the key), else from the host.
func restoreKey(ctx context.Context, h *host.Host, file string) (string, error) {
	if file == "" {
		k, err := storedValue(ctx, h, h.Config.Backup.KeyEnv)
		if err != nil {
			return "", fmt.Errorf("restore: the backup key: %w; on a fresh host give the key's file with --identity", err)
		}
		return k, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--identity: %w", err)
	}
	// age's identity files may hold comments; the key is the line that
	// starts with its prefix.
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "AGE-SECRET-KEY-1") {
			h.Secrets.Add(l)
			return l, nil
		}
	}
	return "", fmt.Errorf("--identity %s: no AGE-SECRET-KEY-1 line in it", file)
}
