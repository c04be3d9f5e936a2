// Package instance boots a simulated EC2 instance: a Debian bookworm root
// filesystem under real systemd, in systemd-nspawn. By default it shares
// the host's network (so that an awssim listening on the host's 127.0.0.1
// is reachable from inside); with Options.Network set to Veth it has a
// private network of its own, routed through the host, and with
// Options.Docker a Docker engine installed inside (apt-get install
// docker.io) runs containers.
//
// EnsureRootfs builds (once, cached) the base root filesystem; Start gives
// each instance a private writable overlay on top of it, starts
// systemd-nspawn from a cgroup of its own and waits until systemd inside
// reports the system running. Exec runs commands inside. Poweroff halts the
// instance; booting the same Root again is a reboot of the same disk. Close
// undoes everything Start did. Boot is Start for a test: everything is
// undone when the test ends, even when it fails.
//
// It needs root, systemd-nspawn (Debian's systemd-container) and nsenter.
package instance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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

	// Dir is this boot's private directory (required; created if
	// missing): the console log, the overlay's layers and mount point
	// with Base, and Docker's default state directory. It must outlive
	// the instance; Close leaves it for its owner to remove. Boot uses a
	// t.TempDir().
	Dir string

	// Logf, if set, receives progress lines (boot and halt times, failed
	// units). Boot uses t.Logf.
	Logf func(format string, args ...any)

	// Base is a root filesystem (from EnsureRootfs) that is never
	// modified: Start mounts a private overlay on it, its layers in Dir.
	// The overlay stays mounted until Close, so that after Poweroff the
	// same Root() can be booted again.
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
	// docker/ in Dir for a Base boot; for a Root boot of an overlay root
	// that an earlier boot mounted, the docker/ directory beside it, if
	// there is one (so Docker's images and containers survive a reboot),
	// else docker/ in Dir. DockerDirNone:
	// nothing bound; the test puts /var/lib/docker (or Docker's
	// data-root) on a filesystem overlay2 accepts itself, such as the data
	// volume.
	DockerDir string

	// BootTimeout bounds the wait for a running system; DefaultBootTimeout
	// if zero.
	BootTimeout time.Duration

	// NoWait makes Start return once systemd runs inside (and, with Veth,
	// the network is connected) instead of waiting for the boot's end:
	// for a boot whose units run long (a first boot's user-data). The
	// caller then waits for what it needs, for example with WaitRunning.
	NoWait bool

	// StopTimeout bounds a clean halt, after which the instance is killed;
	// DefaultStopTimeout if zero.
	StopTimeout time.Duration
}

// Instance is one booted systemd-nspawn container. Its methods other than
// Exec, Output and Command must be called from one goroutine at a time.
type Instance struct {
	logf        func(format string, args ...any)
	name        string
	root        string // the root directory on the host
	dir         string // this boot's private directory (Options.Dir)
	console     string // the console log
	overlay     bool   // root is an overlay mount this boot made
	stopTimeout time.Duration
	nsenter     string
	nspawn      string
	argv        []string // the systemd-nspawn command line

	network   Network
	veth      *vethNet // with Veth
	dockerDir string   // bound at /var/lib/docker, if any

	cg      *cgroupSet
	cmd     *exec.Cmd
	done    chan struct{} // closed when nspawn has exited; waitErr is set then
	waitErr error
	initPID int
	stopped bool // shut down by Poweroff or Close
	closed  bool // Close has run
}

// Name returns the machine name.
func (in *Instance) Name() string { return in.name }

// Root returns the instance's root directory on the host. After Poweroff
// it stays in place until Close: boot it again with Options.Root.
func (in *Instance) Root() string { return in.root }

// Dir returns this boot's private directory (Options.Dir).
func (in *Instance) Dir() string { return in.dir }

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
