// Package dr is backup and disaster recovery of a monitoring host: one
// archive holding a Prometheus TSDB snapshot, the other services' data
// (copied while they are briefly stopped), the stack directory, the
// environment file and the generated secrets, encrypted in the age format
// and kept in a store (package backup); and its restore onto this host or
// a fresh one.
package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/backup"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ebs"
)

// Docker is the part of the Docker client backup and restore use.
type Docker interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerStop(ctx context.Context, id string, options client.ContainerStopOptions) (client.ContainerStopResult, error)
	ContainerStart(ctx context.Context, id string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
}

// Options are what backup and restore work with.
type Options struct {
	Root   string
	Config *config.Config
	// ConfigFile is monagent's configuration file, as seen from Root; it
	// is kept in the archive for the operator's reference.
	ConfigFile string
	Docker     Docker
	Run        command.Runner
	// HTTP reaches Prometheus' admin API (it trusts the stack's CA);
	// User and Password are its basic-auth login.
	HTTP           *http.Client
	User, Password string
	Host, Version  string
	// Deployment names the archives of this deployment (the SSM prefix):
	// pruning and "the newest archive" never look at another's, even in a
	// shared location.
	Deployment string
	Log        *zap.Logger
	// Now stamps the archive; nil means time.Now.
	Now func() time.Time
	// Journal is where a restore records its swaps (Interrupted reads it).
	Journal string
	// Lock takes the run lock, which reconciles take too, for the part of
	// a backup or restore that must not meet one: the capture, the swap.
	// nil takes nothing.
	Lock func(context.Context) (release func(), err error)
}

func (o Options) lock(ctx context.Context) (func(), error) {
	if o.Lock == nil {
		return func() {}, nil
	}
	return o.Lock(ctx)
}

func (o Options) path(p string) string { return filepath.Join(o.Root, p) }

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Archive part names.
const (
	partData    = "data"
	partStack   = "stack"
	partSecrets = "secrets"
	partEnv     = "env/environment"
	partConfig  = "config/monagent.yaml"
	// partOperator is secrets.file: the operator's secrets have no other
	// copy on a host off AWS.
	partOperator = "operator/secrets.env"
)

// Result is what a backup made.
type Result struct {
	Name     string
	Store    string
	Entries  int
	Bytes    int64
	Pruned   []string
	Snapshot string
}

// Backup takes the archive and stores it, then deletes all but the newest
// backup.keep archives. The run lock is held while the data is captured
// (the snapshot, the copies), not while it is packed and uploaded, which
// can take hours: a reconcile then waits for seconds, not for the upload.
func Backup(ctx context.Context, o Options, store backup.Store, to age.Recipient) (Result, error) {
	c := o.Config
	capt, err := capture(ctx, o)
	defer capt.cleanup()
	if err != nil {
		return Result{}, err
	}
	// Named for when the data was captured, after any wait for the lock.
	res := Result{Name: backup.ArchiveName(o.Deployment, capt.at), Store: fmt.Sprint(store), Snapshot: capt.snapshot}
	meta := map[string]string{"host": o.Host, "deployment": o.Deployment, "project": c.Compose.Project, "monagent": o.Version}
	m, err := backup.Save(ctx, store, res.Name, to, capt.parts, meta)
	if err != nil {
		return Result{}, fmt.Errorf("backup: %w", err)
	}
	res.Entries = len(m.Entries)
	for _, e := range m.Entries {
		res.Bytes += e.Size
	}
	o.Log.Info("backup stored", zap.String("archive", res.Name), zap.String("store", res.Store), zap.Int("entries", res.Entries))
	res.Pruned, err = backup.Prune(ctx, store, o.Deployment, c.Backup.Keep)
	if err != nil {
		return res, fmt.Errorf("backup stored as %s, but old archives were not pruned: %w", res.Name, err)
	}
	return res, nil
}

// captured is a backup's data, taken under the run lock: the snapshot,
// and copies of the rest in a work directory.
type captured struct {
	at       time.Time
	parts    []backup.Part
	snapshot string
	undo     []func()
}

// cleanup removes what the capture made, the last made first.
func (c *captured) cleanup() {
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
}

