package instance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Start boots an instance and waits until systemd inside reports the
// system "running" or "degraded". Everything it sets up lives in
// opts.Dir (required) and is undone by Close: nspawn is stopped (SIGTERM,
// then SIGKILL after StopTimeout), its cgroups removed, its network rules
// deleted and the overlay unmounted. If the instance does not come up,
// Start undoes what it did and returns an error that carries the
// console's tail. ctx bounds the start only, not the instance's life.
func Start(ctx context.Context, opts Options) (*Instance, error) {
	in, err := newInstance(opts)
	if err != nil {
		return nil, fmt.Errorf("rig/instance: instance %s: %w", opts.Name, err)
	}
	if err := in.boot(ctx, opts); err != nil {
		err = fmt.Errorf("rig/instance: instance %s: %w", in.name, err)
		if cerr := in.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("undo the failed start: %w", cerr))
		}
		return nil, err
	}
	return in, nil
}

// Boot is Start for a test: the boot's directory is a t.TempDir(), the
// instance logs through t.Logf, is closed when the test ends (even when
// it fails; a Close error fails the test) and a failed start fails the
// test at once.
func Boot(t testing.TB, opts Options) *Instance {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	in, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if err := in.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return in
}

// newInstance checks opts and the host's tools and returns the instance,
// not yet booted.
func newInstance(opts Options) (*Instance, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("booting an instance needs root (running as uid %d)", os.Geteuid())
	}
	nspawn, err := exec.LookPath("systemd-nspawn")
	if err != nil {
		return nil, fmt.Errorf("systemd-nspawn not found (EnsureRootfs installs Debian's systemd-container): %w", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("nsenter not found (Debian's util-linux): %w", err)
	}
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return nil, fmt.Errorf("the boot's directory Options.Dir: %w", err)
	}
	in := &Instance{
		logf:        opts.Logf,
		name:        opts.Name,
		dir:         dir,
		console:     filepath.Join(dir, "console.log"),
		stopTimeout: opts.StopTimeout,
		nsenter:     nsenter,
		nspawn:      nspawn,
		network:     opts.Network,
	}
	if in.logf == nil {
		in.logf = func(string, ...any) {}
	}
	if in.stopTimeout <= 0 {
		in.stopTimeout = DefaultStopTimeout
	}
	return in, nil
}

