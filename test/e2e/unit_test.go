package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/monagent/monagent/rig/instance"
)

// These tests run the shipped systemd unit under real systemd 252, PID 1
// of a systemd-nspawn instance booted from a cached Debian bookworm
// rootfs. awssim runs on the host; the instance shares the host's network.

// rigCache is where the rig keeps what is expensive to build.
func rigCache() string {
	if d := os.Getenv("MONAGENT_RIG_CACHE"); d != "" {
		return d
	}
	return "/var/cache/monagent-rig"
}

func baseRootfs(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	base, err := instance.EnsureRootfs(ctx, rigCache())
	if err != nil {
		t.Fatalf("rootfs: %v", err)
	}
	return base
}

// cloud-init's ordering, as stand-ins: cloud-init.target after
// multi-user.target, cloud-final.service (which runs user-data) wanted by
// it and ordered after multi-user.target.
const (
	cloudInitTarget = `[Unit]
Description=Cloud-init target (stand-in)
DefaultDependencies=no
After=multi-user.target
Wants=cloud-final.service
`
	cloudFinal = `[Unit]
Description=Cloud-init: Final Stage (stand-in: runs user-data)
After=network-online.target multi-user.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/var/lib/cloud/instance/scripts/part-001
RemainAfterExit=yes
TimeoutSec=0
StandardOutput=journal+console
`
)

type unitSetup struct {
	userData bool              // install the cloud-init stand-ins and the user-data script
	dropIn   string            // a drop-in for monagent.service
	manual   bool              // do not enable the unit: the test starts it
	files    map[string]string // more files, path under the root -> executable content
}

// bootWithUnit attaches the volume (as a launch would), then boots an
// instance with monagent installed as the AMI bake installs it, its unit
// enabled, the volume's loop device and by-id link bound in.
func bootWithUnit(t testing.TB, h *host, name string, u unitSetup) *instance.Instance {
	t.Helper()
	dev := attachOnHost(t, h)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return instance.Boot(t, instance.Options{
		Name:  name,
		Base:  baseRootfs(t),
		Binds: []string{dev, filepath.Join(h.root, "dev/disk") + ":/dev/disk"},
		Setup: func(root string) error {
			run(t, filepath.Join(repo, "packaging/install.sh"), bins.monagent, root)
			writeFile(t, filepath.Join(root, "etc/monagent/config.yaml"), readFile(t, h.config))
			writeFile(t, filepath.Join(root, "etc/systemd/system.conf.d/aws.conf"), "[Manager]\nDefaultEnvironment="+
				strings.Join([]string{"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=eu-west-1",
					"AWS_ENDPOINT_URL=" + h.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + h.url}, " ")+"\n")
			if !u.manual {
				enable(t, root, "multi-user.target", "monagent.service")
			}
			for p, content := range u.files {
				writeFile(t, filepath.Join(root, p), content)
				if err := os.Chmod(filepath.Join(root, p), 0o755); err != nil {
					return err
				}
			}
			// The infrastructure half only: these tests are about the
			// unit's namespace and first-boot ordering.
			writeFile(t, filepath.Join(root, "etc/systemd/system/monagent.service.d/until.conf"),
				"[Service]\nExecStart=\nExecStart=/usr/bin/monagent reconcile --config /etc/monagent/config.yaml --until signal\n")
			if u.dropIn != "" {
				writeFile(t, filepath.Join(root, "etc/systemd/system/monagent.service.d/test.conf"), u.dropIn)
			}
			if u.userData {
				writeFile(t, filepath.Join(root, "etc/systemd/system/cloud-init.target"), cloudInitTarget)
				writeFile(t, filepath.Join(root, "etc/systemd/system/cloud-final.service"), cloudFinal)
				enable(t, root, "multi-user.target", "cloud-init.target")
				userData := strings.Replace(readFile(t, filepath.Join(repo, "packaging/user-data.sh")),
					"bootstrap --config /etc/monagent/config.yaml", "bootstrap --config /etc/monagent/config.yaml --until signal", 1)
				writeFile(t, filepath.Join(root, "var/lib/cloud/instance/scripts/part-001"), userData)
				if err := os.Chmod(filepath.Join(root, "var/lib/cloud/instance/scripts/part-001"), 0o755); err != nil {
					return err
				}
			}
			return nil
		},
	})
}

