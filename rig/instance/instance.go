// Package instance boots a simulated EC2 instance for end-to-end tests: a
// Debian bookworm root filesystem under real systemd, in systemd-nspawn.
// By default it shares the host's network (so that an awssim listening on
// the host's 127.0.0.1 is reachable from inside); with Options.Network set
// to Veth it has a private network of its own, routed through the host,
// and with Options.Docker a Docker engine installed inside (apt-get
// install docker.io) runs containers.
//
// EnsureRootfs builds (once, cached) the base root filesystem; Boot gives
// each instance a private writable overlay on top of it, starts
// systemd-nspawn from a cgroup of its own and waits until systemd inside
// reports the system running. Exec runs commands inside. Poweroff halts the
// instance; booting the same Root again is a reboot of the same disk.
// Everything is undone when the test ends, even when it fails.
//
// It needs root, systemd-nspawn (Debian's systemd-container) and nsenter.
package instance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// DefaultBootTimeout bounds Boot's wait for systemd to come up.
	DefaultBootTimeout = 30 * time.Second
	// DefaultStopTimeout bounds a clean halt before the instance is killed.
	DefaultStopTimeout = 20 * time.Second

	// consoleLines is how much of the console a failure message shows.
	consoleLines = 40
	// killWait bounds the wait for nspawn to exit after SIGKILL.
	killWait = 10 * time.Second
	// probeTimeout bounds one command run inside during boot or diagnosis.
	probeTimeout = 5 * time.Second

	// guestPath is PATH for commands run inside the instance.
	guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

	// enterCgroups is run by /bin/sh with the cgroup.procs files to join,
	// "--", then the command to exec: nspawn starts inside those cgroups
	// without moving the test process.
	enterCgroups = `while [ "$1" != -- ]; do echo $$ >"$1" || exit 125; shift; done; shift; exec "$@"`
)

// validName matches a machine name: it becomes the hostname and a cgroup.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,62}$`)

// Options describe one boot of an instance. Exactly one of Base and Root
// must be set.
type Options struct {
	// Name is the machine name (-M): the hostname inside and the name of
	// the instance's cgroups. Instances running at the same time need
	// distinct names.
	Name string

	// Base is a root filesystem (from EnsureRootfs) that is never
	// modified: Boot mounts a private overlay on it, its upper layer in
	// t.TempDir(). The overlay stays mounted until the test ends, so that
	// after Poweroff the same Root() can be booted again.
	Base string

	// Root is an existing root directory to boot as it is, typically the
	// Root() of an instance that was powered off: a reboot of the same
	// disk.
	Root string

	// Binds are systemd-nspawn --bind= entries: "/host/path",
	// "/host/path:/path/inside" or with ":options".
	Binds []string

	// Setup, if set, is called with the root directory on the host before
	// systemd starts: install the binary, units and configuration there.
	Setup func(root string) error

	// NspawnArgs are further systemd-nspawn arguments (--bind-ro=...,
	// --setenv=...).
	NspawnArgs []string

	// Network is HostNetwork (the default: the host's network namespace)
	// or Veth (a private namespace, its own subnet, routed and
	// masqueraded by the host; see Veth). With Veth, HostAddr is the
	// host's address as the instance sees it.
	Network Network

	// HostServices (Veth only) are TCP addresses on the host's loopback,
	// "127.0.0.1:PORT", that processes inside reach at the same address:
	// the test process listens there in the instance's namespace and
	// relays each connection to the host. So an awssim on the host's
	// loopback is reachable at the URL it prints, as with HostNetwork.
	// They are in place before systemd starts any unit that is ordered
	// after network-online.target. Instance.ForwardHost adds more later.
	HostServices []string

	// Docker prepares the instance for a Docker engine installed inside
	// (by apt-get install docker.io, as monagent's docker step does). It
	// needs Network: Veth. It installs and enables rig-cgroup-rw.service,
	// which remounts the cgroup v1 controller hierarchies read-write
	// before containerd and docker start, and binds DockerDir at
	// /var/lib/docker: the instance's root is an overlayfs, on which
	// Docker's overlay2 driver cannot work.
	Docker bool

	// DockerDir (with Docker) is the host directory bound at
	// /var/lib/docker (created if missing; not on an overlayfs). Empty:
	// a directory beside the instance's root, in the test's temporary
	// directory, reused when the same Root boots again in this process
	// (so Docker's images and containers survive a reboot). DockerDirNone:
	// nothing bound; the test puts /var/lib/docker (or Docker's
	// data-root) on a filesystem overlay2 accepts itself, such as the data
	// volume.
	DockerDir string

	// BootTimeout bounds the wait for a running system; DefaultBootTimeout
	// if zero.
	BootTimeout time.Duration

	// StopTimeout bounds a clean halt, after which the instance is killed;
	// DefaultStopTimeout if zero.
	StopTimeout time.Duration
}

