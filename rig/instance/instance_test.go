package instance_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/monagent/monagent/rig/instance"
)

// defaultCacheDir is where the tests keep the built rootfs;
// MONAGENT_RIG_CACHE overrides it.
const defaultCacheDir = "/var/cache/monagent-rig"

// baseRootfs returns the cached rootfs, building it if needed. The tests
// need root and systemd-nspawn: they fail, never skip, without them.
func baseRootfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("these tests boot systemd-nspawn containers and must run as root (uid %d)", os.Geteuid())
	}
	dir := os.Getenv("MONAGENT_RIG_CACHE")
	if dir == "" {
		dir = defaultCacheDir
	}
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	base, err := instance.EnsureRootfs(ctx, dir)
	if err != nil {
		t.Fatalf("EnsureRootfs(%s): %v", dir, err)
	}
	t.Logf("rootfs %s ready in %s", base, time.Since(start).Round(time.Millisecond))
	return base
}

// inside runs argv in the instance and returns its trimmed combined output.
func inside(t *testing.T, in *instance.Instance, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := in.Exec(ctx, argv[0], argv[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// poweroff halts in, failing the test if it does not halt cleanly.
func poweroff(t *testing.T, in *instance.Instance) {
	t.Helper()
	if err := in.Poweroff(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// onHost runs argv on the host and returns its trimmed combined output.
func onHost(t *testing.T, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

const stampUnit = `[Unit]
Description=rig/instance test: record every boot

[Service]
Type=oneshot
RemainAfterExit=yes
StateDirectory=rig-stamp
ExecStart=/bin/sh -c 'echo "$$INVOCATION_ID" >>/var/lib/rig-stamp/boots'

[Install]
WantedBy=multi-user.target
`

// installStampUnit installs and enables (as systemctl enable would)
// rig-stamp.service, which appends a line to /var/lib/rig-stamp/boots on
// every boot.
func installStampUnit(root string) error {
	if err := writeFile(filepath.Join(root, "etc/systemd/system/rig-stamp.service"), stampUnit); err != nil {
		return err
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	return os.Symlink("/etc/systemd/system/rig-stamp.service", filepath.Join(wants, "rig-stamp.service"))
}

func TestBootUnitsAndReboot(t *testing.T) {
	base := baseRootfs(t)
	in := instance.Boot(t, instance.Options{
		Name:  "rig-inst-reboot",
		Base:  base,
		Setup: installStampUnit,
	})

	if state := inside(t, in, "sh", "-c", "systemctl is-system-running || true"); state != "running" && state != "degraded" {
		t.Fatalf("systemctl is-system-running = %q", state)
	}
	if got := inside(t, in, "hostname"); got != "rig-inst-reboot" {
		t.Errorf("hostname = %q, want the machine name", got)
	}
	if pid := in.InitPID(); pid <= 1 {
		t.Fatalf("InitPID() = %d", pid)
	} else if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "systemd" {
		t.Errorf("/proc/%d/comm = %q, %v; want systemd", pid, comm, err)
	}

	// The unit file installed by Setup ran at boot.
	if got := inside(t, in, "systemctl", "show", "-p", "ActiveState", "--value", "rig-stamp.service"); got != "active" {
		t.Errorf("rig-stamp.service ActiveState = %q, want active", got)
	}
	// A transient unit runs too, and its effect is visible from the host.
	inside(t, in, "systemd-run", "--unit=rig-transient", "--wait", "--collect", "--service-type=oneshot",
		"/bin/sh", "-c", "echo transient >/var/lib/rig-transient")
	if b, err := os.ReadFile(filepath.Join(in.Root(), "var/lib/rig-transient")); err != nil || string(b) != "transient\n" {
		t.Errorf("file written by the transient unit, read on the host: %q, %v", b, err)
	}

	machineID := inside(t, in, "cat", "/etc/machine-id")
	inside(t, in, "sh", "-c", "echo before-reboot >/root/marker && sync")
	if _, err := os.Stat(filepath.Join(base, "root/marker")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the base rootfs changed: root/marker: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "etc/machine-id")); err == nil && strings.TrimSpace(string(b)) == machineID {
		t.Errorf("the instance has the base rootfs's machine ID %s", machineID)
	}

	first := in.InitPID()
	poweroff(t, in)
	if _, err := in.Exec(t.Context(), "true"); err == nil {
		t.Errorf("Exec after Poweroff succeeded")
	}

	in = instance.Boot(t, instance.Options{Name: "rig-inst-reboot", Root: in.Root()})
	if in.InitPID() == first {
		t.Errorf("the rebooted instance has the old init PID %d", first)
	}
	if got := inside(t, in, "cat", "/root/marker"); got != "before-reboot" {
		t.Errorf("after reboot /root/marker = %q, want before-reboot", got)
	}
	if got := inside(t, in, "cat", "/etc/machine-id"); got != machineID {
		t.Errorf("after reboot machine ID = %s, want %s", got, machineID)
	}
	boots := strings.Fields(inside(t, in, "cat", "/var/lib/rig-stamp/boots"))
	if len(boots) != 2 || boots[0] == boots[1] {
		t.Errorf("rig-stamp.service ran at boot %d times (%q), want twice", len(boots), boots)
	}
	poweroff(t, in)
}

func TestTwoInstancesShareHostNetwork(t *testing.T) {
	base := baseRootfs(t)

	// Something listening on the host's loopback, like awssim.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the host")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	a := instance.Boot(t, instance.Options{Name: "rig-inst-a", Base: base})
	b := instance.Boot(t, instance.Options{Name: "rig-inst-b", Base: base})

	for _, in := range []*instance.Instance{a, b} {
		if got := inside(t, in, "hostname"); got != in.Name() {
			t.Errorf("hostname in %s = %q", in.Name(), got)
		}
		if got := inside(t, in, "curl", "-fsS", "--max-time", "10", "http://"+ln.Addr().String()+"/"); got != "hello from the host" {
			t.Errorf("curl from %s to the host's %s = %q", in.Name(), ln.Addr(), got)
		}
		// nspawn runs below a cgroup of the instance's own name.
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", in.InitPID()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cg), "/"+in.Name()+"/payload") {
			t.Errorf("init of %s is not below the cgroup %s:\n%s", in.Name(), in.Name(), cg)
		}
	}

	inside(t, a, "touch", "/root/only-in-a")
	if _, err := os.Stat(filepath.Join(b.Root(), "root/only-in-a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file written in instance a shows in instance b: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.Root(), "root/only-in-a")); err != nil {
		t.Errorf("a file written in instance a: %v", err)
	}
}

// TestCanceledExecLeavesNothingBehind cancels commands running inside and
// checks that the instance still halts promptly: a process left to the
// host's init would hold the container's shutdown for 10 s.
func TestCanceledExecLeavesNothingBehind(t *testing.T) {
	base := baseRootfs(t)
	in := instance.Boot(t, instance.Options{Name: "rig-inst-cancel", Base: base})
	for _, argv := range [][]string{
		{"sleep", "60"}, {"sleep", "60"}, {"sleep", "60"},
		{"sh", "-c", "sleep 60; true"}, {"sh", "-c", "sleep 60; true"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		start := time.Now()
		_, err := in.Exec(ctx, argv[0], argv[1:]...)
		cancel()
		if err == nil {
			t.Fatalf("%q survived its context", argv)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%q took %s to end after its context did", argv, took)
		}
	}
	if out := inside(t, in, "sh", "-c", "pgrep -x sleep || true"); out != "" {
		t.Errorf("sleep still runs inside after its Exec was cancelled: PIDs %s", out)
	}
	time.Sleep(100 * time.Millisecond) // let the container's systemd reap
	for _, p := range orphansIn(t, in.InitPID()) {
		t.Errorf("left behind in the instance's PID namespace: %s", p)
	}
	start := time.Now()
	poweroff(t, in)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Poweroff took %s after cancelled commands", took)
	}
}

// freeLoopDevice returns an unattached loop device, the highest-numbered
// of /dev/loop0../dev/loop7: other tests on the machine attach with
// `losetup --find`, which takes the lowest.
func freeLoopDevice(t *testing.T) string {
	t.Helper()
	for i := 7; i >= 0; i-- {
		dev := fmt.Sprintf("/dev/loop%d", i)
		if _, err := os.Stat(dev); err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/sys/block/loop%d/loop/backing_file", i)); errors.Is(err, fs.ErrNotExist) {
			return dev
		}
	}
	t.Fatalf("no unattached loop device among /dev/loop0../dev/loop7:\n%s", onHost(t, "losetup", "--list"))
	return ""
}

// orphansIn lists the processes in the PID namespace of init that are
// zombies or whose parent is outside that namespace.
func orphansIn(t *testing.T, init int) []string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", init))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == fmt.Sprint(init) {
			continue
		}
		if n, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err != nil || n != ns {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		var state, ppid string
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "State:"); ok {
				state = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				ppid = strings.TrimSpace(v)
			}
		}
		parentNS, _ := os.Readlink("/proc/" + ppid + "/ns/pid")
		if strings.HasPrefix(state, "Z") || parentNS != ns && ppid != fmt.Sprint(init) {
			found = append(found, fmt.Sprintf("PID %s state %s parent %s", e.Name(), state, ppid))
		}
	}
	return found
}

// TestLoopDeviceAttachedAfterBoot binds an unattached loop device and a host
// directory at /dev/disk, then attaches the loop device and adds a
// /dev/disk/by-id symlink on the host while the instance runs: the instance
// must see both, make an XFS file system and mount it.
func TestLoopDeviceAttachedAfterBoot(t *testing.T) {
	base := baseRootfs(t)
	loop := freeLoopDevice(t)
	disk := t.TempDir()
	if err := os.Mkdir(filepath.Join(disk, "by-id"), 0o755); err != nil {
		t.Fatal(err)
	}
	attached := false
	t.Cleanup(func() { // runs after the instance has stopped
		if attached {
			if out, err := exec.Command("losetup", "--detach", loop).CombinedOutput(); err != nil {
				t.Errorf("losetup --detach %s: %v\n%s", loop, err, out)
			}
		}
	})

	in := instance.Boot(t, instance.Options{
		Name:  "rig-inst-loop",
		Base:  base,
		Binds: []string{loop, disk + ":/dev/disk"},
	})
	inside(t, in, "test", "-b", loop)

	img := filepath.Join(t.TempDir(), "vol.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	const size = 512 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	onHost(t, "losetup", loop, img)
	attached = true
	const id = "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
	if err := os.Symlink("../../"+filepath.Base(loop), filepath.Join(disk, "by-id", id)); err != nil {
		t.Fatal(err)
	}

	dev := "/dev/disk/by-id/" + id
	if got := inside(t, in, "readlink", "-f", dev); got != loop {
		t.Errorf("inside, %s resolves to %q, want %s", dev, got, loop)
	}
	if got := inside(t, in, "blockdev", "--getsize64", dev); got != fmt.Sprint(size) {
		t.Errorf("inside, size of %s = %s, want %d", dev, got, size)
	}
	inside(t, in, "mkfs.xfs", "-q", "-L", "rigdata", dev)
	inside(t, in, "mkdir", "-p", "/data")
	inside(t, in, "mount", dev, "/data")
	inside(t, in, "sh", "-c", "echo written-inside >/data/proof")
	if got := strings.Fields(inside(t, in, "findmnt", "-n", "-o", "FSTYPE,SOURCE", "/data")); len(got) != 2 || got[0] != "xfs" || got[1] != loop {
		t.Errorf("inside, /data is %q, want xfs on %s", got, loop)
	}
	inside(t, in, "umount", "/data")

	// The host sees what the instance wrote.
	mnt := t.TempDir()
	onHost(t, "mount", "-o", "ro", loop, mnt)
	b, err := os.ReadFile(filepath.Join(mnt, "proof"))
	onHost(t, "umount", mnt)
	if err != nil || string(b) != "written-inside\n" {
		t.Errorf("on the host, proof = %q, %v", b, err)
	}
}

// TestCleanupLeavesNothing checks what remains once a test that booted an
// instance has ended: no process, no mount, no cgroup, no directory.
func TestCleanupLeavesNothing(t *testing.T) {
	base := baseRootfs(t)
	const name = "rig-inst-clean"
	var root string
	var initPID int
	t.Run("boot", func(t *testing.T) {
		bound := t.TempDir()
		in := instance.Boot(t, instance.Options{Name: name, Base: base, Binds: []string{bound + ":/mnt/bound"}})
		root, initPID = in.Root(), in.InitPID()
		inside(t, in, "touch", "/mnt/bound/x")
		// End the test without Poweroff: cleanup must stop it.
	})
	if root == "" {
		t.Fatal("the boot subtest failed")
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", initPID)); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
		t.Errorf("the instance's systemd (PID %d) still runs", initPID)
	}
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the root %s remains: %v", root, err)
	}
	mounts := readFileLines(t, "/proc/self/mountinfo")
	for _, m := range mounts {
		if strings.Contains(m, filepath.Dir(root)) {
			t.Errorf("left mounted: %s", m)
		}
	}
	for _, hier := range cgroupDirsNamed(t, name) {
		t.Errorf("cgroup left behind: %s", hier)
	}
}

func readFileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// cgroupDirsNamed finds cgroups called name in any hierarchy under
// /sys/fs/cgroup.
func cgroupDirsNamed(t *testing.T, name string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a cgroup removed while walking
			}
			return err
		}
		if d.IsDir() && d.Name() == name {
			found = append(found, p)
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk /sys/fs/cgroup: %v", err)
	}
	return found
}