// attachOnHost attaches the volume to the simulated instance through the
// EC2 API before boot, and returns its loop device: a device node made
// after boot would not appear in the instance's /dev.
func attachOnHost(t testing.TB, h *host) string {
	t.Helper()
	_, err := h.ec2().AttachVolume(context.Background(), &ec2.AttachVolumeInput{VolumeId: aws.String(volumeID),
		InstanceId: aws.String(instanceID), Device: aws.String("/dev/xvdf")})
	if err != nil {
		t.Fatal(err)
	}
	var dev string
	waitFor(t, func() bool {
		d, err := filepath.EvalSymlinks(filepath.Join(h.root, byID))
		dev = d
		return err == nil
	})
	return dev
}

func enable(t testing.TB, root, target, unit string) {
	t.Helper()
	link := filepath.Join(root, "etc/systemd/system", target+".wants", unit)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/"+unit, link); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// inside runs argv in the instance's init namespaces: the host, as far as
// the instance's units are concerned.
func inside(t testing.TB, in *instance.Instance, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := in.Exec(ctx, argv[0], argv[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// show reads unit properties.
func show(t testing.TB, in *instance.Instance, unit string) map[string]string {
	t.Helper()
	out := inside(t, in, "systemctl", "show", "-p", "ActiveState,SubState,Result,ExecMainStatus,NRestarts,StatusText", unit)
	props := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			props[k] = v
		}
	}
	return props
}

// The unit's run, in the namespaces systemd gives it, mounts the volume
// where the host sees it: the instance's init finds /data mounted.
func TestUnitMountReachesHost(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	in := bootWithUnit(t, h, "mon-unit-mount", unitSetup{})
	p := show(t, in, "monagent.service")
	if p["Result"] != "success" || p["ExecMainStatus"] != "0" {
		t.Fatalf("monagent.service: %v\n%s", p, inside(t, in, "journalctl", "-b", "-u", "monagent", "-o", "cat"))
	}
	mnt := strings.Fields(inside(t, in, "findmnt", "-n", "-o", "FSTYPE,SOURCE", "/data"))
	if len(mnt) != 2 || mnt[0] != "xfs" {
		t.Fatalf("the instance's init sees %q at /data, want the xfs volume", mnt)
	}
	if !strings.Contains(inside(t, in, "cat", "/etc/fstab"), " /data xfs defaults,nofail 0 2") {
		t.Fatal("no fstab line")
	}
	t.Logf("status: %s", p["StatusText"])
}

// With the sandboxing the unit once had (PrivateTmp=yes gives it a mount
// namespace of its own), monagent refuses with exit 4, on which systemd
// does not restart it; nothing is mounted, nothing formatted.
func TestUnitRefusesPrivateMountNamespace(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	in := bootWithUnit(t, h, "mon-unit-private", unitSetup{dropIn: "[Service]\nPrivateTmp=yes\n"})
	p := show(t, in, "monagent.service")
	if p["ExecMainStatus"] != "4" || p["ActiveState"] != "failed" || p["NRestarts"] != "0" {
		t.Fatalf("monagent.service: %v, want exit 4, failed, not restarting\n%s", p,
			inside(t, in, "journalctl", "-b", "-u", "monagent", "-o", "cat"))
	}
	journal := inside(t, in, "journalctl", "-b", "-u", "monagent", "-o", "cat")
	if !strings.Contains(journal, "mount namespace of its own") || strings.Contains(journal, `"argv":["mkfs`) {
		t.Fatalf("journal:\n%s", journal)
	}
	if out, err := in.Exec(context.Background(), "findmnt", "/data"); err == nil {
		t.Fatalf("something is mounted at /data: %s", out)
	}
}

// First boot with user-data: the unit (wanted by multi-user.target) runs
// before cloud-init's final stage, sends SUCCESS right after the volume;
// user-data's bootstrap then finds the host converged. No ordering cycle,
// exactly one signal.
func TestFirstBootWithUserData(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	in := bootWithUnit(t, h, "mon-first-boot", unitSetup{userData: true})
	if p := show(t, in, "cloud-final.service"); p["Result"] != "success" {
		t.Fatalf("cloud-final: %v\n%s\nboot:\n%s", p, inside(t, in, "journalctl", "-b", "-u", "cloud-final", "-o", "cat"),
			inside(t, in, "journalctl", "-b", "-o", "cat"))
	}
	if p := show(t, in, "monagent.service"); p["Result"] != "success" {
		t.Fatalf("monagent.service: %v", p)
	}
	boot := inside(t, in, "journalctl", "-b", "-o", "cat")
	if strings.Contains(strings.ToLower(boot), "ordering cycle") {
		t.Fatalf("ordering cycle at boot:\n%s", boot)
	}
	unit := inside(t, in, "journalctl", "-b", "-u", "monagent", "-o", "cat")
	userData := inside(t, in, "journalctl", "-b", "-u", "cloud-final", "-o", "cat")
	if !strings.Contains(unit, "cloudformation signal sent") || strings.Contains(userData, "cloudformation signal sent") {
		t.Fatalf("SUCCESS should come from the unit, which runs first:\nunit:\n%s\nuser-data:\n%s", unit, userData)
	}
	if !strings.Contains(userData, `"mode":"bootstrap"`) || !strings.Contains(userData, "run converged") {
		t.Fatalf("user-data's bootstrap did not converge:\n%s", userData)
	}
	if sig := h.signals(); len(sig) != 1 || sig[0] != "Received SUCCESS signal with UniqueId "+instanceID {
		t.Fatalf("signals %q", sig)
	}
	if s := h.stackStatus(); s != "CREATE_COMPLETE" {
		t.Fatalf("stack %s", s)
	}
	// The unit's run converged before user-data's bootstrap started: the
	// boot unit does not hold the signal back behind user-data.
	unitDone := strings.Index(boot, `"msg":"run converged","mode":"reconcile"`)
	bootstrapStart := strings.Index(boot, `"msg":"run start","mode":"bootstrap"`)
	if unitDone < 0 || bootstrapStart < 0 || unitDone > bootstrapStart {
		t.Fatalf("want the unit's reconcile to converge before bootstrap starts:\n%s", boot)
	}
}

// A host with no user-data converges, and signals, from the unit alone.
func TestFirstBootWithoutUserData(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	in := bootWithUnit(t, h, "mon-no-userdata", unitSetup{})
	if p := show(t, in, "monagent.service"); p["Result"] != "success" {
		t.Fatalf("monagent.service: %v", p)
	}
	if sig := h.signals(); len(sig) != 1 || !strings.Contains(sig[0], "SUCCESS") {
		t.Fatalf("signals %q", sig)
	}
	if mnt := inside(t, in, "findmnt", "-n", "-o", "FSTYPE", "/data"); mnt != "xfs" {
		t.Fatalf("/data: %q", mnt)
	}
}

// Stopping the unit while mkfs runs (systemctl stop, a shutdown) lets mkfs
// finish: KillMode=mixed sends SIGTERM to monagent alone, which stops its
// other work but waits for the filesystem it started to be made. The next
// start finds the filesystem and converges without a second mkfs.
func TestUnitStopDuringMkfs(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	slowMkfs := `#!/bin/sh
echo started >>/run/mkfs.log
trap 'echo got-TERM >>/run/mkfs.log; exit 143' TERM
sleep 3 &
wait
echo finished >>/run/mkfs.log
exec /usr/sbin/mkfs.xfs "$@"
`
	in := bootWithUnit(t, h, "mon-stop-mkfs", unitSetup{manual: true, files: map[string]string{"usr/local/sbin/mkfs.xfs": slowMkfs}})
	inside(t, in, "systemctl", "start", "--no-block", "monagent.service")
	waitFor(t, func() bool {
		out, err := in.Exec(context.Background(), "cat", "/run/mkfs.log")
		return err == nil && strings.Contains(string(out), "started")
	})
	inside(t, in, "systemctl", "stop", "monagent.service")
	log := inside(t, in, "cat", "/run/mkfs.log")
	if strings.Contains(log, "got-TERM") || !strings.Contains(log, "finished") {
		t.Fatalf("mkfs was stopped with the unit:\n%s\n%s", log, inside(t, in, "journalctl", "-b", "-u", "monagent", "-o", "cat"))
	}
	if fs := inside(t, in, "blkid", "-p", "-o", "value", "-s", "TYPE", "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0a1b2c3d4e5f60718"); fs != "xfs" {
		t.Fatalf("no filesystem after the stop: %q", fs)
	}
	inside(t, in, "systemctl", "start", "monagent.service")
	if p := show(t, in, "monagent.service"); p["Result"] != "success" {
		t.Fatalf("restart after the stop: %v", p)
	}
	if n := strings.Count(inside(t, in, "cat", "/run/mkfs.log"), "started"); n != 1 {
		t.Fatalf("mkfs ran %d times", n)
	}
}

// The docker step on a host with real systemd: the engine package is
// installed with apt, docker.service is enabled and started through
// systemd's D-Bus API, the user joins the docker group, the plugin is
// downloaded and verified; the inner engine then runs containers. A second
// run changes nothing.
func TestDockerStepUnderSystemd(t *testing.T) {
	dir, sum := plugin(t)
	h := startHost(t, hostOptions{scenario: scenario("", ""), config: "", files: dir})
	u, _ := url.Parse(h.url)
	writeFile(t, h.config, fmt.Sprintf(baseConfig, "30s")+fmt.Sprintf(`docker:
  user: monitor
  compose_plugin:
    version: v5.6.0
    url: %s/_files/docker-compose
    sha256: %q
`, h.url, sum))
	repo, _ := filepath.Abs("../..")
	in := instance.Boot(t, instance.Options{
		Name:         "mon-docker",
		Base:         baseRootfs(t),
		Network:      instance.Veth,
		Docker:       true,
		HostServices: []string{u.Host},
		Setup: func(root string) error {
			run(t, filepath.Join(repo, "packaging/install.sh"), bins.monagent, root)
			writeFile(t, filepath.Join(root, "etc/monagent/config.yaml"), readFile(t, h.config))
			appendFile(t, filepath.Join(root, "etc/passwd"), "monitor:x:1000:1000::/home/monitor:/bin/sh\n")
			appendFile(t, filepath.Join(root, "etc/group"), "monitor:x:1000:\n")
			// As on Amazon Linux, installing a package starts nothing: the
			// step itself must start the engine.
			writeFile(t, filepath.Join(root, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n")
			return os.Chmod(filepath.Join(root, "usr/sbin/policy-rc.d"), 0o755)
		},
	})
	mon := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := in.Exec(ctx, "env", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=eu-west-1",
			"AWS_ENDPOINT_URL="+h.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+h.url,
			"/usr/bin/monagent", "reconcile", "--only", "docker,docker-ready")
		return string(out), err
	}
	out, err := mon()
	if err != nil {
		t.Fatalf("docker step: %v\n%s", err, out)
	}
	for _, want := range []string{`"argv":["apt-get","-q","-y"`, "docker.service enabled and started", "compose plugin installed", "docker ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("the run did not log %q:\n%s", want, out)
		}
	}
	if s := inside(t, in, "systemctl", "is-enabled", "docker.service"); s != "enabled" {
		t.Errorf("docker.service is %s", s)
	}
	if v := inside(t, in, "docker", "compose", "version", "--short"); v != "5.6.0" {
		t.Errorf("docker compose version: %q", v)
	}
	if g := inside(t, in, "id", "-nG", "monitor"); !strings.Contains(g, "docker") {
		t.Errorf("monitor's groups: %q", g)
	}
	// The inner engine runs a container of an image made on the host.
	img, err := exec.Command("docker", "save", "turbot/steampipe:latest").Output()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(in.Root(), "var/tmp/steampipe.tar"), string(img))
	inside(t, in, "docker", "load", "-i", "/var/tmp/steampipe.tar")
	inside(t, in, "docker", "run", "-d", "--name", "probe", "turbot/steampipe:latest", "service", "start", "--foreground")
	if s := inside(t, in, "docker", "inspect", "-f", "{{.State.Status}}", "probe"); s != "running" {
		t.Errorf("container inside: %s", s)
	}
	// Converged: the second run installs nothing and starts nothing.
	out, err = mon()
	if err != nil || strings.Contains(out, "apt-get") || strings.Contains(out, "enabled and started") || strings.Contains(out, "plugin installed") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
}

func appendFile(t testing.TB, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}
