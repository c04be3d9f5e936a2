package instance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Network is how an instance is connected.
type Network int

const (
	// HostNetwork shares the host's network namespace: the default. The
	// host's 127.0.0.1 is the instance's.
	HostNetwork Network = iota

	// Veth gives the instance a network namespace of its own
	// (systemd-nspawn --network-veth) with a /30 subnet of 10.213.0.0/16:
	// the host end of the link ("ve-…") is 10.213.N.1, the instance's
	// host0 10.213.N.2, configured statically by systemd-networkd inside
	// (network-online.target then waits for it), with the host as gateway
	// and the host's DNS servers. The host masquerades the subnet and
	// forwards it, so the instance reaches what the host reaches
	// (Debian's archive). A Docker engine inside needs it.
	Veth
)

func (n Network) String() string {
	switch n {
	case HostNetwork:
		return "host"
	case Veth:
		return "veth"
	}
	return "Network(" + strconv.Itoa(int(n)) + ")"
}

const (
	// subnetPrefix is the /16 the instances' /30 subnets come from:
	// 10.213.N.0/30 for N in 0..255.
	subnetPrefix = "10.213."
	// netLockDir holds one lock file per subnet: an instance holds an
	// flock on its subnet's file while it runs, so that instances of
	// concurrent test processes never share a subnet.
	netLockDir = "/run/monagent-rig/net"
	// ruleTag starts the iptables comment on every rule an instance adds;
	// the subnet follows, so rules a killed run left behind are found
	// and removed when the subnet is taken again.
	ruleTag = "monagent-rig:"
	// guestNetworkFile is the systemd-networkd file inside: it sorts
	// before 80-container-host0.network (DHCP), which would otherwise
	// match host0.
	guestNetworkFile = "etc/systemd/network/10-rig-host0.network"
	// linkWait bounds the wait for the host end of the veth link to
	// appear, and for it to go away after the instance stopped.
	linkWait = 10 * time.Second
	// dialTimeout bounds a forwarded connection's dial to the host.
	dialTimeout = 10 * time.Second
)

// vethNet is an instance's private network: its subnet (held by an flock
// until the instance stops), the host end of its veth link, the iptables
// rules added for it and the loopback forwarders into it.
type vethNet struct {
	subnet netip.Prefix // 10.213.N.0/30
	host   netip.Addr   // 10.213.N.1, the host end
	guest  netip.Addr   // 10.213.N.2, host0 inside
	dns    []netip.Addr // the host's name servers
	lock   *os.File
	ifname string   // host end, once known
	added  []ipRule // rules in effect, in the order added

	mu  sync.Mutex
	fwd []*forwarder
}

// ipRule is one iptables rule: table, chain and the match/target part.
type ipRule struct {
	table, chain string
	insert       bool // -I (first in the chain) rather than -A
	spec         []string
}

func (r ipRule) argv(op string) []string {
	return append([]string{"iptables", "-w", "30", "-t", r.table, op, r.chain}, r.spec...)
}

