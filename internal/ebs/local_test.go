package ebs

// The local device tests use real loop devices, mkfs, blkid and mount, as
// disk_test.go does. They need root.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/retry"
)

// localRig is a host root off AWS: no EC2, no SSM, no identity but the
// host name, and a loop device at /dev/sdb.
type localRig struct {
	root string
	dev  string
	cfg  config.Volume
	run  *countingRunner
	step *Step
}

func newLocalRig(t *testing.T, cfg config.Volume) *localRig {
	t.Helper()
	needRoot(t)
	root := t.TempDir()
	dev := loopDevice(t)
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, filepath.Join(root, "dev", "sdb")); err != nil {
		t.Fatal(err)
	}
	cfg.Kind, cfg.Device = config.VolumeDevice, "/dev/sdb"
	if cfg.Owner == "" {
		cfg.Owner = "1234:1234"
	}
	cfg = volumeConfig(cfg)
	r := &localRig{root: root, dev: dev, cfg: cfg, run: &countingRunner{}}
	r.step = r.fresh(t)
	unmountAtCleanup(t, r.step.mountDir())
	return r
}

// fresh is a new step, as the next run builds it.
func (r *localRig) fresh(t *testing.T) *Step {
	return New(r.cfg, Options{
		Root:     r.root,
		Identity: imds.Identity{InstanceID: "monitor-1", PrivateIP: "192.168.1.20"},
		Run:      r.run,
		Log:      zaptest.NewLogger(t),
		Local:    true,
	})
}

func (r *localRig) fstab() string { return filepath.Join(r.root, "etc", "fstab") }

func (r *localRig) check(t *testing.T, want bool) {
	t.Helper()
	got, err := r.step.Check(context.Background())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got != want {
		t.Fatalf("Check = %v, want %v", got, want)
	}
}

func ownerOf(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

func TestLocalDeviceBlank(t *testing.T) {
	r := newLocalRig(t, config.Volume{FSType: "xfs"})
	ctx := context.Background()
	fp, err := r.step.Fingerprint(ctx)
	if err != nil || fp == "" {
		t.Fatalf("Fingerprint = %q, %v", fp, err)
	}
	r.check(t, false)
	if err := r.step.Apply(ctx); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if n := r.run.count("mkfs.xfs"); n != 1 {
		t.Fatalf("mkfs.xfs ran %d times, want 1", n)
	}
	if got := blkidValue(t, r.dev, "TYPE"); got != "xfs" {
		t.Fatalf("device TYPE = %q, want xfs", got)
	}
	uuid := blkidValue(t, r.dev, "UUID")
	dir := filepath.Join(r.root, "data")
	m, err := MountAt(dir)
	if err != nil || m == nil {
		t.Fatalf("not mounted at %s: %v", dir, err)
	}
	if m.FSType != "xfs" {
		t.Errorf("mounted %s, want xfs", m.FSType)
	}
	fstab, _ := os.ReadFile(r.fstab())
	if want := "UUID=" + uuid + " /data xfs defaults,nofail 0 2\n"; string(fstab) != want {
		t.Errorf("fstab = %q, want %q", fstab, want)
	}
	if uid, gid := ownerOf(t, dir); uid != 1234 || gid != 1234 {
		t.Errorf("owner = %d:%d, want 1234:1234", uid, gid)
	}
	if memo := r.step.Memo(); memo["uuid"] != uuid || memo["device"] != "/dev/sdb" || memo["volume_id"] != "" {
		t.Errorf("memo %v", memo)
	}
	r.check(t, true)

	// The next run: converged, nothing formatted, mounted or rewritten.
	data := filepath.Join(dir, "prometheus.db")
	writeFile(t, data, "samples")
	before, _ := os.Stat(r.fstab())
	r.step = r.fresh(t)
	r.check(t, true)
	if err := r.step.Apply(ctx); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if n := r.run.count("mkfs.xfs"); n != 1 {
		t.Errorf("rerun ran mkfs.xfs (%d runs)", n)
	}
	if n := r.run.count("mount"); n != 1 {
		t.Errorf("rerun ran mount (%d runs)", n)
	}
	after, _ := os.Stat(r.fstab())
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("rerun rewrote fstab")
	}
	if got, _ := os.ReadFile(data); string(got) != "samples" {
		t.Errorf("data file = %q after rerun", got)
	}

	// Unmounted: remounted, same data, never formatted again.
	mustRun(t, "umount", dir)
	r.step = r.fresh(t)
	r.check(t, false)
	if err := r.step.Apply(ctx); err != nil {
		t.Fatalf("remount Apply: %v", err)
	}
	if got, _ := os.ReadFile(data); string(got) != "samples" {
		t.Errorf("data file = %q after remount", got)
	}
	if n := r.run.count("mkfs.xfs"); n != 1 {
		t.Errorf("remount ran mkfs.xfs (%d runs)", n)
	}
	r.check(t, true)
}