// checkOptions validates what can be checked before anything is made.
func checkOptions(opts Options) error {
	if !validName.MatchString(opts.Name) {
		return fmt.Errorf("machine name %q: want letters, digits and '-', at most 63", opts.Name)
	}
	if opts.Dir == "" {
		return errors.New("Options.Dir is empty: every boot needs a private directory")
	}
	if (opts.Base == "") == (opts.Root == "") {
		return fmt.Errorf("set exactly one of Options.Base (%q) and Options.Root (%q)", opts.Base, opts.Root)
	}
	switch opts.Network {
	case HostNetwork:
		if opts.Docker {
			return errors.New("Options.Docker needs Network: Veth (a Docker engine on the host's network would change the host's bridge and iptables rules)")
		}
	case Veth:
		if err := needTools("ip", "iptables"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown Options.Network %d", opts.Network)
	}
	return nil
}

// boot prepares the root, starts nspawn and waits for a running system.
func (in *Instance) boot(ctx context.Context, opts Options) error {
	if err := in.prepare(ctx, opts); err != nil {
		return err
	}
	in.argv = in.nspawnArgv(opts)
	start := time.Now()
	if err := in.start(); err != nil {
		return err
	}
	bootTimeout := opts.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = DefaultBootTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	if err := in.waitInit(ctx); err != nil {
		return fmt.Errorf("%s: %w%s", quoteArgs(in.argv), err, in.diagnosis())
	}
	if in.veth != nil {
		// host0 inside gets its address from networkd only once the host
		// end is up, and network-online.target waits for that: the
		// forwarders come first, so they are there for every unit
		// ordered after it.
		if err := in.connect(ctx, opts.HostServices); err != nil {
			return fmt.Errorf("private network: %w%s", err, in.diagnosis())
		}
	}
	netDesc := "the host's network"
	if in.veth != nil {
		netDesc = fmt.Sprintf("%s on %s, host end %s %s", in.veth.guest, in.veth.subnet, in.veth.ifname, in.veth.host)
	}
	if opts.NoWait {
		in.logf("rig/instance: instance %s started in %s, booting (init PID %d, root %s, %s)",
			in.name, time.Since(start).Round(time.Millisecond), in.initPID, in.root, netDesc)
		return nil
	}
	state, err := in.waitRunning(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w%s", quoteArgs(in.argv), err, in.diagnosis())
	}
	in.logf("rig/instance: instance %s is %s after %s (init PID %d, root %s, %s)",
		in.name, state, time.Since(start).Round(time.Millisecond), in.initPID, in.root, netDesc)
	in.logFailed(state)
	return nil
}

// WaitRunning waits until systemd inside reports the system "running" or
// "degraded" (every job of the boot done), and returns which. The error
// lists failed units and pending jobs and quotes the console's tail.
func (in *Instance) WaitRunning(ctx context.Context) (string, error) {
	if in.stopped {
		return "", fmt.Errorf("rig/instance: instance %s is not running", in.name)
	}
	state, err := in.waitRunning(ctx)
	if err != nil {
		return "", fmt.Errorf("rig/instance: instance %s: %w%s", in.name, err, in.diagnosis())
	}
	in.logFailed(state)
	return state, nil
}

// logFailed logs the failed units of a degraded system.
func (in *Instance) logFailed(state string) {
	if state == "degraded" {
		out, _ := in.probe("systemctl", "--failed", "--no-pager", "--no-legend")
		in.logf("rig/instance: instance %s: failed units:\n%s", in.name, tailString(string(out), consoleLines))
	}
}

// prepare makes the root (an overlay on Base, or Root as it is), its
// network and Docker settings, and runs Setup.
func (in *Instance) prepare(ctx context.Context, opts Options) error {
	if opts.Base != "" {
		if err := in.mountBase(opts.Base); err != nil {
			return err
		}
	} else {
		root, err := filepath.Abs(opts.Root)
		if err == nil {
			err = checkRootfs(root)
		}
		if err != nil {
			return fmt.Errorf("root to boot: %w", err)
		}
		in.root = root
	}
	if opts.Network == Veth {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		v, err := allocSubnet(actx)
		cancel()
		if err != nil {
			return fmt.Errorf("private network: %w", err)
		}
		in.veth = v
		if err := v.prepareRoot(in.root); err != nil {
			return fmt.Errorf("private network: %w", err)
		}
	}
	if opts.Docker {
		if err := prepareDocker(in.root); err != nil {
			return fmt.Errorf("Docker: %w", err)
		}
		d, err := dockerDir(opts.DockerDir, in.root, in.dir, in.overlay)
		if err != nil {
			return fmt.Errorf("Docker: %w", err)
		}
		in.dockerDir = d
	}
	if opts.Setup != nil {
		if err := opts.Setup(in.root); err != nil {
			return fmt.Errorf("setup of %s: %w", in.root, err)
		}
	}
	return nil
}

// nspawnArgv is the systemd-nspawn command line of this boot.
func (in *Instance) nspawnArgv(opts Options) []string {
	argv := []string{in.nspawn,
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
		argv = append(argv, "--network-veth")
	}
	if in.dockerDir != "" {
		argv = append(argv, "--bind="+in.dockerDir+":/var/lib/docker")
	}
	for _, b := range opts.Binds {
		argv = append(argv, "--bind="+b)
	}
	return append(argv, opts.NspawnArgs...)
}

// connect sets up the host side of the private network once the
// container exists: the loopback forwarders, then the link and the rules.
func (in *Instance) connect(ctx context.Context, services []string) error {
	for _, a := range services {
		if err := in.veth.forward(in.initPID, a); err != nil {
			return err
		}
	}
	return in.veth.up(ctx, in.initPID)
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
		// If this process dies, nspawn halts the container.
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
