package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/monagent/monagent/rig/sim"
)

// TestLifecycle is the simulated EC2 host of `make demo` through its life,
// under real systemd 252 in systemd-nspawn: the AMI is the .deb of `make
// package` installed by dpkg -i; user-data runs `monagent bootstrap`; the
// boot unit, the timer and the Docker engine inside are the real ones; the
// images are pulled from the rig's registry. It walks:
//
//   - first boot: exactly one SUCCESS signal, which does not wait for the
//     Docker install (it runs beside the volume and the signal); the stack
//     up and healthy;
//   - reboot: the unit's reconcile mounts the volume again by UUID, sends
//     no signal, formats nothing, recreates no container;
//   - drift: the timer's runs repair an unmounted volume, a stopped
//     container, a deleted .env;
//   - replacement: a fresh disk and the same volume: the data is still
//     there, and the new instance sends one SUCCESS of its own;
//
// checking `systemctl show monagent` at each point.
func TestLifecycle(t *testing.T) {
	start := time.Now()
	lc := newLifecycle(t)
	lc.firstBoot()
	lc.reboot()
	lc.drift()
	lc.replace()
	t.Logf("TIMING lifecycle: first boot -> SUCCESS %s, -> healthy %s; reboot -> converged %s; drift repairs %s; replacement -> healthy %s; whole test %s (rig %s)",
		lc.timing.toSignal, lc.timing.toHealthy, lc.timing.reboot, lc.timing.drift, lc.timing.replacement,
		time.Since(start).Round(time.Second), lc.timing.rig)
}

// firstBoot: user-data's bootstrap converges the host; the boot unit, run
// before user-data on the package's example configuration, does nothing.
func (lc *lifecycle) firstBoot() {
	t := lc.t
	fb := lc.waitFirstBoot(lc.m)
	lc.timing.toSignal, lc.timing.toHealthy = fb.ToSignal().Round(100*time.Millisecond), fb.ToHealthy().Round(100*time.Millisecond)
	t.Logf("first boot: started %s, SUCCESS %s (%s), the docker step from %s to %s, converged %s (%s)", fb.Started.Format(time.StampMilli),
		fb.Signal.Time.Local().Format(time.StampMilli), lc.timing.toSignal, fb.DockerStart.Local().Format(time.StampMilli),
		fb.DockerDone.Local().Format(time.StampMilli), fb.Converged.Local().Format(time.StampMilli), lc.timing.toHealthy)

	sig := lc.signals(lc.aws)
	if len(sig) != 1 || sig[0].Status != "SUCCESS" || sig[0].UniqueID != lc.aws.InstanceID() {
		t.Fatalf("signals after the first boot: %+v, want exactly one SUCCESS from %s", sig, lc.aws.InstanceID())
	}
	// The engine runs the Docker install beside the volume and the signal
	// (the signal needs packages and volume only): the signal must not
	// wait for any of it.
	if fb.DockerDone.IsZero() || !fb.Signal.Time.Before(fb.DockerDone) {
		t.Errorf("SUCCESS at %s, the docker step (the engine's install) done at %s: want the signal before the Docker work is done",
			fb.Signal.Time.Format(time.StampMilli), fb.DockerDone.Format(time.StampMilli))
	}
	if st, err := lc.aws.StackStatus(lc.ctx); err != nil || st != "CREATE_COMPLETE" {
		t.Errorf("stack %q, %v", st, err)
	}
	expectUnitProps(t, "cloud-final.service", fb.CloudFinal, map[string]string{"ActiveState": "active", "Result": "success", "ExecMainStatus": "0"})
	lc.expectFirstBootUnit(fb.Unit)
	if n := strings.Count(lc.journal(lc.m, "cloud-final.service"), `"argv":["mkfs.xfs"`); n != 1 {
		t.Errorf("mkfs.xfs ran %d times on the first boot, want once (a blank volume)", n)
	}
	lc.expectStack(lc.m, "after the first boot")
	lc.volumeUUID = lc.status(lc.m).Volume.UUID
}