// fatalRecorder stands in for a test in Boot: it records Fatalf instead of
// failing the test, and passes everything else (Errorf, Cleanup, TempDir)
// through.
type fatalRecorder struct {
	testing.TB
	mu    sync.Mutex
	fatal []string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *fatalRecorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// TestBootTimeoutShowsWhy boots an instance whose boot never finishes and
// checks that Boot fails in time, naming the stuck unit and showing the
// console.
func TestBootTimeoutShowsWhy(t *testing.T) {
	base := baseRootfs(t)
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		instance.Boot(r, instance.Options{
			Name:        "rig-inst-stuck",
			Base:        base,
			BootTimeout: 3 * time.Second,
			Setup: func(root string) error {
				if err := writeFile(filepath.Join(root, "etc/systemd/system/rig-hang.service"),
					"[Service]\nType=oneshot\nExecStart=/bin/sleep infinity\n"); err != nil {
					return err
				}
				wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
				if err := os.MkdirAll(wants, 0o755); err != nil {
					return err
				}
				return os.Symlink("../rig-hang.service", filepath.Join(wants, "rig-hang.service"))
			},
		})
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Boot did not return within a minute of a 3 s boot timeout")
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("Boot took %s to give up on a 3 s boot timeout", took)
	}
	if len(r.fatal) != 1 {
		t.Fatalf("Boot of a stuck instance: %d fatal failures %q, want 1", len(r.fatal), r.fatal)
	}
	msg := r.fatal[0]
	for _, want := range []string{"is-system-running", "list-jobs", "rig-hang.service", "console", "Starting rig-hang.service"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure message lacks %q:\n%s", want, msg)
		}
	}
	t.Logf("failure message:\n%s", msg)
}