// capture takes the data under the run lock: what a killed backup left
// removed, the snapshot, the volumes copied with their services stopped,
// the configuration copied. The caller cleans up even on an error.
func capture(ctx context.Context, o Options) (*captured, error) {
	c := o.Config
	capt := &captured{}
	release, err := o.lock(ctx)
	if err != nil {
		return capt, err
	}
	defer release()
	if err := dataMounted(o); err != nil {
		return capt, err
	}
	// An archive of a half-restored host would become the newest one.
	j, err := Interrupted(o.Journal)
	if err != nil {
		return capt, fmt.Errorf("backup: %w", err)
	}
	if j != nil {
		return capt, fmt.Errorf("backup: no archive is taken of this host: %w", j)
	}
	capt.at = o.now()
	removeStale(o)
	work, err := os.MkdirTemp(o.path(c.StackDataDir()), ".monagent-backup-")
	if err != nil {
		return capt, fmt.Errorf("backup: %w", err)
	}
	capt.undo = append(capt.undo, func() { os.RemoveAll(work) })
	var promVolume string
	if c.Backup.PrometheusService != "" {
		vol, name, err := takeSnapshot(ctx, o, capt)
		if err != nil {
			return capt, err
		}
		promVolume, capt.snapshot = vol, name
		capt.parts = append(capt.parts, backup.Part{Name: partData + "/" + vol, Path: filepath.Join(o.path(c.StackDataDir()), vol, "snapshots", name)})
	} else if err := settleMade(o); err != nil {
		o.Log.Warn("snapshots left by earlier backups are not removed", zap.Error(err))
	}
	copied, err := copyStopped(ctx, o, work, promVolume)
	if err != nil {
		return capt, err
	}
	capt.parts = append(capt.parts, copied...)
	conf, err := o.copyConfig(ctx, capt)
	if err != nil {
		return capt, err
	}
	capt.parts = append(capt.parts, conf...)
	return capt, nil
}

// settleMade removes the snapshots earlier backups had made.
func settleMade(o Options) error {
	l, err := openLedger(o)
	if err != nil {
		return err
	}
	l.settle(o, false, "", o.now(), "")
	return l.save()
}

// takeSnapshot has Prometheus make a snapshot, in the ledger from before
// it is asked until capt's cleanup removes it, and settles what earlier
// backups left.
func takeSnapshot(ctx context.Context, o Options, capt *captured) (vol, name string, err error) {
	l, err := openLedger(o)
	if err != nil {
		return "", "", fmt.Errorf("backup: %w: no snapshot is asked for without it (move the file aside if it is damaged)", err)
	}
	l.settle(o, false, "", o.now(), "") // what is finished already
	at := o.now().UTC().Truncate(time.Second)
	req := requested + at.Format(time.RFC3339)
	l.add(req)
	if err := l.save(); err != nil {
		return "", "", fmt.Errorf("backup: %w: no snapshot is asked for without it", err)
	}
	// On an error the request stays in the ledger: Prometheus may be
	// making the snapshot still, and a later backup removes it.
	vol, name, err = snapshot(ctx, o)
	if err != nil {
		return "", "", err
	}
	// Prometheus makes one snapshot at a time: every earlier request is
	// finished now.
	l.drop(req)
	l.settle(o, true, vol, o.now(), name)
	entry := made + vol + "/snapshots/" + name
	l.add(entry)
	if err := l.save(); err != nil {
		// The request stays on disk: a later backup removes the snapshot.
		o.Log.Warn("the snapshot ledger is not updated", zap.Error(err))
	}
	o.Log.Info("Prometheus snapshot taken", zap.String("snapshot", name), zap.String("volume", vol))
	capt.undo = append(capt.undo, func() {
		if err := removeSnapshot(o, vol, name); err != nil {
			o.Log.Warn("Prometheus snapshot not removed; the next backup tries again", zap.Error(err))
			return
		}
		l, err := openLedger(o)
		if err == nil {
			l.drop(entry)
			err = l.save()
		}
		if err != nil {
			o.Log.Warn("the snapshot ledger is not updated", zap.Error(err))
		}
	})
	return vol, name, nil
}

