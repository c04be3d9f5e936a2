package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"

	"github.com/monagent/monagent/rig/sim"
)

const (
	// lifeRigTimeout bounds the rig's preparation (cold: Loki, the Compose
	// plugin and the rootfs are built).
	lifeRigTimeout = 25 * time.Minute
	// lifeFirstBootTimeout bounds a first boot, image pulls included.
	lifeFirstBootTimeout = 10 * time.Minute
	// lifeRebootTimeout bounds a reboot: the poweroff, the boot, its unit's run.
	lifeRebootTimeout = 5 * time.Minute
	// lifeRepairTimeout bounds the wait for the timer to repair a drift.
	lifeRepairTimeout = 2 * time.Minute
	// lifeFastTimer makes monagent-reconcile.timer fire 5 s after each run
	// ends (it is 30 min, randomized by up to 2 min, in the package).
	lifeFastTimer = "[Timer]\nOnUnitInactiveSec=\nOnUnitInactiveSec=5s\nRandomizedDelaySec=0\nAccuracySec=100ms\n"
)

// lifecycle is the state of TestLifecycle: the rig, the account (awssim
// on one state directory across its runs) and the current instance.
type lifecycle struct {
	t          testing.TB
	ctx        context.Context
	rig        *sim.Rig
	data       string // the account's state
	aws        *sim.AWS
	m          *sim.Machine
	volumeUUID string
	timing     struct{ rig, toSignal, toHealthy, reboot, drift, replacement time.Duration }
}

// newLifecycle prepares the rig (cached), starts the account and launches
// the first instance.
func newLifecycle(t testing.TB) *lifecycle {
	t.Helper()
	lc := &lifecycle{t: t, ctx: t.Context(), data: t.TempDir()}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(lc.ctx, lifeRigTimeout)
	defer cancel()
	start := time.Now()
	lc.rig, err = sim.Prepare(ctx, sim.Options{Repo: repo, Cache: rigCache(), Work: t.TempDir(), Awssim: bins.awssim, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	lc.timing.rig = time.Since(start).Round(100 * time.Millisecond)
	lc.aws = lc.startAWS("")
	lc.m = lc.launch("mon-life-1")
	return lc
}

// startAWS starts awssim on the account's state as instance id ("" for
// the default), stopped when the test ends.
func (lc *lifecycle) startAWS(id string) *sim.AWS {
	lc.t.Helper()
	a, err := lc.rig.StartAWS(lc.ctx, sim.AccountOptions{Data: lc.data, InstanceID: id})
	if err != nil {
		lc.t.Fatal(err)
	}
	lc.t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			lc.t.Error(err)
		}
	})
	return a
}

// launch boots a fresh instance of the AMI in the account, closed when the
// test ends (before awssim stops).
func (lc *lifecycle) launch(name string) *sim.Machine {
	lc.t.Helper()
	m, err := lc.rig.Launch(lc.ctx, sim.LaunchOptions{Name: name, Dir: lc.t.TempDir(), AWS: lc.aws})
	if err != nil {
		lc.t.Fatal(err)
	}
	lc.t.Cleanup(func() {
		if err := m.Close(); err != nil {
			lc.t.Error(err)
		}
	})
	return m
}

func (lc *lifecycle) waitFirstBoot(m *sim.Machine) sim.FirstBoot {
	lc.t.Helper()
	ctx, cancel := context.WithTimeout(lc.ctx, lifeFirstBootTimeout)
	defer cancel()
	fb, err := m.WaitFirstBoot(ctx)
	if err != nil {
		lc.t.Fatal(err)
	}
	return fb
}

func (lc *lifecycle) signals(a *sim.AWS) []sim.Signal {
	lc.t.Helper()
	sig, err := a.Signals(lc.ctx)
	if err != nil {
		lc.t.Fatal(err)
	}
	return sig
}

// inside runs argv in the instance and returns its output.
func (lc *lifecycle) inside(m *sim.Machine, argv ...string) string {
	lc.t.Helper()
	out, err := m.Exec(lc.ctx, argv...)
	if err != nil {
		lc.t.Fatal(err)
	}
	return out
}

// journal is this boot's journal of units (every unit with none).
func (lc *lifecycle) journal(m *sim.Machine, units ...string) string {
	lc.t.Helper()
	j, err := m.Journal(lc.ctx, units...)
	if err != nil {
		lc.t.Fatal(err)
	}
	return j
}

func (lc *lifecycle) logs(m *sim.Machine, unit string) []sim.LogLine {
	lc.t.Helper()
	l, err := m.Logs(lc.ctx, unit)
	if err != nil {
		lc.t.Fatal(err)
	}
	return l
}

func (lc *lifecycle) containers(m *sim.Machine) map[string]sim.Container {
	lc.t.Helper()
	c, err := m.Containers(lc.ctx, project)
	if err != nil {
		lc.t.Fatal(err)
	}
	return c
}

