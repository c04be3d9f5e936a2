package ebs

// These tests use real loop devices, mkfs, blkid and mount. They need root.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap/zaptest"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/retry"
)

// countingRunner runs programs for real and counts them by name.
type countingRunner struct {
	command.Exec
	mu    sync.Mutex
	calls map[string]int
}

func (r *countingRunner) Run(ctx context.Context, c command.Cmd) (command.Result, error) {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[c.Name]++
	r.mu.Unlock()
	return r.Exec.Run(ctx, c)
}

func (r *countingRunner) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[name]
}

// rig is a host root with one loop device that the fake EC2 says is
// attached to this instance.
type rig struct {
	root string
	dev  string
	run  *countingRunner
	step *Step
}

const (
	testUID = 1234
	testGID = 2345
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests need root for loop devices and mount: run scripts/test.sh as root")
	}
}

// loopDevice attaches a sparse 512 MiB file to a free loop device.
func loopDevice(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "volume.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(512 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// unmountAtCleanup unmounts everything stacked on dir when the test ends.
func unmountAtCleanup(t *testing.T, dir string) {
	t.Helper()
	t.Cleanup(func() {
		for i := 0; i < 5; i++ {
			m, err := MountAt(dir)
			if err != nil || m == nil {
				return
			}
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
				return
			}
		}
	})
}

func newRig(t *testing.T, cfg config.Volume) *rig {
	t.Helper()
	needRoot(t)
	root := t.TempDir()
	dev := loopDevice(t)
	link := filepath.Join(root, "dev", "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+nvmeSerial(testVolID))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nmonitor:x:1234:2345::/home/monitor:/bin/sh\n")
	writeFile(t, filepath.Join(root, "etc", "group"), "root:x:0:\nmonitor:x:2345:\n")

	cfg.ID = testVolID
	if cfg.Owner == "" {
		cfg.Owner = "monitor"
	}
	if cfg.MountOptions == "" {
		cfg.MountOptions = "defaults,nofail"
	}
	cfg = volumeConfig(cfg)
	cfg.DeviceTimeout = config.Duration{Duration: 2 * time.Second}
	run := &countingRunner{}
	s := New(cfg, Options{
		Root:     root,
		Identity: imds.Identity{InstanceID: me, Region: "eu-west-1", AZ: myAZ},
		EC2:      &fakeEC2{before: []answer{attached()}},
		Run:      run,
		Log:      zaptest.NewLogger(t),
		Backoff:  retry.Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond},
	})
	unmountAtCleanup(t, s.mountDir())
	return &rig{root: root, dev: dev, run: run, step: s}
}

// fresh is a new step for the rig's volume, as the next run builds it.
func (r *rig) fresh(t *testing.T, f *fakeEC2) *Step {
	t.Helper()
	return New(r.step.cfg, Options{
		Root:     r.root,
		Identity: r.step.id,
		EC2:      f,
		Params:   &fakeParams{},
		Run:      r.run,
		Log:      zaptest.NewLogger(t),
		Backoff:  r.step.backoff,
	})
}

func (r *rig) fstab() string { return filepath.Join(r.root, "etc", "fstab") }

func (r *rig) check(t *testing.T, want bool) {
	t.Helper()
	got, err := r.step.Check(context.Background())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got != want {
		t.Fatalf("Check = %v, want %v", got, want)
	}
}

func (r *rig) apply(t *testing.T) {
	t.Helper()
	if err := r.step.Apply(context.Background()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func blkidValue(t *testing.T, dev, key string) string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-s", key, "-o", "value", dev).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", dev, err)
	}
	return strings.TrimSpace(string(out))
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