// A device holding a filesystem of another type is never formatted: the
// step stops, naming what it found and what to do.
func TestLocalDeviceOtherFilesystemRefused(t *testing.T) {
	r := newLocalRig(t, config.Volume{FSType: "xfs"})
	mustRun(t, "mkfs.ext4", "-q", r.dev)
	uuid := blkidValue(t, r.dev, "UUID")
	scratch := t.TempDir()
	mustRun(t, "mount", r.dev, scratch)
	writeFile(t, filepath.Join(scratch, "keep", "me"), "grafana.db")
	mustRun(t, "umount", scratch)

	r.check(t, false)
	err := r.step.Apply(context.Background())
	if !retry.IsPermanent(err) {
		t.Fatalf("Apply = %v, want a permanent error", err)
	}
	for _, w := range []string{"/dev/sdb", r.dev, "ext4", "xfs", "fs_type: ext4", "never formats"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if n := r.run.count("mkfs.xfs") + r.run.count("mkfs.ext4"); n != 0 {
		t.Errorf("mkfs ran %d times", n)
	}
	if got := blkidValue(t, r.dev, "UUID"); got != uuid {
		t.Errorf("filesystem UUID %q, was %q", got, uuid)
	}
	if m, _ := MountAt(filepath.Join(r.root, "data")); m != nil {
		t.Errorf("mounted anyway: %+v", m)
	}
	if _, err := os.Stat(r.fstab()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fstab written: %v", err)
	}
	r.check(t, false)

	mustRun(t, "mount", "-o", "ro", r.dev, scratch)
	defer mustRun(t, "umount", scratch)
	if got, err := os.ReadFile(filepath.Join(scratch, "keep", "me")); string(got) != "grafana.db" {
		t.Fatalf("sentinel after refusal = %q, %v", got, err)
	}
}

// A device that already holds the configured filesystem is used as it
// is: its data stays.
func TestLocalDeviceExistingFilesystemUsed(t *testing.T) {
	r := newLocalRig(t, config.Volume{FSType: "ext4"})
	mustRun(t, "mkfs.ext4", "-q", r.dev)
	uuid := blkidValue(t, r.dev, "UUID")
	scratch := t.TempDir()
	mustRun(t, "mount", r.dev, scratch)
	writeFile(t, filepath.Join(scratch, "keep", "me"), "grafana.db")
	mustRun(t, "umount", scratch)

	r.check(t, false)
	if err := r.step.Apply(context.Background()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if n := r.run.count("mkfs.ext4"); n != 0 {
		t.Errorf("mkfs.ext4 ran %d times on a device that had the filesystem", n)
	}
	if got := blkidValue(t, r.dev, "UUID"); got != uuid {
		t.Errorf("filesystem UUID %q, was %q", got, uuid)
	}
	if got, _ := os.ReadFile(filepath.Join(r.root, "data", "keep", "me")); string(got) != "grafana.db" {
		t.Errorf("data = %q", got)
	}
	r.check(t, true)
}

func TestLocalDeviceNotABlockDevice(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, r *localRig)
		want  []string
	}{
		{
			name: "missing",
			setup: func(t *testing.T, r *localRig) {
				if err := os.Remove(filepath.Join(r.root, "dev", "sdb")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"volume.device", "/dev/sdb", "lsblk", "volume.kind: directory"},
		},
		{
			name: "a regular file",
			setup: func(t *testing.T, r *localRig) {
				p := filepath.Join(r.root, "dev", "sdb")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				writeFile(t, p, "not a disk")
			},
			want: []string{"volume.device", "/dev/sdb", "not a block device"},
		},
		{
			name: "a character device",
			setup: func(t *testing.T, r *localRig) {
				p := filepath.Join(r.root, "dev", "sdb")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("/dev/null", p); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"volume.device", "/dev/null", "not a block device"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newLocalRig(t, config.Volume{FSType: "xfs"})
			tt.setup(t, r)
			for name, err := range map[string]error{
				"Check": func() error { _, err := r.step.Check(context.Background()); return err }(),
				"Apply": r.step.Apply(context.Background()),
			} {
				if !retry.IsPermanent(err) {
					t.Fatalf("%s = %v, want a permanent error", name, err)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s error %q does not mention %q", name, err, w)
					}
				}
			}
			if n := r.run.count("mkfs.xfs"); n != 0 {
				t.Errorf("mkfs.xfs ran %d times", n)
			}
		})
	}
}

// noRun fails any command: a directory needs none.
type noRun struct{ t *testing.T }

func (n noRun) Run(_ context.Context, c command.Cmd) (command.Result, error) {
	n.t.Errorf("ran %s %v for a directory", c.Name, c.Args)
	return command.Result{}, errors.New("no commands here")
}