// TestStartAndClose drives an instance without a test's help: Start,
// Poweroff, Start of the same root (a reboot), then Close of both, newest
// first. Close is idempotent and leaves no mount, no cgroup and no
// process behind; the boot directories stay for their owner.
func TestStartAndClose(t *testing.T) {
	base := baseRootfs(t)
	const name = "rig-inst-start"
	dir := t.TempDir()
	var logged []string
	logf := func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) }
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	first, err := instance.Start(ctx, instance.Options{Name: name, Base: base, Dir: filepath.Join(dir, "boot-1"), Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	inside(t, first, "sh", "-c", "echo kept >/root/marker")
	if err := first.Poweroff(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := instance.Start(ctx, instance.Options{Name: name, Root: first.Root(), Dir: filepath.Join(dir, "boot-2"), Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if got := inside(t, second, "cat", "/root/marker"); got != "kept" {
		t.Errorf("after the reboot /root/marker = %q", got)
	}
	initPID := second.InitPID()
	for _, in := range []*instance.Instance{second, first, second} {
		if err := in.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", initPID)); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
		t.Errorf("the instance's systemd (PID %d) still runs", initPID)
	}
	for _, m := range readFileLines(t, "/proc/self/mountinfo") {
		if strings.Contains(m, dir) {
			t.Errorf("left mounted: %s", m)
		}
	}
	for _, hier := range cgroupDirsNamed(t, name) {
		t.Errorf("cgroup left behind: %s", hier)
	}
	if _, err := os.Stat(filepath.Join(dir, "boot-2", "console.log")); err != nil {
		t.Errorf("the second boot's console log: %v", err)
	}
	if len(logged) < 3 {
		t.Errorf("Logf got %q, want the boots and the poweroff", logged)
	}

	// Options.Dir is required.
	if _, err := instance.Start(ctx, instance.Options{Name: name, Base: base}); err == nil || !strings.Contains(err.Error(), "Options.Dir") {
		t.Errorf("Start without Dir: %v", err)
	}
}