func (lc *lifecycle) show(m *sim.Machine, unit string) map[string]string {
	lc.t.Helper()
	p, err := m.Show(lc.ctx, unit)
	if err != nil {
		lc.t.Fatal(err)
	}
	return p
}

// expectStack checks that every service of the seed stack runs inside
// (the exporter left out: no GitHub token), and returns the containers.
func (lc *lifecycle) expectStack(m *sim.Machine, when string) map[string]sim.Container {
	lc.t.Helper()
	got := lc.containers(m)
	for _, svc := range seedServices {
		if got[svc].Status != "running" {
			lc.t.Errorf("%s: %s is %+v, want running", when, svc, got[svc])
		}
	}
	if c, ok := got["github-actions-exporter"]; ok {
		lc.t.Errorf("%s: the exporter runs without a token: %+v", when, c)
	}
	return got
}

// lifecycleStatus is the part of `monagent status --json` the test reads.
type lifecycleStatus struct {
	Result string
	Volume struct {
		UUID        string
		Mounted     bool
		MountedUUID string `json:"mounted_uuid"`
	}
	Signal struct {
		Outcome    string
		InstanceID string `json:"instance_id"`
	}
}

// status runs `monagent status --json` inside.
func (lc *lifecycle) status(m *sim.Machine) lifecycleStatus {
	lc.t.Helper()
	stdout, stderr, code, err := m.Monagent(lc.ctx, "status", "--json")
	if err != nil || code != 0 {
		lc.t.Fatalf("monagent status --json: exit %d, %v\n%s", code, err, stderr)
	}
	var rep lifecycleStatus
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		lc.t.Fatalf("monagent status --json: %v\n%s", err, stdout)
	}
	if rep.Result != "converged" {
		lc.t.Errorf("monagent status: result %q, want converged\n%s", rep.Result, stdout)
	}
	return rep
}

// fastTimer makes the reconcile timer fire 5 s after each run, through a
// drop-in (the test's only change to the units), and restarts it.
func (lc *lifecycle) fastTimer(m *sim.Machine) {
	lc.t.Helper()
	lc.inside(m, "sh", "-c", `mkdir -p /etc/systemd/system/monagent-reconcile.timer.d && printf '%s' "$1" >/etc/systemd/system/monagent-reconcile.timer.d/50-lifecycle-test.conf && systemctl daemon-reload && systemctl restart monagent-reconcile.timer`,
		"sh", lifeFastTimer)
}

// repair makes a drift inside with argv and waits until repaired says it
// is repaired, by the run the timer triggers next, which must converge
// and apply step. The timer is stopped while the drift is made (no run
// then), and started again: its last run ended more than 5 s before, so
// it fires at once.
func (lc *lifecycle) repair(m *sim.Machine, what string, argv []string, step string, repaired func() bool) {
	t := lc.t
	t.Helper()
	lc.inside(m, "systemctl", "stop", "monagent-reconcile.timer")
	lc.waitIdle(m)
	drifted := time.Now()
	lc.inside(m, argv...)
	if repaired() {
		t.Fatalf("%s: %v changed nothing", what, argv)
	}
	lc.inside(m, "systemctl", "start", "monagent-reconcile.timer")
	ctx, cancel := context.WithTimeout(lc.ctx, lifeRepairTimeout)
	defer cancel()
	var run []sim.LogLine
	for {
		run = runAfter(lc.logs(m, "monagent.service"), drifted)
		if last := run[len(run)-1]; last.Msg == "run converged" || last.Msg == "run failed" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no run of monagent.service after it within %s (the timer: %v)\n%s", what, lifeRepairTimeout,
				lc.show(m, "monagent-reconcile.timer"), lc.journal(m, "monagent.service", "monagent-reconcile.timer"))
		case <-time.After(250 * time.Millisecond):
		}
	}
	took := run[len(run)-1].Time.Sub(drifted).Round(100 * time.Millisecond)
	if last := run[len(run)-1]; last.Msg != "run converged" || !repaired() {
		t.Fatalf("%s: the first run after it: %s %s, repaired %v", what, last.Msg, last.Err, repaired())
	}
	if !runApplied(run, step) {
		t.Errorf("%s: the run that repaired it did not apply the %s step:\n%+v", what, step, run)
	}
	if trig := lc.lastTrigger(m); trig.Before(drifted.Truncate(time.Second)) {
		t.Errorf("%s: the timer last triggered at %s, before the drift at %s: the run was not the timer's", what, trig, drifted)
	}
	p := lc.show(m, "monagent.service")
	expectUnitProps(t, "monagent.service after repairing "+what, p, map[string]string{"Result": "success", "ExecMainStatus": "0"})
	expectStatusText(t, p, "reconcile converged in ")
	t.Logf("drift, %s: repaired by the timer's reconcile %s after it (%s)", what, took, runSummary(run))
}

