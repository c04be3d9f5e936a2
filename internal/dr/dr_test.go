package dr

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/backup"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
)

// Archives of two deployments share a location: each one prunes and
// restores its own only.
func TestPruneAndLatestPerDeployment(t *testing.T) {
	ctx := context.Background()
	store := backup.LocalStore{Dir: t.TempDir()}
	base := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	var prod, staging []string
	for i := range 4 {
		for _, d := range []struct {
			name string
			list *[]string
		}{{"acgs", &prod}, {"acgs-staging", &staging}} {
			n := backup.ArchiveName(d.name, base.Add(time.Duration(i)*time.Hour))
			if err := os.WriteFile(filepath.Join(store.Dir, n), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			*d.list = append(*d.list, n)
		}
	}
	deleted, err := backup.Prune(ctx, store, "acgs", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deleted, prod[:2]) {
		t.Errorf("pruned %v, want the two oldest of acgs %v", deleted, prod[:2])
	}
	left, _ := store.List(ctx)
	for _, n := range staging {
		if !slices.Contains(left, n) {
			t.Errorf("acgs-staging's %s was pruned by acgs", n)
		}
	}
	if got, err := backup.Latest(ctx, store, "acgs"); err != nil || got != prod[3] {
		t.Errorf("Latest(acgs) = %q, %v; want %s, not the other deployment's", got, err, prod[3])
	}
	if _, err := backup.Latest(ctx, store, "other"); err == nil {
		t.Error("Latest of a deployment with no archive: no error")
	}
}

// replace swaps the restored tree in at once and keeps the old beside it,
// under a dot name no backup takes for a volume of the stack.
func TestReplaceKeepsTheOld(t *testing.T) {
	dir := t.TempDir()
	to := filepath.Join(dir, "grafana_data")
	from := filepath.Join(dir, ".staging", "grafana_data")
	for p, content := range map[string]string{filepath.Join(to, "grafana.db"): "old", filepath.Join(from, "grafana.db"): "restored"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{Run: command.Exec{Log: zap.NewNop()}, Log: zap.NewNop()}
	aside, err := replace(context.Background(), o, from, to, "20261123T060000Z")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(to, "grafana.db")); string(b) != "restored" {
		t.Errorf("target holds %q", b)
	}
	if filepath.Base(aside)[0] != '.' {
		t.Errorf("the old content is at %s: not a dot name", aside)
	}
	if b, _ := os.ReadFile(filepath.Join(aside, "grafana.db")); string(b) != "old" {
		t.Errorf("the old content was lost: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "grafana_data" && e.Name()[0] != '.' {
			t.Errorf("%s left beside the target without a dot name", e.Name())
		}
	}
}

// Snapshots of backups killed or stopped mid-way are removed by a later
// backup, once Prometheus has finished them, and nothing else is: not an
// operator's snapshot, not another volume's, not what a crafted ledger
// entry names, not what a link in a volume leads to.
func TestLedgerSettles(t *testing.T) {
	root := t.TempDir()
	c := &config.Config{}
	c.Volume.MountPoint = "/data"
	c.Compose.Project = "acgs"
	now := time.Date(2026, 11, 23, 7, 10, 0, 0, time.UTC)
	o := Options{Root: root, Config: c, Log: zap.NewNop(), Now: func() time.Time { return now }}
	data := o.path(c.StackDataDir())
	mk := func(rel string) string {
		p := filepath.Join(data, rel, "01JBLOCK", "index")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return rel
	}
	snap := func(name string) string { return mk("prometheus_data/snapshots/" + name) }
	var (
		madeOne   = snap("20261123T060000Z-00000000000000a1")
		renamed   = snap("snapshot-of-a-later-prometheus")
		operators = snap("20261120T000000Z-00000000000000f2")
		// Killed while Prometheus made it: only the request (06:00) is noted.
		oldReq     = snap("20261123T060001Z-00000000000000b3")
		oldLate    = snap("20261123T061000Z-00000000000000c4") // beyond nameWindow
		recentReq  = snap("20261123T070002Z-00000000000000d5")
		own        = snap("20261123T070500Z-00000000000000e6")
		afterUntil = snap("20261123T071500Z-00000000000000f7")
		otherVol   = mk("thanos_data/snapshots/20261123T060002Z-0000000000000001")
		grafana    = mk("grafana_data")
	)
	outside := filepath.Join(root, "elsewhere", "20261123T060000Z-00000000000000aa")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(data, "loki_data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(data, "loki_data", "snapshots")); err != nil {
		t.Fatal(err)
	}
	l := &ledger{path: filepath.Join(data, ledgerFile)}
	for _, e := range []string{
		made + madeOne,
		made + renamed,
		made + "prometheus_data/snapshots/..",
		made + "prometheus_data/snapshots/.",
		made + "prometheus_data/snapshots/*",
		made + "../x/snapshots/20261123T060000Z-00000000000000a1",
		made + ".prometheus_data.pre-restore-x/snapshots/20261123T060000Z-00000000000000a1",
		made + "loki_data/snapshots/20261123T060000Z-00000000000000aa",
		requested + "2026-11-23T06:00:00Z",
		requested + "2026-11-23T07:00:00Z",
		"garbage",
	} {
		l.add(e)
	}
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	exist := func(want map[string]bool) {
		t.Helper()
		for rel, w := range want {
			if _, err := os.Stat(filepath.Join(data, rel)); (err == nil) != w {
				t.Errorf("%s exists: %v, want %v", rel, err == nil, w)
			}
		}
	}

	// A backup starts: what was made goes; the requests wait, whatever
	// their age, for Prometheus to make this backup's snapshot.
	l, err := openLedger(o)
	if err != nil {
		t.Fatal(err)
	}
	l.settle(o, false, "", now, "")
	exist(map[string]bool{madeOne: false, renamed: false, oldReq: true, recentReq: true, operators: true,
		grafana: true, "prometheus_data": true, "prometheus_data/snapshots": true})
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("a link in a volume led the removal outside the data directory: %v", err)
	}
	requests := []string{requested + "2026-11-23T06:00:00Z", requested + "2026-11-23T07:00:00Z"}
	want := append([]string{made + "loki_data/snapshots/20261123T060000Z-00000000000000aa"}, requests...)
	if !slices.Equal(l.entries, want) {
		t.Errorf("entries left %q, want %q", l.entries, want)
	}

	// Its own snapshot made, every earlier request is finished: the
	// snapshots of that volume named within nameWindow of each go.
	now = time.Date(2026, 11, 23, 7, 5, 30, 0, time.UTC)
	l.settle(o, true, "prometheus_data", now, filepath.Base(own))
	exist(map[string]bool{oldReq: false, recentReq: false, oldLate: true, operators: true, own: true, afterUntil: true, otherVol: true})
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	if got, err := openLedger(o); err != nil || !slices.Equal(got.entries, want[:1]) {
		t.Errorf("ledger read back %q, %v; want %q", got.entries, err, want[:1])
	}
	l.entries = nil
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.path); !os.IsNotExist(err) {
		t.Errorf("an empty ledger is kept: %v", err)
	}

	// An unreadable ledger is an error, never an empty one written over it.
	if err := os.Mkdir(l.path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := openLedger(o); err == nil {
		t.Error("an unreadable ledger read as empty")
	}
}

