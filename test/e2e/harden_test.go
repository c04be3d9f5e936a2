package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/monagent/monagent/internal/ebs"
)

// A run in a mount namespace of its own (what PrivateTmp= gives a systemd
// unit; unshare -m here) would mount the volume where the host never sees
// it. monagent refuses, permanently, before touching the disk.
func TestPrivateMountNamespaceIsRefused(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	cmd := h.command([]string{"unshare", "--mount", "--propagation", "slave"}, "reconcile")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if code := exitCode(err); code != 4 || !strings.Contains(stderr.String(), "mount namespace of its own") ||
		!strings.Contains(stderr.String(), "PrivateTmp=") {
		t.Fatalf("exit %d, want 4 naming the namespace and the unit directives:\n%s\n%s", code, stderr.String(), stdout.String())
	}
	if m, _ := ebs.MountAt(filepath.Join(h.root, "data")); m != nil {
		t.Fatalf("the host sees a mount: %+v", m)
	}
	if strings.Contains(stdout.String(), `"argv":["mkfs`) || strings.Contains(stdout.String(), `"argv":["mount"`) {
		t.Fatalf("the disk was touched:\n%s", stdout.String())
	}
	// The same host converges from the host's namespace.
	h.mustConverge("reconcile")
	if m, _ := ebs.MountAt(filepath.Join(h.root, "data")); m == nil {
		t.Fatal("not mounted from the host's namespace")
	}
}

// A corrupt state file is moved aside, 0600, with a warning naming both
// paths; the run re-checks the host and converges. CloudFormation's
// "cannot be signaled" keeps the lost signal memo from mattering.
func TestCorruptStateIsMovedAside(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	h.mustConverge("bootstrap")
	statePath := filepath.Join(h.root, "var/lib/monagent/state.json")
	garbage := `{"version":1,"steps":{"vol`
	writeFile(t, statePath, garbage)

	r := h.mustConverge("bootstrap")
	matches, _ := filepath.Glob(statePath + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("moved-aside files: %v", matches)
	}
	fi, err := os.Stat(matches[0])
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("moved-aside file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(matches[0]); string(b) != garbage {
		t.Fatalf("moved-aside content %q", b)
	}
	if !strings.Contains(r.stdout, statePath) || !strings.Contains(r.stdout, matches[0]) || !strings.Contains(r.stdout, `"level":"warn"`) {
		t.Fatalf("no warning naming both paths:\n%s", r.stdout)
	}
	if sig := h.signals(); len(sig) != 1 {
		t.Fatalf("signals %q: the lost memo led to a second signal", sig)
	}
	if st := h.mustConverge("status", "--json"); strings.Contains(st.stdout, `"failed"`) {
		t.Fatalf("status:\n%s", st.stdout)
	}
}

// A no-op reconcile on a converged host reads IMDS and one SSM parameter,
// nothing else; during an AWS outage (SSM throttled, EC2 answering 503) it
// still converges, with a warning instead of a failure.
func TestConvergedHostSurvivesAWSOutage(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	h.mustConverge("bootstrap")
	fstab := h.readFstab()

	h.clearCalls()
	r := h.mustConverge("reconcile")
	n := h.countCalls()
	t.Logf("no-op reconcile: %v wall, calls %v", r.elapsed, n)
	if n["ssm"] != 1 || n["ec2"] != 0 || n["cloudformation"] != 0 || n["s3"] != 0 {
		t.Fatalf("a no-op reconcile made AWS calls %v; want IMDS and one SSM read", n)
	}

	h.setFault("ssm.*", `{"count":-1,"status":400,"code":"ThrottlingException","message":"Rate exceeded"}`)
	h.setFault("ec2.*", `{"count":-1,"status":503,"code":"Unavailable","message":"Service Unavailable"}`)
	h.clearCalls()
	r = h.monagent("reconcile")
	n = h.countCalls()
	t.Logf("reconcile during an outage: exit %d, %v wall, calls %v", r.code, r.elapsed, n)
	if r.code != 0 {
		t.Fatalf("exit %d during an outage of a converged host:\n%s\n%s", r.code, r.stderr, r.stdout)
	}
	if !strings.Contains(r.stdout, "volume id parameter unreadable") || n["ec2"] != 0 {
		t.Fatalf("want a warning and no EC2 call (calls %v):\n%s", n, r.stdout)
	}
	st := h.mustConverge("status")
	if !strings.Contains(st.stdout, "could not read /monitoring-production/ebs/volume-id") {
		t.Fatalf("status does not show the warning:\n%s", st.stdout)
	}
	if h.readFstab() != fstab {
		t.Fatal("fstab changed")
	}

	// Not converged (unmounted) and AWS down: that is a failure, retried.
	run(t, "umount", filepath.Join(h.root, "data"))
	if r := h.monagent("reconcile"); r.code != 1 || !strings.Contains(r.stderr, "ThrottlingException") {
		t.Fatalf("exit %d, want 1 naming the SSM error:\n%s", r.code, r.stderr)
	}
	h.clearFault("ssm.*")
	h.clearFault("ec2.*")
	h.mustConverge("reconcile")
}