// waitIdle waits until monagent.service is not running: between two of
// the timer's runs.
func (lc *lifecycle) waitIdle(m *sim.Machine) {
	lc.t.Helper()
	deadline := time.Now().Add(lifeRepairTimeout)
	for lc.show(m, "monagent.service")["ActiveState"] != "inactive" {
		if time.Now().After(deadline) {
			lc.t.Fatalf("monagent.service still runs after %s: %v", lifeRepairTimeout, lc.show(m, "monagent.service"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastTrigger is when the reconcile timer last fired (second resolution).
func (lc *lifecycle) lastTrigger(m *sim.Machine) time.Time {
	lc.t.Helper()
	out := lc.inside(m, "systemctl", "show", "-p", "LastTriggerUSec", "--value", "monagent-reconcile.timer")
	at, err := time.Parse("Mon 2006-01-02 15:04:05 MST", out)
	if err != nil {
		lc.t.Fatalf("the timer's LastTriggerUSec %q: %v", out, err)
	}
	return at
}

// runAfter returns the lines of the first run that started at or after t0,
// up to its end.
func runAfter(lines []sim.LogLine, t0 time.Time) []sim.LogLine {
	var run []sim.LogLine
	for _, l := range lines {
		if len(run) == 0 && (l.Msg != "run start" || l.Time.Before(t0.Truncate(time.Millisecond))) {
			continue
		}
		run = append(run, l)
		if l.Msg == "run converged" || l.Msg == "run failed" {
			break
		}
	}
	if len(run) == 0 {
		return []sim.LogLine{{}}
	}
	return run
}

// applied reports whether the run applied step (did not skip it).
func runApplied(run []sim.LogLine, step string) bool {
	for _, l := range run {
		if l.Msg == "step finish" && l.Step == step {
			skipped, _ := l.Fields["skipped"].(bool)
			return !skipped
		}
	}
	return false
}

// summary is a run's steps, each applied (with its duration) or skipped.
func runSummary(run []sim.LogLine) string {
	var parts []string
	for _, l := range run {
		if l.Msg != "step finish" {
			continue
		}
		if skipped, _ := l.Fields["skipped"].(bool); skipped {
			parts = append(parts, l.Step+" skipped")
		} else {
			parts = append(parts, l.Step+" applied "+l.Duration("duration").Round(10*time.Millisecond).String())
		}
	}
	return strings.Join(parts, ", ")
}

// writeData gets a Prometheus sample and saves a Grafana dashboard on the
// instance, and returns when the sample was taken and Grafana's login.
func (lc *lifecycle) writeData(m *sim.Machine) (sampled time.Time, user, password string) {
	t := lc.t
	env, err := dotenv.UnmarshalBytesWithLookup([]byte(lc.inside(m, "cat", "/opt/monitoring/.env")), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	user, password = env["GRAFANA_ADMIN_USER"], env["GRAFANA_ADMIN_PASSWORD"]
	lc.eventually(m, "a Prometheus sample", func() bool {
		out, err := m.Exec(lc.ctx, "curl", "-fsS", "http://127.0.0.1:9090/api/v1/query?query=up")
		sampled = time.Now()
		return err == nil && strings.Contains(out, `"result":[{`)
	})
	dashboard := `{"dashboard":{"title":"Written before the replacement","panels":[]},"overwrite":true}`
	lc.inside(m, "curl", "-fsS", "-u", user+":"+password, "-H", "Content-Type: application/json",
		"-d", dashboard, "http://127.0.0.1:3000/api/dashboards/db")
	// Prometheus appends its samples to the WAL; let it reach the disk.
	time.Sleep(time.Second)
	return sampled, user, password
}

// expectData checks that the replacement serves what the first instance
// wrote: the Prometheus sample and the Grafana dashboard.
func (lc *lifecycle) expectData(m *sim.Machine, sampled time.Time, user, password string) {
	query := fmt.Sprintf("http://127.0.0.1:9090/api/v1/query?query=up&time=%.3f", float64(sampled.UnixMilli())/1000)
	lc.eventually(m, "the sample of "+sampled.Format(time.StampMilli)+" from the first instance", func() bool {
		out, err := m.Exec(lc.ctx, "curl", "-fsS", query)
		return err == nil && strings.Contains(out, `"result":[{`)
	})
	out := lc.inside(m, "curl", "-fsS", "-u", user+":"+password, "http://127.0.0.1:3000/api/search?query=Written")
	if !strings.Contains(out, "Written before the replacement") {
		lc.t.Errorf("Grafana lost the dashboard saved on the first instance: %s", out)
	}
}

// eventually polls cond every 250 ms for up to a minute.
func (lc *lifecycle) eventually(m *sim.Machine, what string, cond func() bool) {
	lc.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			lc.t.Fatalf("%s: not within a minute (instance %s)", what, m.Name())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