// Instance is one booted systemd-nspawn container. Its methods other than
// Exec, Output and Command must be called from the test's goroutine.
type Instance struct {
	t           testing.TB
	name        string
	root        string // the root directory on the host
	dir         string // this boot's private directory, under t.TempDir()
	console     string // the console log
	overlay     bool   // root is an overlay mount this boot made
	stopTimeout time.Duration
	nsenter     string
	argv        []string // the systemd-nspawn command line

	network   Network
	veth      *vethNet // with Veth
	dockerDir string   // bound at /var/lib/docker, if any

	cg      *cgroupSet
	cmd     *exec.Cmd
	done    chan struct{} // closed when nspawn has exited; waitErr is set then
	waitErr error
	initPID int
	stopped bool // shut down by Poweroff or cleanup
}

// Boot boots an instance and waits until systemd inside reports the system
// "running" or "degraded". It fails the test (with the console's tail) if
// the instance does not come up. Everything it sets up is undone when the
// test ends: nspawn is stopped (SIGTERM, then SIGKILL after StopTimeout),
// its cgroups removed and the overlay unmounted.
func Boot(t testing.TB, opts Options) *Instance {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("rig/instance: booting an instance needs root (running as uid %d)", os.Geteuid())
	}
	nspawn, err := exec.LookPath("systemd-nspawn")
	if err != nil {
		t.Fatalf("rig/instance: systemd-nspawn not found (EnsureRootfs installs Debian's systemd-container): %v", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("rig/instance: nsenter not found (Debian's util-linux): %v", err)
	}
	if !validName.MatchString(opts.Name) {
		t.Fatalf("rig/instance: machine name %q: want letters, digits and '-', at most 63", opts.Name)
	}
	if (opts.Base == "") == (opts.Root == "") {
		t.Fatalf("rig/instance: instance %s: set exactly one of Options.Base (%q) and Options.Root (%q)", opts.Name, opts.Base, opts.Root)
	}
	switch opts.Network {
	case HostNetwork:
		if opts.Docker {
			t.Fatalf("rig/instance: instance %s: Options.Docker needs Network: Veth (a Docker engine on the host's network would change the host's bridge and iptables rules)", opts.Name)
		}
	case Veth:
		if err := needTools("ip", "iptables"); err != nil {
			t.Fatalf("rig/instance: instance %s: %v", opts.Name, err)
		}
	default:
		t.Fatalf("rig/instance: instance %s: unknown Options.Network %d", opts.Name, opts.Network)
	}
	bootTimeout := opts.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = DefaultBootTimeout
	}
	stopTimeout := opts.StopTimeout
	if stopTimeout <= 0 {
		stopTimeout = DefaultStopTimeout
	}

	dir := t.TempDir()
	in := &Instance{
		t:           t,
		name:        opts.Name,
		dir:         dir,
		console:     filepath.Join(dir, "console.log"),
		stopTimeout: stopTimeout,
		nsenter:     nsenter,
		network:     opts.Network,
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(in.cleanup)

	if opts.Base != "" {
		if err := in.mountBase(opts.Base); err != nil {
			t.Fatalf("rig/instance: instance %s: %v", in.name, err)
		}
	} else {
		root, err := filepath.Abs(opts.Root)
		if err == nil {
			err = checkRootfs(root)
		}
		if err != nil {
			t.Fatalf("rig/instance: instance %s: root to boot: %v", in.name, err)
		}
		in.root = root
	}
	if opts.Network == Veth {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		in.veth, err = allocSubnet(ctx)
		cancel()
		if err == nil {
			err = in.veth.prepareRoot(in.root)
		}
		if err != nil {
			t.Fatalf("rig/instance: instance %s: private network: %v", in.name, err)
		}
	}
	if opts.Docker {
		err := prepareDocker(in.root)
		if err == nil {
			in.dockerDir, err = dockerDir(opts.DockerDir, in.root, dir)
		}
		if err != nil {
			t.Fatalf("rig/instance: instance %s: Docker: %v", in.name, err)
		}
	}
	if opts.Setup != nil {
		if err := opts.Setup(in.root); err != nil {
			t.Fatalf("rig/instance: instance %s: setup of %s: %v", in.name, in.root, err)
		}
	}

	in.argv = []string{nspawn,
		"--directory=" + in.root,
		"--machine=" + in.name,
		"--boot",
		"--register=no",
		"--keep-unit",
		"--console=read-only",
		"--link-journal=no",
		"--system-call-filter=add_key keyctl",
	}
	if in.veth != nil {
		in.argv = append(in.argv, "--network-veth")
	}
	if in.dockerDir != "" {
		in.argv = append(in.argv, "--bind="+in.dockerDir+":/var/lib/docker")
	}
	for _, b := range opts.Binds {
		in.argv = append(in.argv, "--bind="+b)
	}
	in.argv = append(in.argv, opts.NspawnArgs...)

	start := time.Now()
	if err := in.start(); err != nil {
		t.Fatalf("rig/instance: instance %s: %v", in.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := in.waitInit(ctx); err != nil {
		t.Fatalf("rig/instance: instance %s: %s: %v%s", in.name, quoteArgs(in.argv), err, in.diagnosis())
	}
	if in.veth != nil {
		// host0 inside gets its address from networkd only once the host
		// end is up, and network-online.target waits for that: the
		// forwarders come first, so they are there for every unit
		// ordered after it.
		var err error
		for _, a := range opts.HostServices {
			if err = in.veth.forward(in.initPID, a); err != nil {
				break
			}
		}
		if err == nil {
			err = in.veth.up(ctx, in.initPID)
		}
		if err != nil {
			t.Fatalf("rig/instance: instance %s: private network: %v%s", in.name, err, in.diagnosis())
		}
	}
	state, err := in.waitRunning(ctx)
	if err != nil {
		t.Fatalf("rig/instance: instance %s: %s: %v%s", in.name, quoteArgs(in.argv), err, in.diagnosis())
	}
	netDesc := "the host's network"
	if in.veth != nil {
		netDesc = fmt.Sprintf("%s on %s, host end %s %s", in.veth.guest, in.veth.subnet, in.veth.ifname, in.veth.host)
	}
	t.Logf("rig/instance: instance %s is %s after %s (init PID %d, root %s, %s)",
		in.name, state, time.Since(start).Round(time.Millisecond), in.initPID, in.root, netDesc)
	if state == "degraded" {
		out, _ := in.probe("systemctl", "--failed", "--no-pager", "--no-legend")
		t.Logf("rig/instance: instance %s: failed units:\n%s", in.name, tailString(string(out), consoleLines))
	}
	return in
}

// mountBase mounts the private overlay over base and gives it a machine ID
// of its own.
func (in *Instance) mountBase(base string) error {
	base, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("base rootfs: %w", err)
	}
	if err := checkRootfs(base); err != nil {
		return fmt.Errorf("base rootfs: %w", err)
	}
	upper, work, root := filepath.Join(in.dir, "upper"), filepath.Join(in.dir, "work"), filepath.Join(in.dir, "root")
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("overlay directory: %w", err)
		}
	}
	if err := mountOverlay(base, upper, work, root); err != nil {
		return err
	}
	in.overlay = true
	in.root = root

	// Each instance is a machine of its own; the ID stays across reboots
	// (it lives in the upper layer).
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("machine ID: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte(hex.EncodeToString(id)+"\n"), 0o444); err != nil {
		return fmt.Errorf("write machine ID: %w", err)
	}
	return nil
}