// During bootstrap, a failure outside any step once the instance is known
// (here the run lock not obtained) also sends FAILURE; once SUCCESS is
// settled for the instance, nothing more is sent.
func TestBootstrapLockTimeoutSignalsFailure(t *testing.T) {
	for _, converged := range []bool{false, true} {
		name := "first boot"
		if converged {
			name = "after SUCCESS"
		}
		t.Run(name, func(t *testing.T) {
			h := newHost(t, scenario("", ""), "30s")
			if converged {
				h.mustConverge("bootstrap")
			}
			h.holdLock(t)

			r := h.monagent("--lock-timeout", "300ms", "bootstrap")
			if r.code != 3 {
				t.Fatalf("exit %d, want 3:\n%s", r.code, r.stderr)
			}
			sig := h.signals()
			switch {
			case !converged && (len(sig) != 1 || !strings.Contains(sig[0], "FAILURE")):
				t.Fatalf("want one FAILURE signal, got %q", sig)
			case converged && (len(sig) != 1 || !strings.Contains(sig[0], "SUCCESS")):
				t.Fatalf("want the one SUCCESS signal only, got %q", sig)
			}
		})
	}
}

// A stack that rolled back answers "cannot be signaled"; that is not a
// success: the step records it as not awaited, and status says so.
func TestRolledBackStackIsNotASuccess(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	_, err := h.cfn().SignalResource(context.Background(), &cloudformation.SignalResourceInput{
		StackName: aws.String(stackName), LogicalResourceId: aws.String("MonitoringAsg"),
		UniqueId: aws.String("i-0fedcba9876543210"), Status: cfntypes.ResourceSignalStatusFailure})
	if err != nil {
		t.Fatal(err)
	}
	r := h.mustConverge("bootstrap")
	if !strings.Contains(r.stdout, "rolled back or failed") {
		t.Fatalf("no warning that the signal was not counted:\n%s", r.stdout)
	}
	st := h.mustConverge("status", "--json")
	if !strings.Contains(st.stdout, `"outcome": "not-awaited"`) || !strings.Contains(st.stdout, "SUCCESS was not counted") {
		t.Fatalf("status:\n%s", st.stdout)
	}
}

// SIGTERM while a command runs asks that command to stop with SIGTERM (a
// package manager must not be killed mid-write), and the step is recorded
// as interrupted.
func TestSigtermDuringCommand(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	h.writeConfig("packages:\n  update: true\n")
	writeFile(t, filepath.Join(h.root, "etc/os-release"), "ID=debian\n")
	bin := t.TempDir()
	started, gotTerm := filepath.Join(bin, "started"), filepath.Join(bin, "got-term")
	writeExecutable(t, filepath.Join(bin, "apt-get"), "#!/bin/sh\ntrap 'echo term >"+gotTerm+"; exit 143' TERM\ntouch "+started+"\nwhile :; do sleep 0.05; done\n")
	cmd := h.command(nil, "reconcile")
	cmd.Env = append(cmd.Env, "PATH="+bin+":"+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(started); return err == nil })
	stop := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if d := time.Since(stop); d > 5*time.Second {
		t.Fatalf("took %v to stop after SIGTERM", d)
	}
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
	if b, err := os.ReadFile(gotTerm); err != nil || strings.TrimSpace(string(b)) != "term" {
		t.Fatalf("the package manager did not get SIGTERM: %q %v\n%s", b, err, out.String())
	}
	st := h.mustConverge("status", "--json")
	if !strings.Contains(st.stdout, `"interrupted"`) {
		t.Fatalf("packages step not recorded as interrupted:\n%s", st.stdout)
	}
}