// lockedStore fails a Put made while the run lock is held, and changes the
// live environment file as the upload starts.
type lockedStore struct {
	backup.LocalStore
	t             *testing.T
	held          *bool
	envFile, data string
}

func (s lockedStore) Put(ctx context.Context, name string, r io.Reader) error {
	if *s.held {
		s.t.Error("the archive is uploaded under the run lock: a reconcile would wait for the whole upload")
	}
	// The data volume's work directory holds the volumes' copies only:
	// the configuration's, secrets among them, are not put on the volume.
	copies, _ := filepath.Glob(filepath.Join(s.data, ".monagent-backup-*", "*"))
	for _, c := range copies {
		if filepath.Base(c) != "grafana_data" {
			s.t.Errorf("%s is copied to the data volume", c)
		}
	}
	if err := os.WriteFile(s.envFile, []byte("A=changed-after-the-capture\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return s.LocalStore.Put(ctx, name, r)
}

// The run lock is held for the capture only, and the archive holds what
// the capture saw, whatever is written while it is packed.
func TestBackupCapturesUnderTheLockOnly(t *testing.T) {
	root := t.TempDir()
	c := &config.Config{}
	c.Volume.MountPoint = "/data"
	c.Compose.Project = "acgs"
	c.Bundle.Dir = "/opt/stack"
	c.Volume.Kind = config.VolumeDirectory
	c.Backup.Keep = 2
	var held, locked bool
	o := Options{Root: root, Config: c, Run: command.Exec{Log: zap.NewNop()}, Log: zap.NewNop(), Deployment: "acgs",
		Lock: func(context.Context) (func(), error) {
			held, locked = true, true
			return func() { held = false }, nil
		}}
	for p, content := range map[string]string{
		"data/acgs/grafana_data/grafana.db": "db",
		"opt/stack-v1/compose.yml":          "services: {}\n",
		"opt/stack-v1/.env":                 "A=captured\n",
	} {
		if err := os.MkdirAll(filepath.Dir(o.path(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(o.path(p), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The bundle directory is a relative link to its version.
	if err := os.Symlink("stack-v1", o.path("opt/stack")); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	store := lockedStore{LocalStore: backup.LocalStore{Dir: t.TempDir()}, t: t, held: &held, envFile: o.path("opt/stack/.env"), data: o.path("data/acgs")}
	res, err := Backup(context.Background(), o, store, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	if !locked || held {
		t.Errorf("run lock taken %v, still held %v", locked, held)
	}
	staging := t.TempDir()
	if _, err := backup.Restore(context.Background(), store.LocalStore, res.Name, id, staging); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{partEnv: "A=captured\n", partData + "/grafana_data/grafana.db": "db", partStack + "/compose.yml": "services: {}\n"} {
		if b, err := os.ReadFile(filepath.Join(staging, p)); err != nil || string(b) != want {
			t.Errorf("archive's %s: %q, %v; want %q", p, b, err, want)
		}
	}
	for _, pattern := range []string{"data/acgs/.monagent-backup-*", "run/monagent-backup-config-*"} {
		if left, _ := filepath.Glob(o.path(pattern)); len(left) != 0 {
			t.Errorf("work directories left: %v", left)
		}
	}
}

// A journal left means a restore cut short, even one that cannot be read;
// none means none.
func TestJournalInterrupted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "restore-journal.json")
	if j, err := Interrupted(path); j != nil || err != nil {
		t.Fatalf("no journal: %v, %v", j, err)
	}
	j, err := startJournal(path, "monagent-backup-acgs-20261123T060000Z.tar.gz.age", []string{"/data/acgs/prometheus_data", "/opt/acgs-1/monitoring", "/etc/acgs/secrets"}, time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.done("/data/acgs/prometheus_data"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal: %v, %v", fi, err)
	}
	got, err := Interrupted(path)
	if err != nil || got == nil {
		t.Fatalf("Interrupted: %v, %v", got, err)
	}
	msg := got.Error()
	for _, want := range []string{"monagent-backup-acgs-20261123T060000Z.tar.gz.age", "2026-11-23T07:00:00Z", "1 of 3 parts swapped in (/data/acgs/prometheus_data), 2 not", "monagent restore --from"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if err := os.WriteFile(path, []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := Interrupted(path); err != nil || got == nil {
		t.Errorf("a torn journal: %v, %v; want a restore cut short", got, err)
	}
	if err := j.finish(); err != nil {
		t.Fatal(err)
	}
	if got, err := Interrupted(path); got != nil || err != nil {
		t.Errorf("after finish: %v, %v", got, err)
	}
}

// A host a restore left half done is not archived: the archive would
// become the newest, the one a restore picks.
func TestBackupRefusesAHalfRestoredHost(t *testing.T) {
	root := t.TempDir()
	c := &config.Config{}
	c.Volume.MountPoint = "/data"
	c.Volume.Kind = config.VolumeDirectory
	c.Compose.Project = "acgs"
	o := Options{Root: root, Config: c, Run: command.Exec{Log: zap.NewNop()}, Log: zap.NewNop(), Deployment: "acgs",
		Journal: filepath.Join(root, "var/lib/monagent/restore-journal.json")}
	if err := os.MkdirAll(o.path("data/acgs/grafana_data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := startJournal(o.Journal, "monagent-backup-acgs-20261123T060000Z.tar.gz.age", []string{"/data/acgs/grafana_data"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	store := backup.LocalStore{Dir: t.TempDir()}
	if _, err := Backup(context.Background(), o, store, id.Recipient()); err == nil || !strings.Contains(err.Error(), "no archive is taken") {
		t.Errorf("backup of a half-restored host: %v", err)
	}
	if names, _ := store.List(context.Background()); len(names) != 0 {
		t.Errorf("archives stored: %v", names)
	}
}