// allocSubnet takes the first free 10.213.N.0/30: one whose lock file no
// other process holds and that no host interface has an address in. It
// removes iptables rules a killed run left for that subnet.
func allocSubnet(ctx context.Context) (*vethNet, error) {
	if err := os.MkdirAll(netLockDir, 0o755); err != nil {
		return nil, fmt.Errorf("subnet lock directory: %w", err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	for n := 0; n < 256; n++ {
		subnet := netip.MustParsePrefix(subnetPrefix + strconv.Itoa(n) + ".0/30")
		if inUse(subnet, addrs) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(netLockDir, subnet.Addr().String()+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("subnet lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue
			}
			return nil, fmt.Errorf("lock subnet %s: %w", subnet, err)
		}
		v := &vethNet{subnet: subnet, host: subnet.Addr().Next(), lock: f}
		v.guest = v.host.Next()
		if err := removeStaleRules(ctx, subnet); err != nil {
			f.Close()
			return nil, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("no free subnet in %s0.0/16: 256 instances hold one (lock files in %s)", subnetPrefix, netLockDir)
}

// inUse reports whether any of the host's addresses lies in subnet.
func inUse(subnet netip.Prefix, addrs []net.Addr) bool {
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if ok && subnet.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// comment is the iptables comment on the rules of subnet.
func comment(subnet netip.Prefix) string { return ruleTag + subnet.String() }

// removeStaleRules deletes the rules tagged with subnet's comment from the
// chains instances add to.
func removeStaleRules(ctx context.Context, subnet netip.Prefix) error {
	want := comment(subnet)
	for _, tc := range [][2]string{{"filter", "FORWARD"}, {"nat", "POSTROUTING"}} {
		out, err := runCommand(ctx, "iptables", "-w", "30", "-t", tc[0], "-S", tc[1])
		if err != nil {
			return fmt.Errorf("list iptables rules: %w", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "-A" || !hasComment(f, want) {
				continue
			}
			for i := range f {
				f[i] = strings.Trim(f[i], `"`)
			}
			argv := append([]string{"iptables", "-w", "30", "-t", tc[0], "-D"}, f[1:]...)
			if _, err := runCommand(ctx, argv...); err != nil {
				return fmt.Errorf("remove a rule a killed run left for %s: %w", subnet, err)
			}
		}
	}
	return nil
}

// hasComment reports whether the fields of an `iptables -S` line carry
// the comment c.
func hasComment(fields []string, c string) bool {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "--comment" && strings.Trim(fields[i+1], `"`) == c {
			return true
		}
	}
	return false
}

// hostDNS returns the host's IPv4 name servers that an instance can reach
// through its gateway: those of /etc/resolv.conf that are not loopback,
// else systemd-resolved's upstream servers.
func hostDNS() ([]netip.Addr, error) {
	var tried []string
	for _, p := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		f, err := os.Open(p)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		var servers []netip.Addr
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 || fields[0] != "nameserver" {
				continue
			}
			a, err := netip.ParseAddr(fields[1])
			if err == nil && a.Is4() && !a.IsLoopback() && !a.IsUnspecified() {
				servers = append(servers, a)
			}
		}
		f.Close()
		if len(servers) > 0 {
			return servers, nil
		}
		tried = append(tried, p+": no IPv4 name server but loopback ones")
	}
	return nil, fmt.Errorf("no name server an instance could reach: %s", strings.Join(tried, "; "))
}

// prepareRoot writes the instance's network configuration into root:
// the systemd-networkd file for host0, networkd and its wait-online
// service enabled (but only where there is a host0, so a later boot of
// the same root on the host's network is unaffected), and
// /etc/resolv.conf with the host's name servers (nspawn leaves it alone
// with a private network).
func (v *vethNet) prepareRoot(root string) error {
	dns, err := hostDNS()
	if err != nil {
		return err
	}
	v.dns = dns
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by rig/instance for this boot (Network: Veth).
[Match]
Name=host0

[Network]
Address=%s/30
Gateway=%s
`, v.guest, v.host)
	for _, d := range dns {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	// Without these, network-online.target waits for an IPv6 link-local
	// address and router advertisements that never come (13 s).
	b.WriteString("LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
	files := map[string]string{
		guestNetworkFile: b.String(),
		"etc/systemd/system/systemd-networkd.service.d/50-rig-instance.conf":             vethOnly,
		"etc/systemd/system/systemd-networkd.socket.d/50-rig-instance.conf":              vethOnly,
		"etc/systemd/system/systemd-networkd-wait-online.service.d/50-rig-instance.conf": vethOnly + waitOnline,
	}
	var resolv strings.Builder
	resolv.WriteString("# Written by rig/instance: the host's name servers.\n")
	for _, d := range dns {
		fmt.Fprintf(&resolv, "nameserver %s\n", d)
	}
	files["etc/resolv.conf"] = resolv.String()
	for rel, content := range files {
		if err := writeRootFile(root, rel, content, 0o644); err != nil {
			return err
		}
	}
	// mkrootfs.sh masks wait-online (a boot on the host's network has no
	// link of its own to wait for); here it makes network-online.target
	// mean host0 is configured.
	if err := unmask(root, "systemd-networkd-wait-online.service"); err != nil {
		return err
	}
	// network-online.target is part of every boot, as on a cloud image
	// (cloud-init pulls it in), so that a running system has its network
	// configured.
	for _, tu := range [][2]string{
		{"multi-user.target", "systemd-networkd.service"},
		{"multi-user.target", "network-online.target"},
		{"sockets.target", "systemd-networkd.socket"},
		{"network-online.target", "systemd-networkd-wait-online.service"},
	} {
		if err := enableUnit(root, tu[0], "/lib/systemd/system/"+tu[1]); err != nil {
			return err
		}
	}
	return nil
}

const (
	// vethOnly keeps networkd off on a boot of the same root on the host's
	// network, where there is no host0.
	vethOnly = "# rig/instance: only with a private network (Network: Veth).\n[Unit]\nConditionPathExists=/sys/class/net/host0\n"
	// waitOnline waits for host0 only, and boundedly.
	waitOnline = "\n[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --interface=host0 --timeout=30\n"
)

// up configures the host side once the container exists: finds the host
// end of the veth link, addresses it and brings it up, and adds the
// forwarding and masquerading rules.
func (v *vethNet) up(ctx context.Context, initPID int) error {
	ifname, err := hostEnd(ctx, initPID)
	if err != nil {
		return err
	}
	v.ifname = ifname
	if err := ensureForwarding(); err != nil {
		return err
	}
	for _, argv := range [][]string{
		{"ip", "addr", "add", netip.PrefixFrom(v.host, 30).String(), "dev", ifname},
		{"ip", "link", "set", "dev", ifname, "up"},
	} {
		if _, err := runCommand(ctx, argv...); err != nil {
			return fmt.Errorf("configure the host end of the veth link: %w", err)
		}
	}
	c := []string{"-m", "comment", "--comment", comment(v.subnet)}
	rules := []ipRule{
		// The host's dockerd sets FORWARD's policy to DROP.
		{table: "filter", chain: "FORWARD", insert: true, spec: append([]string{"-i", ifname}, append(c, "-j", "ACCEPT")...)},
		{table: "filter", chain: "FORWARD", insert: true, spec: append([]string{"-o", ifname}, append(c, "-j", "ACCEPT")...)},
		{table: "nat", chain: "POSTROUTING", spec: append([]string{"-s", v.subnet.String(), "!", "-o", ifname}, append(c, "-j", "MASQUERADE")...)},
	}
	for _, r := range rules {
		op := "-A"
		if r.insert {
			op = "-I"
		}
		if _, err := runCommand(ctx, r.argv(op)...); err != nil {
			return fmt.Errorf("add an iptables rule for the instance's subnet %s: %w", v.subnet, err)
		}
		v.added = append(v.added, r)
	}
	return nil
}

// ensureForwarding turns on IPv4 forwarding on the host if it is off (the
// host's dockerd turns it on too; it is left on).
func ensureForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("turn on IPv4 forwarding: %w", err)
	}
	return nil
}

// hostEnd returns the name of the host end of the container's host0
// link (nspawn names it ve-NAME, shortened with a hash when long). It
// waits for host0 to appear.
var peerIndex = regexp.MustCompile(`^\d+:\s+host0@if(\d+):`)

func hostEnd(ctx context.Context, initPID int) (string, error) {
	deadline := time.Now().Add(linkWait)
	netns := "--net=/proc/" + strconv.Itoa(initPID) + "/ns/net"
	for {
		out, err := runCommand(ctx, "nsenter", netns, "--", "ip", "-o", "link", "show", "dev", "host0")
		if err == nil {
			m := peerIndex.FindSubmatch(out)
			if m == nil {
				return "", fmt.Errorf("find the host end of host0: unexpected `ip -o link show dev host0`: %q", out)
			}
			idx, _ := strconv.Atoi(string(m[1]))
			ifi, err := net.InterfaceByIndex(idx)
			if err != nil {
				return "", fmt.Errorf("host end of host0 (interface index %d): %w", idx, err)
			}
			return ifi.Name, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("host0 did not appear in the instance within %s: %w", linkWait, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for host0 in the instance: %w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// down undoes up once the instance has stopped: closes the forwarders
// (their listening sockets keep the instance's network namespace, and
// with it the veth link, alive), waits for the host end to go away
// (deleting it if it stays), removes the rules and releases the subnet.
func (v *vethNet) down() error {
	var errs []error
	v.closeForwarders()
	if v.ifname != "" {
		if err := waitLinkGone(v.ifname); err != nil {
			errs = append(errs, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := len(v.added) - 1; i >= 0; i-- {
		if _, err := runCommand(ctx, v.added[i].argv("-D")...); err != nil {
			errs = append(errs, fmt.Errorf("remove iptables rule: %w", err))
		}
	}
	v.added = nil
	// Whatever a failed up added before it failed.
	if err := removeStaleRules(ctx, v.subnet); err != nil {
		errs = append(errs, err)
	}
	if v.lock != nil {
		v.lock.Close() // releases the flock; the file stays (see allocSubnet)
		v.lock = nil
	}
	return errors.Join(errs...)
}

// waitLinkGone waits for a host interface to disappear (the kernel
// deletes a veth pair with the namespace that holds its other end,
// shortly after the last process in it exits); after linkWait it deletes
// it.
func waitLinkGone(ifname string) error {
	deadline := time.Now().Add(linkWait)
	for time.Now().Before(deadline) {
		if _, err := net.InterfaceByName(ifname); err != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := runCommand(ctx, "ip", "link", "delete", "dev", ifname); err != nil {
		if _, gone := net.InterfaceByName(ifname); gone != nil {
			return nil
		}
		return fmt.Errorf("the instance's veth link %s stayed after it stopped: %w", ifname, err)
	}
	return fmt.Errorf("the instance's veth link %s stayed %s after it stopped: deleted it", ifname, linkWait)
}

// forwarder accepts connections on an address inside the instance's
// network namespace and relays each to the same address on the host.
type forwarder struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// listenInNetns listens on addr (TCP) in the network namespace of pid.
// The socket is made on an OS thread that joins that namespace and then
// returns to its own. That thread must not end: a thread that ends sends
// the parent-death signal to the children it started (os/exec starts
// systemd-nspawn with Pdeathsig), and Go ends a thread whose goroutine
// exits while locked to it. So if the thread cannot return to its
// namespace, its goroutine blocks for good instead of exiting.
func listenInNetns(pid int, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer own.Close()
		ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter the network namespace of PID %d: %w", pid, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		if rerr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); rerr != nil {
			ch <- result{ln, err}
			select {} // keep this thread, in the wrong namespace, out of use
		}
		runtime.UnlockOSThread()
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.conns == nil { // closed
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.relay(c)
	}
}

func (f *forwarder) relay(in net.Conn) {
	defer f.wg.Done()
	defer f.forget(in)
	out, err := net.DialTimeout("tcp", f.target, dialTimeout)
	if err != nil {
		in.Close()
		return
	}
	if !f.track(out) {
		out.Close()
		in.Close()
		return
	}
	defer f.forget(out)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) forget(c net.Conn) {
	c.Close()
	f.mu.Lock()
	if f.conns != nil {
		delete(f.conns, c)
	}
	f.mu.Unlock()
}

// close stops accepting, closes every relayed connection and waits
// (boundedly) for the relays to end.
func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

func (v *vethNet) closeForwarders() {
	v.mu.Lock()
	fwd := v.fwd
	v.fwd = nil
	v.mu.Unlock()
	for _, f := range fwd {
		f.close()
	}
}

// forward makes addr, a loopback address of the host, reachable at the
// same address inside the instance.
func (v *vethNet) forward(initPID int, addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("forward %q into the instance: want IP:PORT: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() || ap.Port() == 0 {
		return fmt.Errorf("forward %q into the instance: want a loopback address and a port", addr)
	}
	ln, err := listenInNetns(initPID, addr)
	if err != nil {
		return fmt.Errorf("forward %s into the instance: listen inside: %w", addr, err)
	}
	f := &forwarder{ln: ln, target: addr, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	v.mu.Lock()
	v.fwd = append(v.fwd, f)
	v.mu.Unlock()
	return nil
}

// writeRootFile writes content to rel under root, creating directories.
// A symbolic link in its place is replaced, never followed (it would
// resolve on the host).
func writeRootFile(root, rel, content string, mode os.FileMode) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s in the instance: %w", rel, err)
	}
	if fi, err := os.Lstat(p); err == nil && !fi.Mode().IsRegular() {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("write %s in the instance: %w", rel, err)
		}
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		return fmt.Errorf("write %s in the instance: %w", rel, err)
	}
	return os.Chmod(p, mode)
}

// enableUnit links unit (an absolute path inside) into target's .wants
// directory under root, as systemctl enable would.
func enableUnit(root, target, unit string) error {
	wants := filepath.Join(root, "etc/systemd/system", target+".wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return fmt.Errorf("enable %s: %w", filepath.Base(unit), err)
	}
	link := filepath.Join(wants, filepath.Base(unit))
	if dest, err := os.Readlink(link); err == nil && dest == unit {
		return nil
	}
	_ = os.Remove(link)
	if err := os.Symlink(unit, link); err != nil {
		return fmt.Errorf("enable %s: %w", filepath.Base(unit), err)
	}
	return nil
}

// unmask removes a mask (a link to /dev/null) of unit under root.
func unmask(root, unit string) error {
	p := filepath.Join(root, "etc/systemd/system", unit)
	if dest, err := os.Readlink(p); err == nil && dest == "/dev/null" {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("unmask %s: %w", unit, err)
		}
	}
	return nil
}

// needTools checks for the host tools the Veth network needs.
func needTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("Network: Veth needs %s on the host: %w", n, err)
		}
	}
	return nil
}