func TestApplyBlankVolume(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs", MountOptions: "defaults,noatime"})
	r.check(t, false)
	r.apply(t)

	if n := r.run.count("mkfs.xfs"); n != 1 {
		t.Fatalf("mkfs.xfs ran %d times, want 1", n)
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
	if want := "UUID=" + uuid + " /data xfs defaults,noatime,nofail 0 2\n"; string(fstab) != want {
		t.Errorf("fstab = %q, want %q", fstab, want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != testUID || st.Gid != testGID {
		t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, testUID, testGID)
	}
	r.check(t, true)

	// A converged host: nothing is formatted or rewritten, data stays.
	data := filepath.Join(dir, "prometheus.db")
	writeFile(t, data, "samples")
	before, _ := os.Stat(r.fstab())
	r.apply(t)
	if n := r.run.count("mkfs.xfs"); n != 1 {
		t.Errorf("second Apply ran mkfs.xfs (%d runs)", n)
	}
	if n := r.run.count("mount"); n != 1 {
		t.Errorf("second Apply ran mount (%d runs)", n)
	}
	after, _ := os.Stat(r.fstab())
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("second Apply rewrote fstab")
	}
	if got, _ := os.ReadFile(data); string(got) != "samples" {
		t.Errorf("data file = %q after second Apply", got)
	}

	// Unmounted (a reboot without fstab, an operator): remount, same data.
	mustRun(t, "umount", dir)
	r.check(t, false)
	r.apply(t)
	if n := r.run.count("mkfs.xfs"); n != 1 {
		t.Errorf("remount ran mkfs.xfs (%d runs)", n)
	}
	if got, _ := os.ReadFile(data); string(got) != "samples" {
		t.Errorf("data file = %q after remount", got)
	}
	r.check(t, true)
}

func TestCheckDetectsDrift(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	r.apply(t)
	r.check(t, true)
	uuid := blkidValue(t, r.dev, "UUID")
	dir := filepath.Join(r.root, "data")

	drifts := []struct {
		name  string
		drift func(t *testing.T)
	}{
		{"unmounted", func(t *testing.T) { mustRun(t, "umount", dir) }},
		{"fstab line removed", func(t *testing.T) { writeFile(t, r.fstab(), "# nothing here\n") }},
		{"fstab by device path", func(t *testing.T) { writeFile(t, r.fstab(), r.dev+" /data xfs defaults,nofail 0 2\n") }},
		{"fstab without nofail", func(t *testing.T) { writeFile(t, r.fstab(), "UUID="+uuid+" /data xfs defaults 0 2\n") }},
		{"fstab duplicate", func(t *testing.T) {
			b, _ := os.ReadFile(r.fstab())
			writeFile(t, r.fstab(), string(b)+"LABEL=old /data xfs defaults 0 0\n")
		}},
		{"owner", func(t *testing.T) {
			if err := os.Chown(dir, 0, 0); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, d := range drifts {
		t.Run(d.name, func(t *testing.T) {
			d.drift(t)
			r.check(t, false)
			r.apply(t)
			r.check(t, true)
		})
	}
	if n := r.run.count("mkfs.xfs"); n != 1 {
		t.Errorf("mkfs.xfs ran %d times, want 1", n)
	}
	fstab, _ := os.ReadFile(r.fstab())
	if want := "UUID=" + uuid + " /data xfs defaults,nofail 0 2\n"; string(fstab) != want {
		t.Errorf("fstab = %q, want %q", fstab, want)
	}
}

// The check of a converged host is local: with EC2 and SSM both failing,
// a mounted volume is still converged, and nothing asks them; when the
// device goes (a detach), the check notices without them too.
func TestCheckIsLocal(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	r.apply(t)
	down := &fakeEC2{before: []answer{throttled()}}
	r.step = r.fresh(t, down)
	r.check(t, true)
	if d, a := down.counts(); d+a != 0 {
		t.Fatalf("a converged check asked EC2 %d times", d+a)
	}
	link := filepath.Join(r.root, "dev", "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+nvmeSerial(testVolID))
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	r.step = r.fresh(t, down)
	r.check(t, false)
}

// An SSM outage on a converged host is a warning, as long as the last
// successful run knew the volume; the parameter is read once per run.
func TestVolumeIDOutage(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	r.apply(t)
	memo := r.step.Memo()
	if memo["volume_id"] != testVolID || memo["uuid"] != blkidValue(t, r.dev, "UUID") {
		t.Fatalf("memo %v", memo)
	}
	throttling := fmt.Errorf("read SSM parameter /mon/ebs/volume-id: %w", &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"})

	s := r.fresh(t, &fakeEC2{before: []answer{throttled()}})
	params := &fakeParams{err: throttling}
	s.cfg.ID, s.cfg.IDParameter, s.params = "", "/mon/ebs/volume-id", params
	s.Restore(memo)
	if _, err := s.Fingerprint(context.Background()); err != nil {
		t.Fatal(err)
	}
	ok, err := s.Check(context.Background())
	if err != nil || !ok {
		t.Fatalf("Check during an SSM outage = %v, %v; want converged", ok, err)
	}
	if w := s.Warning(); !strings.Contains(w, "/mon/ebs/volume-id") || !strings.Contains(w, testVolID) {
		t.Fatalf("warning %q does not name the parameter and the volume", w)
	}
	if params.reads != 1 {
		t.Fatalf("parameter read %d times in one run, want 1", params.reads)
	}

	// Without a remembered volume, or with the host not converged, the
	// outage is the error.
	s = r.fresh(t, &fakeEC2{})
	s.cfg.ID, s.cfg.IDParameter, s.params = "", "/mon/ebs/volume-id", &fakeParams{err: throttling}
	if _, err := s.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "Rate exceeded") {
		t.Fatalf("Check without memo = %v; want the SSM error", err)
	}
	mustRun(t, "umount", filepath.Join(r.root, "data"))
	s = r.fresh(t, &fakeEC2{})
	s.cfg.ID, s.cfg.IDParameter, s.params = "", "/mon/ebs/volume-id", &fakeParams{err: throttling}
	s.Restore(memo)
	if ok, err := s.Check(context.Background()); ok || err == nil || !strings.Contains(err.Error(), "Rate exceeded") {
		t.Fatalf("Check of an unmounted volume during an outage = %v, %v; want the SSM error", ok, err)
	}
}

// EC2 attached the volume under another name than volume.device, and the
// configured name holds another volume (no by-id link, no serial: Xen, or
// loop devices): the step uses the name EC2 reports, never formats the
// device at the configured name, and remembers the name it used.
func TestAttachedUnderAnotherName(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	link := filepath.Join(r.root, "dev", "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+nvmeSerial(testVolID))
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	other := loopDevice(t)
	for name, dev := range map[string]string{"xvdf": other, "sdg": r.dev} {
		if err := os.Symlink(dev, filepath.Join(r.root, "dev", name)); err != nil {
			t.Fatal(err)
		}
	}
	asSdg := vol(types.VolumeStateInUse, func(v *types.Volume) {
		v.Attachments = []types.VolumeAttachment{{InstanceId: aws.String(me), State: types.VolumeAttachmentStateAttached,
			VolumeId: v.VolumeId, Device: aws.String("/dev/sdg")}}
	})
	r.step = r.fresh(t, &fakeEC2{before: []answer{asSdg}})
	r.apply(t)
	if got := blkidValue(t, r.dev, "TYPE"); got != "xfs" {
		t.Fatalf("the attached volume was not formatted: TYPE %q", got)
	}
	if out, _ := exec.Command("blkid", "-p", other).CombinedOutput(); len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("the device at the configured name was touched: %s", out)
	}
	memo := r.step.Memo()
	if memo["device"] != "/dev/sdg" {
		t.Fatalf("memo %v does not remember EC2's name", memo)
	}
	// The next run's local check finds it by that name, with no EC2 call.
	down := &fakeEC2{before: []answer{throttled()}}
	next := r.fresh(t, down)
	next.Restore(memo)
	r.step = next
	r.check(t, true)
}

// A device found by its configured name alone (no by-id link, no serial:
// Xen instances) is this volume only if it holds the filesystem this
// volume had when it last converged.
func TestDeviceByNameNeedsKnownFilesystem(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	r.apply(t)
	memo := r.step.Memo()
	link := filepath.Join(r.root, "dev", "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+nvmeSerial(testVolID))
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(r.root, "dev", "xvdf")
	if err := os.Symlink(r.dev, name); err != nil {
		t.Fatal(err)
	}
	s := r.fresh(t, &fakeEC2{})
	r.step = s
	r.check(t, false) // no memo: EC2 must say which volume it is
	s = r.fresh(t, &fakeEC2{})
	s.Restore(memo)
	r.step = s
	r.check(t, true)
}

func TestRefusesOtherFilesystem(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	mustRun(t, "mkfs.ext4", "-q", r.dev)
	scratch := t.TempDir()
	mustRun(t, "mount", r.dev, scratch)
	writeFile(t, filepath.Join(scratch, "keep", "me"), "grafana.db")
	mustRun(t, "umount", scratch)

	err := r.step.Apply(context.Background())
	if !retry.IsPermanent(err) {
		t.Fatalf("Apply = %v, want a permanent error", err)
	}
	for _, w := range []string{testVolID, r.dev, "ext4", "xfs", "fs_type: ext4", "snapshot"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if n := r.run.count("mkfs.xfs") + r.run.count("mkfs.ext4"); n != 0 {
		t.Errorf("mkfs ran %d times", n)
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
		t.Fatalf("data after refusal = %q, %v", got, err)
	}
}

// writeMBR puts a DOS partition table with one Linux partition, and nothing
// else, on dev.
func writeMBR(t *testing.T, dev string) []byte {
	t.Helper()
	sector := make([]byte, 512)
	entry := sector[446:462]
	entry[4] = 0x83                                    // Linux
	copy(entry[8:12], []byte{0x00, 0x08, 0x00, 0x00})  // first LBA 2048
	copy(entry[12:16], []byte{0x00, 0xf8, 0x0f, 0x00}) // 1046528 sectors
	sector[510], sector[511] = 0x55, 0xaa
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(sector, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return sector
}

func TestRefusesPartitionTable(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	sector := writeMBR(t, r.dev)
	if got := blkidValue(t, r.dev, "PTTYPE"); got != "dos" {
		t.Fatalf("blkid PTTYPE = %q; the fixture is wrong", got)
	}
	err := r.step.Apply(context.Background())
	if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "dos partition table") {
		t.Fatalf("Apply = %v, want a permanent error naming the partition table", err)
	}
	if n := r.run.count("mkfs.xfs"); n != 0 {
		t.Errorf("mkfs.xfs ran %d times", n)
	}
	got := make([]byte, 512)
	f, err := os.Open(r.dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sector) {
		t.Error("the partition table was changed")
	}
}

func TestFstabOnRealVolume(t *testing.T) {
	tests := []struct {
		name string
		old  string
		// want is the expected fstab with %s for our line.
		want string
	}{
		{
			name: "unrelated lines kept",
			old:  "# static file system information\n\nUUID=abc\t/\txfs\tdefaults,noatime  1 1\n  # swap was here\nproc /proc proc defaults 0 0",
			want: "# static file system information\n\nUUID=abc\t/\txfs\tdefaults,noatime  1 1\n  # swap was here\nproc /proc proc defaults 0 0\n%s\n",
		},
		{
			name: "old device line replaced",
			old:  "UUID=abc / xfs defaults 1 1\n/dev/xvdf /data xfs defaults 0 0\n/dev/xvdg /srv ext4 defaults 0 0\n",
			want: "UUID=abc / xfs defaults 1 1\n%s\n/dev/xvdg /srv ext4 defaults 0 0\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, config.Volume{FSType: "xfs"})
			writeFile(t, r.fstab(), tt.old)
			r.apply(t)
			line := "UUID=" + blkidValue(t, r.dev, "UUID") + " /data xfs defaults,nofail 0 2"
			got, _ := os.ReadFile(r.fstab())
			if want := strings.Replace(tt.want, "%s", line, 1); string(got) != want {
				t.Errorf("fstab:\n got %q\nwant %q", got, want)
			}
			r.check(t, true)
		})
	}
}

func TestExt4(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "ext4", Owner: "65534:65534"})
	r.apply(t)
	if got := blkidValue(t, r.dev, "TYPE"); got != "ext4" {
		t.Fatalf("TYPE = %q", got)
	}
	r.check(t, true)
	r.apply(t)
	if n := r.run.count("mkfs.ext4"); n != 1 {
		t.Errorf("mkfs.ext4 ran %d times", n)
	}
}

func TestMountPointHeldByOtherDevice(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs"})
	other := loopDevice(t)
	mustRun(t, "mkfs.xfs", "-q", other)
	dir := filepath.Join(r.root, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", other, dir)
	unmountAtCleanup(t, dir)

	err := r.step.Apply(context.Background())
	if !retry.IsPermanent(err) {
		t.Fatalf("Apply = %v, want a permanent error", err)
	}
	for _, w := range []string{other, r.dev, "/data"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	// Check says the same: only a person can fix it.
	if ok, err := r.step.Check(context.Background()); ok || !retry.IsPermanent(err) {
		t.Fatalf("Check = %v, %v; want a permanent error", ok, err)
	}
}

func TestMissingOwner(t *testing.T) {
	r := newRig(t, config.Volume{FSType: "xfs", Owner: "grafana"})
	err := r.step.Apply(context.Background())
	if err == nil || !strings.Contains(err.Error(), "grafana") {
		t.Fatalf("Apply = %v, want an error naming the user", err)
	}
	r.check(t, false)
}
