package instance_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"

	"github.com/monagent/monagent/rig/instance"
)

const (
	// stubImage is a small FROM scratch image that rig/images/build.sh
	// builds on the host (a stand-in that answers a PostgreSQL SSLRequest).
	stubImage = "turbot/steampipe:latest"
	stubPort  = "9193"
	// stubContainer is the container the test runs inside the instance.
	stubContainer = "rig-stub"
)

// hostImageTar makes sure the host's Docker engine has stubImage
// (rig/images/build.sh --no-plugin steampipe, which also starts the
// host's dockerd if needed) and saves it to a tar file.
func hostImageTar(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	build, err := filepath.Abs("../images/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := exec.CommandContext(ctx, build, "--no-plugin", "steampipe").CombinedOutput(); err != nil {
		t.Fatalf("%s --no-plugin steampipe: %v\n%s", build, err, out)
	}
	tar := filepath.Join(t.TempDir(), "image.tar")
	if out, err := exec.CommandContext(ctx, "docker", "save", "-o", tar, stubImage).CombinedOutput(); err != nil {
		t.Fatalf("docker save %s on the host: %v\n%s", stubImage, err, out)
	}
	t.Logf("host image %s saved in %s", stubImage, time.Since(start).Round(time.Millisecond))
	return tar
}