// dataMounted refuses to read or write the stack's data where the data
// volume is not mounted: it would be the root disk's empty directory.
func dataMounted(o Options) error {
	if o.Config.VolumeKind() == config.VolumeDirectory {
		return nil
	}
	mp := o.path(o.Config.Volume.MountPoint)
	if m, err := ebs.MountAt(mp); err != nil || m == nil {
		return fmt.Errorf("the data volume is not mounted at %s (%v): run `monagent reconcile --until volume` first", mp, err)
	}
	return nil
}

// Work directories of backups and restores: in the data directory, and
// the configuration's copies in /run.
const (
	staleBackup  = ".monagent-backup-*"
	staleRestore = ".monagent-restore-*"
	staleConfig  = "monagent-backup-config-*"
)

// removeStale deletes the work directories a killed backup or restore
// left. The caller holds the lock that keeps backups and restores one at
// a time: none is under way.
func removeStale(o Options) {
	data := o.path(o.Config.StackDataDir())
	for _, pattern := range []string{filepath.Join(data, staleBackup), filepath.Join(data, staleRestore), o.path("/run/" + staleConfig)} {
		stale, _ := filepath.Glob(pattern)
		for _, d := range stale {
			o.Log.Info("removing what an interrupted backup or restore left", zap.String("dir", d))
			if err := os.RemoveAll(d); err != nil {
				o.Log.Warn("could not remove it", zap.String("dir", d), zap.Error(err))
			}
		}
	}
}

// copyConfig copies the configuration parts, so that what is packed once
// the run lock is released is what the capture saw, whatever a reconcile
// writes meanwhile. To a private directory in /run (memory), not to the
// data volume: the parts hold the secrets, and the volume's snapshots
// would keep them.
func (o Options) copyConfig(ctx context.Context, capt *captured) ([]backup.Part, error) {
	if err := os.MkdirAll(o.path("/run"), 0o755); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	dir, err := os.MkdirTemp(o.path("/run"), strings.TrimSuffix(staleConfig, "*"))
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	capt.undo = append(capt.undo, func() { os.RemoveAll(dir) })
	var parts []backup.Part
	for i, p := range o.configParts() {
		// A part that is a link (a bundle directory switched by one) is
		// copied as what it points to.
		src, err := filepath.EvalSymlinks(p.Path)
		if err != nil {
			return nil, fmt.Errorf("backup: %s: %w", p.Name, err)
		}
		dst := filepath.Join(dir, fmt.Sprintf("part-%d", i))
		if _, err := o.Run.Run(ctx, command.Cmd{Name: "cp", Args: []string{"-a", src, dst}, Timeout: 10 * time.Minute}); err != nil {
			return nil, fmt.Errorf("backup: copy %s: %w", p.Name, err)
		}
		parts = append(parts, backup.Part{Name: p.Name, Path: dst})
	}
	return parts, nil
}

// configParts are the stack directory, the environment file, the
// secrets and monagent's configuration, those that exist.
func (o Options) configParts() []backup.Part {
	c := o.Config
	var parts []backup.Part
	for _, p := range []backup.Part{
		{Name: partStack, Path: o.path(c.Bundle.Dir)},
		{Name: partSecrets, Path: o.path(c.Secrets.Dir)},
		{Name: partEnv, Path: o.path(c.EnvFilePath())},
		{Name: partConfig, Path: o.ConfigFile},
		{Name: partOperator, Path: o.path(c.Secrets.File)},
	} {
		if p.Path == o.path("") {
			continue // secrets.file unset
		}
		if _, err := os.Stat(p.Path); err == nil {
			parts = append(parts, p)
		}
	}
	return parts
}