// Every line monagent writes goes through one redaction point: a
// SecureString it read does not reach the final error line, the logs or
// the state file.
func TestSecretsAreRedactedEverywhere(t *testing.T) {
	const secret = "s3cr3t-not-a-volume-id"
	scen := strings.Replace(scenario("", ""), "value: "+volumeID+", type: String", "value: "+secret+", type: SecureString", 1)
	h := newHost(t, scen, "30s")
	r := h.monagent("reconcile")
	if r.code != 4 {
		t.Fatalf("exit %d, want 4 (not a volume id):\n%s", r.code, r.stderr)
	}
	state, _ := os.ReadFile(filepath.Join(h.root, "var/lib/monagent/state.json"))
	for where, text := range map[string]string{"stderr": r.stderr, "stdout": r.stdout, "state": string(state)} {
		if strings.Contains(text, secret) {
			t.Errorf("%s holds the secret:\n%s", where, text)
		}
	}
	if !strings.Contains(r.stderr, "[REDACTED]") || !strings.Contains(r.stderr, "is not an EBS volume id") {
		t.Fatalf("the final error should show the mask where the value was:\n%s", r.stderr)
	}
}

// smoke passes only when the data volume's own filesystem is mounted at
// the mount point, not anything at all. (The host runs no stack: only the
// infrastructure's lines are of interest here.)
func TestSmokeChecksTheVolumesFilesystem(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	h.mustConverge("bootstrap")
	writeFile(t, h.config, readFile(t, h.config)+"smoke:\n  attempts: 1\n  timeout: 5s\n")
	if r := h.monagent("smoke"); !strings.Contains(r.stdout, "ok    [infrastructure] ebs mount: ") {
		t.Fatalf("smoke on a converged host: exit %d\n%s", r.code, r.stdout)
	}
	data := filepath.Join(h.root, "data")
	run(t, "umount", data)
	img := filepath.Join(t.TempDir(), "other.img")
	run(t, "truncate", "-s", "300M", img)
	run(t, "mkfs.xfs", "-q", img)
	run(t, "mount", "-o", "loop", img, data)
	r := h.monagent("smoke")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  [infrastructure] ebs mount: ") || !strings.Contains(r.stdout, "not the data volume's") {
		t.Fatalf("smoke with another filesystem mounted: exit %d\n%s", r.code, r.stdout)
	}
}

func writeExecutable(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// holdLock holds the run lock, as another run would, until the test ends.
func (h *host) holdLock(t *testing.T) {
	t.Helper()
	lockPath := filepath.Join(h.root, "run/monagent.lock")
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("flock", lockPath, "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	waitFor(t, func() bool { return exec.Command("flock", "-n", lockPath, "true").Run() != nil })
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// When the state cannot be saved after SUCCESS was sent, the run fails,
// but bootstrap knows from the run itself that SUCCESS went out: no
// FAILURE follows it.
func TestNoFailureAfterSuccessWhenStateSaveFails(t *testing.T) {
	h := newHost(t, scenario("", "faults:\n  cloudformation.SignalResource: {delay: 2s}\n"), "30s")
	dir := filepath.Join(h.root, "var/lib/monagent")
	cmd := h.command(nil, "bootstrap")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
	sc := bufio.NewScanner(stdout)
	var log strings.Builder
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), `"msg":"step start","step":"signal"`) {
			run(t, "chattr", "+i", dir) // SignalResource is on its way; the save after it fails
		}
	}
	err = cmd.Wait()
	if exitCode(err) == 0 {
		t.Fatalf("bootstrap succeeded although its state could not be saved:\n%s", log.String())
	}
	if sig := h.signals(); len(sig) != 1 || !strings.Contains(sig[0], "SUCCESS") {
		t.Fatalf("signals %q: want the one SUCCESS, no FAILURE after it\n%s%s", sig, log.String(), stderr.String())
	}
	if n := h.callCount("cloudformation", "SignalResource"); n != 1 {
		t.Fatalf("SignalResource called %d times", n)
	}
}