// hostHTTP serves text over HTTP on addr on the host until the test ends
// and returns its address.
func hostHTTP(t *testing.T, addr, text string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, text)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// insideCtx runs argv in the instance, bounded by d, and returns its
// trimmed combined output.
func insideCtx(t *testing.T, in *instance.Instance, d time.Duration, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	out, err := in.Exec(ctx, argv[0], argv[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// waitInside polls argv in the instance until it succeeds, for at most d,
// and returns how long that took.
func waitInside(t *testing.T, in *instance.Instance, d time.Duration, argv ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := in.Exec(ctx, argv[0], argv[1:]...)
		cancel()
		if err == nil {
			return time.Since(start)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("still failing after %s: %v\nconsole:\n%s", d, last, in.ConsoleTail(40))
	return 0
}

// sslRequest is a PostgreSQL SSLRequest: the stand-in answers 'N'.
const sslRequest = "\x00\x00\x00\x08\x04\xd2\x16\x2f"

// probeInside checks, from inside the instance, that 127.0.0.1:PORT (the
// port Docker published) answers the stand-in's 'N'.
var probeInside = []string{"bash", "-c",
	`exec 3<>/dev/tcp/127.0.0.1/` + stubPort + ` && printf '\x00\x00\x00\x08\x04\xd2\x16\x2f' >&3 && test "$(head -c1 <&3)" = N`}

// probeFromHost checks the published port from the host, through the
// instance's address.
func probeFromHost(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, sslRequest); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if b[0] != 'N' {
		return fmt.Errorf("answer %q, want N", b)
	}
	return nil
}

// startOverDBus enables and starts unit through the instance's systemd
// over D-Bus, from the host, as monagent's systemdbus does inside, and
// waits for the start job.
func startOverDBus(t *testing.T, in *instance.Instance, unit string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// go-systemd dials DBUS_SYSTEM_BUS_ADDRESS when it is set.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", in.SystemBusAddress())
	conn, err := dbus.NewSystemConnectionContext(ctx)
	if err != nil {
		t.Fatalf("connect to the instance's systemd at %s: %v", in.SystemBusAddress(), err)
	}
	defer conn.Close()
	if _, _, err := conn.EnableUnitFilesContext(ctx, []string{unit}, false, true); err != nil {
		t.Fatalf("enable %s over D-Bus: %v", unit, err)
	}
	if err := conn.ReloadContext(ctx); err != nil {
		t.Fatalf("reload over D-Bus: %v", err)
	}
	done := make(chan string, 1)
	if _, err := conn.StartUnitContext(ctx, unit, "replace", done); err != nil {
		t.Fatalf("start %s over D-Bus: %v", unit, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			out, _ := in.Exec(context.Background(), "journalctl", "-u", unit, "--no-pager", "-n", "40")
			t.Fatalf("start job of %s: %s\n%s", unit, res, out)
		}
	case <-ctx.Done():
		t.Fatalf("start job of %s: %v", unit, ctx.Err())
	}
}

// TestDockerInside installs Debian's docker.io inside an instance with a
// private network, starts it through systemd's D-Bus API, runs a
// container from an image loaded from the host's engine with a published
// port and restart policy unless-stopped, and reboots: Docker and the
// container come back.
func TestDockerInside(t *testing.T) {
	base := baseRootfs(t)
	tar := hostImageTar(t)
	// A server on the host's loopback (like awssim), reached inside at the
	// same address through HostServices.
	loop := hostHTTP(t, "127.0.0.1:0", "hello over the forwarded loopback")

	const name = "rig-inst-docker"
	opts := instance.Options{
		Name:         name,
		Base:         base,
		Network:      instance.Veth,
		HostServices: []string{loop},
		Docker:       true,
		// The host's situation (RIG.md): apt starts no service; docker is
		// started over D-Bus, as monagent's docker step does.
		Setup: func(root string) error {
			p := filepath.Join(root, "usr/sbin/policy-rc.d")
			if err := writeFile(p, "#!/bin/sh\nexit 101\n"); err != nil {
				return err
			}
			return os.Chmod(p, 0o755)
		},
	}
	in := instance.Boot(t, opts)
	t.Logf("instance %s at %s (subnet %s), host end %s at %s, /var/lib/docker from %s",
		in.Name(), in.Addr(), in.Subnet(), in.HostInterface(), in.HostAddr(), in.DockerDir())
	if in.HostAddr() == "127.0.0.1" || in.Addr() == "127.0.0.1" || in.HostInterface() == "" {
		t.Fatalf("a Veth instance: HostAddr %q, Addr %q, HostInterface %q", in.HostAddr(), in.Addr(), in.HostInterface())
	}

	// The network: host0 addressed, default route via the host, DNS, the
	// forwarded loopback server and a server on the host's veth address.
	if got := insideCtx(t, in, time.Minute, "ip", "-4", "-o", "addr", "show", "dev", "host0"); !strings.Contains(got, " "+in.Addr()+"/30 ") {
		t.Errorf("host0 inside: %q, want %s/30", got, in.Addr())
	}
	if got := insideCtx(t, in, time.Minute, "ip", "route", "show", "default"); !strings.Contains(got, "via "+in.HostAddr()+" ") {
		t.Errorf("default route inside: %q, want via %s", got, in.HostAddr())
	}
	if got := insideCtx(t, in, time.Minute, "systemctl", "is-active", "network-online.target"); got != "active" {
		t.Errorf("network-online.target is %q", got)
	}
	if got := insideCtx(t, in, time.Minute, "curl", "-fsS", "--max-time", "10", "http://"+loop+"/"); got != "hello over the forwarded loopback" {
		t.Errorf("curl inside to the host's loopback %s = %q", loop, got)
	}
	onVeth := hostHTTP(t, in.HostAddr()+":0", "hello over the veth link")
	if got := insideCtx(t, in, time.Minute, "curl", "-fsS", "--max-time", "10", "http://"+onVeth+"/"); got != "hello over the veth link" {
		t.Errorf("curl inside to the host's %s = %q", onVeth, got)
	}

	// Debian's docker.io, from Debian's archive, through the host.
	start := time.Now()
	insideCtx(t, in, 10*time.Minute, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "update")
	aptUpdate := time.Since(start)
	start = time.Now()
	insideCtx(t, in, 15*time.Minute, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y", "install", "docker.io")
	aptInstall := time.Since(start)
	if got := insideCtx(t, in, time.Minute, "sh", "-c", "systemctl is-active docker || true"); got == "active" {
		t.Logf("note: apt started docker.service despite policy-rc.d")
	}

	start = time.Now()
	startOverDBus(t, in, "docker.service")
	waitInside(t, in, time.Minute, "docker", "info")
	toInfo := time.Since(start)
	t.Logf("docker info inside:\n%s", insideCtx(t, in, time.Minute, "docker", "info", "--format",
		"{{.ServerVersion}} driver={{.Driver}} cgroup={{.CgroupDriver}} v{{.CgroupVersion}} root={{.DockerRootDir}}"))
	if got := insideCtx(t, in, time.Minute, "docker", "info", "--format", "{{.Driver}}"); got != "overlay2" {
		t.Errorf("the engine inside uses storage driver %q, want overlay2", got)
	}

	// An image from the host's engine, a container with a published port
	// and a restart policy.
	if err := copyFile(tar, filepath.Join(in.Root(), "root/image.tar")); err != nil {
		t.Fatal(err)
	}
	insideCtx(t, in, 5*time.Minute, "docker", "load", "-i", "/root/image.tar")
	id := insideCtx(t, in, 2*time.Minute, "docker", "run", "-d", "--name", stubContainer, "--restart", "unless-stopped",
		"-p", stubPort+":"+stubPort, stubImage,
		"service", "start", "--foreground", "--database-listen", "network", "--database-port", stubPort)
	waitInside(t, in, 30*time.Second, probeInside...)
	if err := probeFromHost(net.JoinHostPort(in.Addr(), stubPort)); err != nil {
		t.Errorf("the published port from the host, at %s: %v", net.JoinHostPort(in.Addr(), stubPort), err)
	}
	checkContainerCgroups(t, in, id)

	poweroff(t, in)
	if _, err := net.InterfaceByName(in.HostInterface()); err == nil {
		t.Errorf("the host end %s remains after Poweroff", in.HostInterface())
	}
	checkNoRules(t, in.Subnet())

	// Reboot: docker (enabled) starts at boot, the container with it.
	start = time.Now()
	opts.Base, opts.Root, opts.Setup = "", in.Root(), nil
	in = instance.Boot(t, opts)
	if got := insideCtx(t, in, time.Minute, "systemctl", "is-active", "docker"); got != "active" {
		t.Fatalf("after reboot docker.service is %q\n%s", got, insideCtx(t, in, time.Minute, "journalctl", "-u", "docker", "--no-pager", "-n", "40"))
	}
	rebootToActive := time.Since(start)
	waitInside(t, in, 30*time.Second, "sh", "-c", `test "$(docker inspect -f '{{.State.Running}}' `+stubContainer+`)" = true`)
	waitInside(t, in, 30*time.Second, probeInside...)
	rebootToContainer := time.Since(start)
	if err := probeFromHost(net.JoinHostPort(in.Addr(), stubPort)); err != nil {
		t.Errorf("after reboot, the published port from the host, at %s: %v", net.JoinHostPort(in.Addr(), stubPort), err)
	}
	if got := insideCtx(t, in, time.Minute, "curl", "-fsS", "--max-time", "10", "http://"+loop+"/"); got != "hello over the forwarded loopback" {
		t.Errorf("after reboot, curl inside to the host's loopback %s = %q", loop, got)
	}
	start = time.Now()
	poweroff(t, in)
	poweroff := time.Since(start)
	checkNoRules(t, in.Subnet())

	t.Logf("TIMING apt-get update %s, apt-get install docker.io %s, D-Bus start to docker info %s, reboot (Boot) to docker active %s, to the container answering %s, poweroff with a container %s",
		aptUpdate.Round(time.Millisecond), aptInstall.Round(time.Millisecond), toInfo.Round(time.Millisecond),
		rebootToActive.Round(time.Millisecond), rebootToContainer.Round(time.Millisecond), poweroff.Round(time.Millisecond))
}

// checkContainerCgroups checks that the inner engine put the container's
// cgroups below the instance's own cgroup on the host, not beside the
// host engine's /docker.
func checkContainerCgroups(t *testing.T, in *instance.Instance, id string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", in.InitPID()))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || (parts[1] != "cpu" && parts[1] != "memory" && parts[1] != "pids") {
			continue
		}
		mine := filepath.Join("/sys/fs/cgroup", parts[1], parts[2], "docker", id)
		if _, err := os.Stat(mine); err != nil {
			t.Errorf("the container's %s cgroup is not below the instance's: %v", parts[1], err)
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", parts[1], "docker", id)); err == nil {
			t.Errorf("the container's %s cgroup is beside the host engine's, in /docker", parts[1])
		}
		checked++
	}
	if checked != 3 {
		t.Errorf("found %d of the cpu, memory and pids hierarchies in /proc/%d/cgroup:\n%s", checked, in.InitPID(), b)
	}
}

// checkNoRules checks that no iptables rule for subnet remains.
func checkNoRules(t *testing.T, subnet string) {
	t.Helper()
	for _, table := range []string{"filter", "nat"} {
		if out := onHost(t, "iptables", "-w", "30", "-t", table, "-S"); strings.Contains(out, subnet) {
			t.Errorf("iptables -t %s still has rules for %s:\n%s", table, subnet, out)
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestVethNetwork boots two instances with private networks at once:
// distinct subnets and host ends, DNS, the host reached at HostAddr and
// through forwarded loopback addresses (at boot and later), and nothing
// left on the host once they stop, including a rule a killed run left.
func TestVethNetwork(t *testing.T) {
	base := baseRootfs(t)

	// A rule as a killed run would leave it for the first subnet: if this
	// test's first instance takes that subnet, Boot removes it.
	const stale = "10.213.0.0/30"
	staleRule := []string{"-i", "ve-rig-stale", "-m", "comment", "--comment", "monagent-rig:" + stale, "-j", "ACCEPT"}
	onHost(t, append([]string{"iptables", "-w", "30", "-A", "FORWARD"}, staleRule...)...)
	t.Cleanup(func() { // in case no instance took that subnet
		exec.Command("iptables", append([]string{"-w", "30", "-D", "FORWARD"}, staleRule...)...).Run()
	})

	atBoot := hostHTTP(t, "127.0.0.1:0", "forwarded at boot")
	a := instance.Boot(t, instance.Options{Name: "rig-inst-veth-a", Base: base, Network: instance.Veth, HostServices: []string{atBoot}})
	b := instance.Boot(t, instance.Options{Name: "rig-inst-veth-b", Base: base, Network: instance.Veth, HostServices: []string{atBoot}})
	if a.Subnet() == b.Subnet() || a.HostInterface() == b.HostInterface() {
		t.Fatalf("two instances share subnet %s / %s or host end %s / %s", a.Subnet(), b.Subnet(), a.HostInterface(), b.HostInterface())
	}
	if a.Subnet() == stale && strings.Contains(onHost(t, "iptables", "-w", "30", "-S", "FORWARD"), "ve-rig-stale") {
		t.Errorf("the rule a killed run left for %s is still there", stale)
	}
	later := hostHTTP(t, "127.0.0.1:0", "forwarded later")
	for _, in := range []*instance.Instance{a, b} {
		if err := in.ForwardHost(later); err != nil {
			t.Fatal(err)
		}
		if got := inside(t, in, "hostname"); got != in.Name() {
			t.Errorf("hostname in %s = %q", in.Name(), got)
		}
		if got := inside(t, in, "getent", "hosts", "deb.debian.org"); got == "" {
			t.Errorf("%s cannot resolve deb.debian.org", in.Name())
		}
		onVeth := hostHTTP(t, in.HostAddr()+":0", "on "+in.HostAddr())
		for url, want := range map[string]string{
			"http://" + atBoot + "/": "forwarded at boot",
			"http://" + later + "/":  "forwarded later",
			"http://" + onVeth + "/": "on " + in.HostAddr(),
		} {
			if got := inside(t, in, "curl", "-fsS", "--max-time", "10", url); got != want {
				t.Errorf("curl %s in %s = %q, want %q", url, in.Name(), got, want)
			}
		}
	}

	ifname, subnet := a.HostInterface(), a.Subnet()
	poweroff(t, a)
	if _, err := net.InterfaceByName(ifname); err == nil {
		t.Errorf("the host end %s remains after Poweroff", ifname)
	}
	checkNoRules(t, subnet)
	if got := inside(t, b, "curl", "-fsS", "--max-time", "10", "http://"+atBoot+"/"); got != "forwarded at boot" {
		t.Errorf("after the other instance stopped, curl in %s = %q", b.Name(), got)
	}
}