func TestDirectory(t *testing.T) {
	tests := []struct {
		name  string
		owner string
		setup func(t *testing.T, dir string)
		uid   uint32
		gid   uint32
	}{
		{name: "missing", owner: "1234:1234", uid: 1234, gid: 1234},
		{name: "missing parents", owner: "1234:1234", uid: 1234, gid: 1234, setup: func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "exists with another owner", owner: "1234:1234", uid: 1234, gid: 1234, setup: func(t *testing.T, dir string) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "grafana.db"), "data")
		}},
		{name: "no owner", owner: "", uid: 0, gid: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needRoot(t)
			root := t.TempDir()
			cfg := volumeConfig(config.Volume{Kind: config.VolumeDirectory, MountPoint: "/var/lib/acgs"})
			cfg.Owner = tt.owner
			cfg.ID, cfg.IDParameter, cfg.Device = "", "", ""
			step := func() *Step {
				return New(cfg, Options{Root: root, Identity: imds.Identity{InstanceID: "monitor-1"},
					Run: noRun{t}, Log: zaptest.NewLogger(t), Directory: true})
			}
			dir := filepath.Join(root, "var", "lib", "acgs")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			ctx := context.Background()
			s := step()
			if _, err := s.Fingerprint(ctx); err != nil {
				t.Fatalf("Fingerprint: %v", err)
			}
			if ok, err := s.Check(ctx); err != nil || ok {
				t.Fatalf("Check before Apply = %v, %v; want false", ok, err)
			}
			if err := s.Apply(ctx); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			fi, err := os.Stat(dir)
			if err != nil || !fi.IsDir() {
				t.Fatalf("%s is not a directory: %v", dir, err)
			}
			if uid, gid := ownerOf(t, dir); uid != tt.uid || gid != tt.gid {
				t.Errorf("owner = %d:%d, want %d:%d", uid, gid, tt.uid, tt.gid)
			}
			if m, _ := MountAt(dir); m != nil && m.MountPoint == dir {
				t.Errorf("something was mounted at %s: %+v", dir, m)
			}
			if _, err := os.Stat(filepath.Join(root, "etc", "fstab")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("fstab written for a directory: %v", err)
			}
			if tt.setup != nil {
				if b, err := os.ReadFile(filepath.Join(dir, "grafana.db")); err == nil && string(b) != "data" {
					t.Errorf("data changed: %q", b)
				}
			}
			for i := 0; i < 2; i++ {
				if ok, err := step().Check(ctx); err != nil || !ok {
					t.Fatalf("Check after Apply = %v, %v; want true", ok, err)
				}
			}
			// Drift: the owner changed back.
			if tt.uid != 0 {
				if err := os.Chown(dir, 0, 0); err != nil {
					t.Fatal(err)
				}
				if ok, err := step().Check(ctx); err != nil || ok {
					t.Fatalf("Check with the owner changed = %v, %v; want false", ok, err)
				}
			}
		})
	}
}

// A mount point that exists as a file is not a directory the step can
// make: Check says not converged, Apply says why.
func TestDirectoryIsAFile(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	cfg := volumeConfig(config.Volume{Kind: config.VolumeDirectory, MountPoint: "/var/lib/acgs", Owner: "1234:1234"})
	writeFile(t, filepath.Join(root, "var", "lib", "acgs"), "a file")
	s := New(cfg, Options{Root: root, Run: noRun{t}, Log: zaptest.NewLogger(t), Directory: true})
	if ok, err := s.Check(context.Background()); err != nil || ok {
		t.Fatalf("Check = %v, %v; want false", ok, err)
	}
	err := s.Apply(context.Background())
	if err == nil || !strings.Contains(err.Error(), "acgs") {
		t.Fatalf("Apply = %v, want an error naming the path", err)
	}
}

// The device name moved to another, blank disk (sdb and sdc swapped at
// boot): the blank one is never formatted in the data disk's place.
func TestLocalDeviceRenamedToBlankDisk(t *testing.T) {
	r := newLocalRig(t, config.Volume{FSType: "xfs"})
	ctx := context.Background()
	if err := r.step.Apply(ctx); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	memo := r.step.Memo()
	mustRun(t, "umount", filepath.Join(r.root, "data"))
	other := loopDevice(t)
	link := filepath.Join(r.root, "dev", "sdb")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	for _, withMemo := range []bool{true, false} {
		r.step = r.fresh(t)
		if withMemo {
			r.step.Restore(memo) // the state knows the UUID; without it, fstab does
		}
		err := r.step.Apply(ctx)
		if err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), "points at another disk") {
			t.Fatalf("Apply with the name on a blank disk (memo %v): %v", withMemo, err)
		}
		// blkid finds nothing (exit 2) on a blank disk.
		if out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "TYPE", other).Output(); err == nil || len(out) > 0 {
			t.Fatalf("the blank disk was formatted (%q, %v)", out, err)
		}
	}
}