// snapshot asks Prometheus for a TSDB snapshot (the head block included)
// and finds it on the data volume: the named volume it lies in and its
// name.
func snapshot(ctx context.Context, o Options) (vol, name string, err error) {
	base := strings.TrimSuffix(o.Config.Smoke.PrometheusURL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/admin/tsdb/snapshot", nil)
	if err != nil {
		return "", "", err
	}
	if o.User != "" {
		req.SetBasicAuth(o.User, o.Password)
	}
	resp, err := o.HTTP.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("backup: Prometheus snapshot: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", fmt.Errorf("backup: Prometheus snapshot: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = " (check smoke.user and smoke.password_key)"
		} else if strings.Contains(string(body), "admin APIs disabled") {
			hint = " (start Prometheus with --web.enable-admin-api)"
		}
		return "", "", fmt.Errorf("backup: Prometheus snapshot: %s%s", resp.Status, hint)
	}
	var out struct {
		Data struct {
			Name string `json:"name"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil || !plainName(out.Data.Name) {
		return "", "", fmt.Errorf("backup: Prometheus snapshot: unexpected answer %.200q", body)
	}
	name = out.Data.Name
	data := o.path(o.Config.StackDataDir())
	vols, err := os.ReadDir(data)
	if err != nil {
		return "", "", fmt.Errorf("backup: %w", err)
	}
	for _, v := range vols {
		if v.IsDir() && !strings.HasPrefix(v.Name(), ".") {
			if fi, err := os.Lstat(filepath.Join(data, v.Name(), "snapshots", name)); err == nil && fi.IsDir() {
				return v.Name(), name, nil
			}
		}
	}
	return "", "", fmt.Errorf("backup: Prometheus made snapshot %s, but it is not under %s/*/snapshots: is its data on a named volume of the stack?", name, data)
}

// copyStopped copies the stack's named volumes other than Prometheus'
// into work, with backup.stop_services stopped for the copy only, and
// returns them as parts. A copy, not the live files: a database copied
// while it is written is torn, and packing takes far longer than
// copying.
func copyStopped(ctx context.Context, o Options, work, skip string) ([]backup.Part, error) {
	data := o.path(o.Config.StackDataDir())
	entries, err := os.ReadDir(data)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && e.Name() != skip {
			names = append(names, e.Name())
		}
	}
	stopped, err := stopServices(ctx, o, o.Config.Backup.StopServices)
	if err == nil && len(stopped) < len(o.Config.Backup.StopServices) {
		err = fmt.Errorf("backup: backup.stop_services %v: %d of them have no running container in project %s: their data would be copied while written (start the stack with `monagent reconcile`)",
			o.Config.Backup.StopServices, len(o.Config.Backup.StopServices)-len(stopped), o.Config.Compose.Project)
	}
	// Started again whatever happens, with a context of their own: a
	// cancelled backup must not leave Grafana down.
	defer startAgain(o, stopped)
	if err != nil {
		return nil, err
	}
	var parts []backup.Part
	for _, n := range names {
		dst := filepath.Join(work, n)
		if _, err := o.Run.Run(ctx, command.Cmd{Name: "cp", Args: []string{"-a", "--reflink=auto", filepath.Join(data, n), dst}, Timeout: 30 * time.Minute}); err != nil {
			return nil, fmt.Errorf("backup: copy volume %s: %w", n, err)
		}
		parts = append(parts, backup.Part{Name: partData + "/" + n, Path: dst})
	}
	return parts, nil
}

// containers lists the project's containers, of services when given.
func containers(ctx context.Context, o Options, services []string, all bool) ([]string, error) {
	f := client.Filters{}.Add("label", "com.docker.compose.project="+o.Config.Compose.Project)
	list, err := o.Docker.ContainerList(ctx, client.ContainerListOptions{All: all, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list the containers of project %s: %w", o.Config.Compose.Project, err)
	}
	var ids []string
	for _, c := range list.Items {
		if services == nil || slices.Contains(services, c.Labels["com.docker.compose.service"]) {
			ids = append(ids, c.ID)
		}
	}
	return ids, nil
}

func stopServices(ctx context.Context, o Options, services []string) ([]string, error) {
	if len(services) == 0 {
		return nil, nil
	}
	ids, err := containers(ctx, o, services, false)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var stopped []string
	for _, id := range ids {
		if _, err := o.Docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
			return stopped, fmt.Errorf("backup: stop %s: %w", id, err)
		}
		stopped = append(stopped, id)
	}
	o.Log.Info("services stopped for the copy of their data", zap.Strings("services", services))
	return stopped, nil
}

func startAgain(o Options, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, id := range ids {
		if _, err := o.Docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		o.Log.Error("a service stopped for the backup did not start again: run `monagent reconcile`", zap.Error(err))
	}
}