// expectFirstBootUnit checks monagent.service after a first boot: it runs
// before user-data writes the configuration, on the package's example
// (example: true), and does nothing, successfully.
func (lc *lifecycle) expectFirstBootUnit(p map[string]string) {
	lc.t.Helper()
	expectUnitProps(lc.t, "monagent.service on the first boot", p, map[string]string{
		"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0", "NRestarts": "0"})
	if !strings.HasPrefix(p["StatusText"], "not configured: ") {
		lc.t.Errorf("monagent.service on the first boot: StatusText %q, want \"not configured: ...\" (the package's example config)", p["StatusText"])
	}
}

// reboot: the same disk boots again; the unit's reconcile converges it.
func (lc *lifecycle) reboot() {
	t := lc.t
	before := lc.containers(lc.m)
	ctx, cancel := context.WithTimeout(lc.ctx, lifeRebootTimeout)
	defer cancel()
	if err := lc.m.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	props, done, err := lc.m.WaitBoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc.timing.reboot = done.Time.Sub(lc.m.BootStarted()).Round(100 * time.Millisecond)
	run := runAfter(lc.logs(lc.m, "monagent.service"), lc.m.BootStarted())
	t.Logf("reboot -> converged (the unit's reconcile) %s: %s", lc.timing.reboot, runSummary(run))
	if !runApplied(run, "volume") {
		t.Errorf("the reboot's reconcile did not mount the volume again (no udev in the instance: nothing else does): %s", runSummary(run))
	}
	expectUnitProps(t, "monagent.service after the reboot", props, map[string]string{
		"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0", "NRestarts": "0"})
	expectStatusText(t, props, "reconcile converged in ")
	boot := lc.journal(lc.m)
	for _, no := range []string{`"argv":["mkfs`, `"mode":"bootstrap"`, "cloudformation signal sent"} {
		if strings.Contains(boot, no) {
			t.Errorf("the reboot's journal has %q:\n%s", no, lc.journal(lc.m, "monagent.service"))
		}
	}
	if !strings.Contains(lc.journal(lc.m, "cloud-final.service"), "user-data already ran on this instance") {
		t.Error("cloud-final ran user-data again on the reboot")
	}
	if sig := lc.signals(lc.aws); len(sig) != 1 {
		t.Errorf("signals after the reboot: %+v, want the first boot's one", sig)
	}
	rep := lc.status(lc.m)
	if !rep.Volume.Mounted || rep.Volume.UUID != lc.volumeUUID || rep.Volume.MountedUUID != lc.volumeUUID {
		t.Errorf("after the reboot the volume is %+v, want UUID %s mounted", rep.Volume, lc.volumeUUID)
	}
	if fstab := lc.inside(lc.m, "cat", "/etc/fstab"); !strings.Contains(fstab, "UUID="+lc.volumeUUID+" /data xfs") {
		t.Errorf("fstab has no UUID=%s line:\n%s", lc.volumeUUID, fstab)
	}
	after := lc.expectStack(lc.m, "after the reboot")
	for _, svc := range seedServices {
		if before[svc].ID != after[svc].ID {
			t.Errorf("%s was recreated by the reboot: container %.12s, then %.12s", svc, before[svc].ID, after[svc].ID)
		}
	}
}