// start starts systemd-nspawn inside a fresh set of cgroups, its console
// going to the console log.
func (in *Instance) start() error {
	cg, err := newCgroupSet(in.name)
	if err != nil {
		return err
	}
	in.cg = cg
	console, err := os.OpenFile(in.console, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	defer console.Close()

	args := []string{"-c", enterCgroups, "sh"}
	args = append(args, cg.procsFiles()...)
	args = append(args, "--")
	args = append(args, in.argv...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// If the test process dies, nspawn halts the container.
		Pdeathsig: syscall.SIGTERM,
		Setpgid:   true,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", quoteArgs(in.argv), err)
	}
	in.cmd = cmd
	in.done = make(chan struct{})
	go func() {
		in.waitErr = cmd.Wait()
		close(in.done)
	}()
	return nil
}

// exited reports whether nspawn has exited.
func (in *Instance) exited() bool {
	if in.done == nil {
		return true
	}
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

// waitInit waits for the container's init (systemd) to appear.
func (in *Instance) waitInit(ctx context.Context) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for in.initPID == 0 {
		if in.exited() {
			return fmt.Errorf("systemd-nspawn exited before the container's systemd started: %v", in.waitErr)
		}
		pid, err := findChild(in.cmd.Process.Pid, "systemd")
		if err != nil {
			return err
		}
		in.initPID = pid
		if pid != 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no systemd child of systemd-nspawn (PID %d): %w", in.cmd.Process.Pid, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// waitRunning waits for the container's init and then for
// `systemctl is-system-running` to answer running or degraded, which it
// returns.
func (in *Instance) waitRunning(ctx context.Context) (string, error) {
	if err := in.waitInit(ctx); err != nil {
		return "", err
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	state := ""
	for {
		if in.exited() {
			return "", fmt.Errorf("systemd-nspawn exited while booting (last state %q): %v", state, in.waitErr)
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		out, _, _ := in.Output(pctx, "systemctl", "is-system-running")
		cancel()
		if s := strings.TrimSpace(string(out)); s != "" {
			state = s
		}
		switch state {
		case "running", "degraded":
			return state, nil
		case "maintenance", "stopping":
			return "", fmt.Errorf("systemctl is-system-running: %s", state)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("systemctl is-system-running: still %q: %w", state, ctx.Err())
		case <-tick.C:
		}
	}
}

// diagnosis describes the instance for a failure message: failed units,
// pending jobs and the console's tail.
func (in *Instance) diagnosis() string {
	var b strings.Builder
	if in.initPID != 0 && !in.exited() {
		for _, argv := range [][]string{
			{"systemctl", "--failed", "--no-pager"},
			{"systemctl", "list-jobs", "--no-pager"},
		} {
			out, err := in.probe(argv...)
			fmt.Fprintf(&b, "\n%s:\n%s", strings.Join(argv, " "), tailString(string(out), consoleLines))
			if err != nil {
				fmt.Fprintf(&b, "\n\t(%v)", firstLine(err.Error()))
			}
		}
	}
	fmt.Fprintf(&b, "\nconsole %s, last %d lines:\n%s", in.console, consoleLines, tailFile(in.console, consoleLines))
	return b.String()
}

// probe runs argv inside, bounded by probeTimeout, returning combined
// output.
func (in *Instance) probe(argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return in.Exec(ctx, argv[0], argv[1:]...)
}

// Name returns the machine name.
func (in *Instance) Name() string { return in.name }

// Root returns the instance's root directory on the host. After Poweroff
// it stays in place until the test ends: Boot it again with Options.Root.
func (in *Instance) Root() string { return in.root }

// InitPID returns the host PID of the container's systemd.
func (in *Instance) InitPID() int { return in.initPID }

// ConsolePath returns the file that receives the container's console.
func (in *Instance) ConsolePath() string { return in.console }

// ConsoleTail returns the last n lines of the console, without terminal
// escapes.
func (in *Instance) ConsoleTail(n int) string { return tailFile(in.console, n) }

// NspawnCommand returns the systemd-nspawn command line the instance runs.
func (in *Instance) NspawnCommand() []string { return append([]string(nil), in.argv...) }

// Network returns how the instance is connected.
func (in *Instance) Network() Network { return in.network }

// HostAddr returns the host's address as the instance sees it: the host
// end of the veth link ("10.213.N.1") with Veth, 127.0.0.1 with
// HostNetwork. A server on the host that the instance must reach listens
// there (or on 0.0.0.0), or on the loopback with ForwardHost.
func (in *Instance) HostAddr() string {
	if in.veth == nil {
		return "127.0.0.1"
	}
	return in.veth.host.String()
}

// Addr returns the instance's own address, which the host reaches
// (ports Docker publishes inside, say): host0's "10.213.N.2" with Veth,
// 127.0.0.1 with HostNetwork.
func (in *Instance) Addr() string {
	if in.veth == nil {
		return "127.0.0.1"
	}
	return in.veth.guest.String()
}

// Subnet returns the instance's subnet ("10.213.N.0/30") with Veth, ""
// with HostNetwork.
func (in *Instance) Subnet() string {
	if in.veth == nil {
		return ""
	}
	return in.veth.subnet.String()
}

// HostInterface returns the name of the host end of the veth link
// (systemd-nspawn's "ve-NAME", shortened with a hash for long names) with
// Veth, "" with HostNetwork.
func (in *Instance) HostInterface() string {
	if in.veth == nil {
		return ""
	}
	return in.veth.ifname
}

// DockerDir returns the host directory bound at /var/lib/docker ("" if
// none: no Options.Docker, or DockerDirNone).
func (in *Instance) DockerDir() string { return in.dockerDir }

// SystemBusAddress returns a D-Bus address of the instance's system bus
// usable from the host ("unix:path=/proc/INIT/root/run/dbus/system_bus_socket"):
// for example as DBUS_SYSTEM_BUS_ADDRESS for go-systemd's
// dbus.NewSystemConnectionContext.
func (in *Instance) SystemBusAddress() string {
	return "unix:path=/proc/" + strconv.Itoa(in.initPID) + "/root/run/dbus/system_bus_socket"
}

// ForwardHost makes addr, "127.0.0.1:PORT" on the host, reachable at the
// same address inside the instance until it stops (see
// Options.HostServices). With HostNetwork it does nothing: the host's
// loopback is the instance's.
func (in *Instance) ForwardHost(addr string) error {
	if in.veth == nil {
		return nil
	}
	if in.initPID == 0 || in.exited() || in.stopped {
		return fmt.Errorf("forward %s: instance %s is not running", addr, in.name)
	}
	return in.veth.forward(in.initPID, addr)
}

// Command returns a command that runs name with args inside the instance,
// in all of its namespaces (nsenter -t InitPID -a), with a clean
// environment (PATH, HOME=/root, LANG=C.UTF-8). When ctx ends, the command
// and everything it started are killed. Once the instance has stopped,
// the command fails to start.
//
// End it through ctx rather than by killing cmd.Process: nsenter runs the
// command in a child, and if nsenter dies first, that child is left to the
// host's init, which may never reap it; the container's systemd then waits
// 10 s for it when it halts.
func (in *Instance) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"-t", strconv.Itoa(in.initPID), "-a", "--", name}, args...)
	cmd := exec.CommandContext(ctx, in.nsenter, argv...)
	cmd.Env = []string{"PATH=" + guestPath, "HOME=/root", "LANG=C.UTF-8", "TERM=dumb"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cancelNsenter(cmd.Process.Pid) }
	cmd.WaitDelay = 5 * time.Second
	if in.initPID == 0 || in.exited() || in.stopped {
		// Never enter the namespaces of whatever process now has that PID.
		cmd.Err = fmt.Errorf("instance %s is not running", in.name)
	}
	return cmd
}

// Exec runs name with args inside the instance and returns its combined
// output. The error names the command and carries the output; it wraps
// *exec.ExitError when the command ran and failed.
func (in *Instance) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := in.Command(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in %s: %s: %w\n%s", in.name, quoteArgs(cmd.Args), err, tailString(string(out), consoleLines))
	}
	return out, nil
}

// Output runs name with args inside the instance and returns its standard
// output and standard error separately. The error names the command and
// carries both; it wraps *exec.ExitError when the command ran and failed.
func (in *Instance) Output(ctx context.Context, name string, args ...string) (stdout, stderr []byte, err error) {
	cmd := in.Command(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout = &o
	cmd.Stderr = &e
	if err := cmd.Run(); err != nil {
		return o.Bytes(), e.Bytes(), fmt.Errorf("in %s: %s: %w\nstdout:\n%s\nstderr:\n%s", in.name, quoteArgs(cmd.Args), err,
			tailString(o.String(), consoleLines), tailString(e.String(), consoleLines))
	}
	return o.Bytes(), e.Bytes(), nil
}

// Poweroff halts the instance cleanly: SIGTERM to systemd-nspawn (which
// has systemd halt the container), waiting at most StopTimeout before
// killing it. The root directory stays, so that Boot with
// Options{Root: in.Root()} boots the same disk again. It fails the test
// if the instance did not halt cleanly.
func (in *Instance) Poweroff() {
	in.t.Helper()
	if in.stopped {
		return
	}
	start := time.Now()
	if err := in.shutdown(); err != nil {
		in.t.Fatalf("rig/instance: instance %s: poweroff: %v\nconsole %s, last %d lines:\n%s",
			in.name, err, in.console, consoleLines, tailFile(in.console, consoleLines))
	}
	in.t.Logf("rig/instance: instance %s powered off in %s", in.name, time.Since(start).Round(time.Millisecond))
}

// shutdown stops nspawn and removes the instance's cgroups.
func (in *Instance) shutdown() error {
	in.stopped = true
	err := in.stop()
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

// stop stops systemd-nspawn: SIGTERM, then after stopTimeout SIGKILL to
// the container's init (which ends its PID namespace) and to nspawn.
func (in *Instance) stop() error {
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
	select {
	case <-in.done:
		if in.waitErr != nil {
			return fmt.Errorf("systemd-nspawn after SIGTERM: %w", in.waitErr)
		}
		return nil
	case <-timer.C:
	}
	if in.initPID != 0 {
		if ppid, _, err := procStat(in.initPID); err == nil && ppid == pid {
			_ = syscall.Kill(in.initPID, syscall.SIGKILL)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-in.done:
		return fmt.Errorf("systemd-nspawn (PID %d) did not halt within %s of SIGTERM: killed it", pid, in.stopTimeout)
	case <-time.After(killWait):
		return fmt.Errorf("systemd-nspawn (PID %d) did not exit within %s of SIGKILL", pid, killWait)
	}
}

// cleanup undoes Boot at the end of the test: it stops the instance if it
// runs, removes its cgroups, unmounts the overlay it mounted and checks
// that nothing stays mounted below its root.
func (in *Instance) cleanup() {
	var errs []error
	if !in.stopped {
		start := time.Now()
		if err := in.shutdown(); err != nil {
			errs = append(errs, err)
		} else if in.cmd != nil {
			in.t.Logf("rig/instance: instance %s stopped at the end of the test in %s", in.name, time.Since(start).Round(time.Millisecond))
		}
	}
	if in.root != "" {
		if in.overlay {
			if err := unmountAll(in.root); err != nil {
				errs = append(errs, err)
			}
		} else if points, err := mountsUnder(in.root); err != nil {
			errs = append(errs, err)
		} else {
			for _, p := range points {
				if p != in.root {
					errs = append(errs, fmt.Errorf("left mounted: %s", p))
				}
			}
		}
	}
	if len(errs) > 0 {
		in.t.Errorf("rig/instance: instance %s: cleanup: %v\nconsole %s, last %d lines:\n%s",
			in.name, errors.Join(errs...), in.console, consoleLines, tailFile(in.console, consoleLines))
	}
}

// cancelNsenter kills an nsenter command and what it started, in an
// order that leaves no zombie behind: first everything in its process
// group but nsenter itself (nsenter reaps its child in the container,
// the container's systemd reaps the rest), then, if it has not exited by
// itself within a second, nsenter.
func cancelNsenter(pid int) error {
	if err := killGroupExcept(pid, pid); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if st, err := procState(pid); err != nil || st == 'Z' {
			return nil // exited; os/exec reaps it
		}
		time.Sleep(10 * time.Millisecond)
	}
	return syscall.Kill(-pid, syscall.SIGKILL)
}

// killGroupExcept sends SIGKILL to every process in process group pgid
// except the process except.
func killGroupExcept(pgid, except int) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == except {
			continue
		}
		if _, f, err := procStatFields(pid); err == nil && f[2] == strconv.Itoa(pgid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

// procState returns the state letter of pid (R, S, D, Z, ...).
func procState(pid int) (byte, error) {
	_, f, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	return f[0][0], nil
}

// findChild returns the PID of a child of ppid whose command name is comm,
// or 0 if there is none.
func findChild(ppid int, comm string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pp, c, err := procStat(pid)
		if err == nil && pp == ppid && c == comm {
			return pid, nil
		}
	}
	return 0, nil
}

// procStat returns the parent PID and command name of pid.
func procStat(pid int) (ppid int, comm string, err error) {
	comm, f, err := procStatFields(pid)
	if err != nil {
		return 0, "", err
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, "", fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return ppid, comm, nil
}

// procStatFields returns the command name of pid and the fields of
// /proc/PID/stat after it: state, ppid, pgrp, session, ...
func procStatFields(pid int) (comm string, fields []string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", nil, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields = strings.Fields(s[end+1:])
	if len(fields) < 3 {
		return "", nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return s[open+1 : end], fields, nil
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