// drift: with the timer firing every few seconds, each change made inside
// is repaired by a timer-triggered run; the test runs no monagent itself.
func (lc *lifecycle) drift() {
	start := time.Now()
	lc.fastTimer(lc.m)
	envBefore := lc.inside(lc.m, "sha256sum", "/opt/monitoring/.env")
	prometheus := lc.containers(lc.m)["prometheus"]
	lc.repair(lc.m, "an unmounted volume", []string{"umount", "/data"}, "volume", func() bool {
		_, err := lc.m.Exec(lc.ctx, "findmnt", "-n", "/data")
		return err == nil
	})
	lc.repair(lc.m, "a stopped container", []string{"docker", "stop", "prometheus"}, "compose", func() bool {
		c := lc.containers(lc.m)["prometheus"]
		return c.Status == "running" && c.ID == prometheus.ID
	})
	lc.repair(lc.m, "a deleted .env", []string{"rm", "/opt/monitoring/.env"}, "env", func() bool {
		out, err := lc.m.Exec(lc.ctx, "stat", "-c", "%a %U", "/opt/monitoring/.env")
		return err == nil && out == "600 root"
	})
	if got := lc.inside(lc.m, "sha256sum", "/opt/monitoring/.env"); got != envBefore {
		lc.t.Errorf(".env was rewritten with other content: %s, was %s", got, envBefore)
	}
	lc.expectStack(lc.m, "after the drift repairs")
	lc.timing.drift = time.Since(start).Round(time.Second)
}

// replace: the instance goes (powered off, its volume detached), a new
// instance id with a fresh disk of the AMI gets the same volume.
func (lc *lifecycle) replace() {
	t := lc.t
	sampled, user, password := lc.writeData(lc.m)
	if err := lc.m.Poweroff(lc.ctx); err != nil {
		t.Fatal(err)
	}
	if err := lc.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lc.aws.Detach(lc.ctx, sim.VolumeID); err != nil {
		t.Fatal(err)
	}
	if err := lc.aws.Stop(lc.ctx); err != nil {
		t.Fatal(err)
	}
	const newID = "i-0aaaaaaaaaaaaaaaa"
	lc.aws = lc.startAWS(newID)
	m := lc.launch("mon-life-2")
	fb := lc.waitFirstBoot(m)
	lc.timing.replacement = fb.ToHealthy().Round(100 * time.Millisecond)
	t.Logf("replacement: boot -> healthy stack %s", lc.timing.replacement)
	if strings.Contains(lc.journal(m), `"argv":["mkfs`) {
		t.Fatal("the replacement formatted the volume")
	}
	lc.expectFirstBootUnit(fb.Unit)
	lc.expectNewSignal(m, newID)
	lc.expectStack(m, "on the replacement")
	lc.expectData(m, sampled, user, password)
}

// expectNewSignal checks the replacement's one SUCCESS: a single
// SignalResource call (the only instance this awssim serves), with
// UniqueId the new instance's id. The stack completed with the first
// instance's signal, so CloudFormation answers that the resource cannot
// be signaled any more, which monagent records as done ("complete"):
// the stack's events keep the first signal only.
func (lc *lifecycle) expectNewSignal(m *sim.Machine, id string) {
	t := lc.t
	calls, err := lc.aws.Calls(lc.ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range calls {
		if c.Service == "cloudformation" && c.Operation == "SignalResource" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the replacement called SignalResource %d times, want once", n)
	}
	var sent []sim.LogLine
	for _, l := range lc.logs(m, "cloud-final.service") {
		if l.Fields["unique_id"] == id && l.Fields["status"] == "SUCCESS" {
			sent = append(sent, l)
		}
	}
	if len(sent) != 1 {
		t.Errorf("the replacement's bootstrap logged %d SUCCESS signals for %s, want 1: %+v", len(sent), id, sent)
	}
	if s := lc.status(m).Signal; s.InstanceID != id || (s.Outcome != "complete" && s.Outcome != "sent") {
		t.Errorf("status' signal %+v, want SUCCESS for %s settled", s, id)
	}
	if sig := lc.signals(lc.aws); len(sig) != 1 || sig[0].UniqueID == id {
		t.Errorf("stack events %+v: want the first instance's signal only (the stack had completed)", sig)
	}
}

// expectStatusText checks the last STATUS= of the unit's run.
func expectStatusText(t testing.TB, p map[string]string, prefix string) {
	t.Helper()
	if !strings.HasPrefix(p["StatusText"], prefix) {
		t.Errorf("monagent.service StatusText %q, want %q...", p["StatusText"], prefix)
	}
}

// expectProps checks unit properties.
func expectUnitProps(t testing.TB, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s=%q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}
