package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/monagent/monagent/rig/sim"
)

// The latencies the instance's first boot meets, injected through awssim:
// the data volume is still held by the old instance, which lets go
// instRelease after the boot starts; a detach and an attach take
// instAttach each; the Compose plugin's download waits instDownload.
// The rest is real work on the instance, measured in the same run: the
// engine's install from Debian's packages, the image pulls from the rig's
// registry, the stack's start and its services' health checks.
const (
	instRelease  = 3 * time.Second
	instAttach   = time.Second
	instDownload = 2 * time.Second
	instOld      = "i-0fedcba9876543210"
)

// bootFigures are the first boot's times from its start, each against
// the critical path's bound computed from the same boot.
type bootFigures struct {
	signal, signalBound   time.Duration
	healthy, healthyBound time.Duration
	// toMonagent is the boot's own part of both: systemd up to monagent's
	// first run.
	toMonagent time.Duration
	// cost is each step's work on the bound; path is the critical path.
	cost map[string]time.Duration
	path []string
}

// benchInstance boots a fresh simulated instance whose volume the old
// instance still holds and measures the first boot (docs/bench.md).
func benchInstance(b *testing.B) bootFigures {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), lifeRigTimeout+lifeFirstBootTimeout)
	defer cancel()
	repo, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	rig, err := sim.Prepare(ctx, sim.Options{Repo: repo, Cache: rigCache(), Work: b.TempDir(), Awssim: bins.awssim, Logf: b.Logf})
	if err != nil {
		b.Fatal(err)
	}
	a, err := rig.StartAWS(ctx, sim.AccountOptions{Data: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Stop(context.Background())
	var held time.Time
	m, err := rig.Launch(ctx, sim.LaunchOptions{Name: "mon-bench", Dir: b.TempDir(), AWS: a, LogLevel: "debug",
		BeforeBoot: func(ctx context.Context) error {
			// Launch attached the volume to bind its device; hand it to
			// the old instance, which lets go instRelease from now.
			if err := a.Detach(ctx, sim.VolumeID); err != nil {
				return err
			}
			held = time.Now()
			return a.Apply(ctx, heldScenario())
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	fb, err := m.WaitFirstBoot(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if fb.Signal.Time.IsZero() {
		b.Fatal("the first boot sent no SUCCESS signal")
	}
	var logs []sim.LogLine
	for _, unit := range []string{"monagent.service", "cloud-final.service"} {
		l, err := m.Logs(ctx, unit)
		if err != nil {
			b.Fatal(err)
		}
		logs = append(logs, l...)
	}
	slices.SortStableFunc(logs, func(x, y sim.LogLine) int { return x.Time.Compare(y.Time) })
	return figures(b, ctx, m, fb, logs, held)
}

// heldScenario hands the volume to the old instance and installs the
// latencies.
func heldScenario() string {
	return fmt.Sprintf(`ec2:
  attach_delay: %s
  instances: [{id: %s, az: eu-west-1a}]
  volumes:
    - {id: %s, size_gib: 2, az: eu-west-1a, encrypted: true, attached_to: %s, release_after: %s}
faults:
  files.Download: {delay: %s}
`, instAttach, instOld, sim.VolumeID, instOld, instRelease, instDownload)
}

// figures computes the boot's figures and bounds. Each step's cost on the
// bound is its work: for the volume, what is left of the release when
// monagent first starts, the detach and the attach (injected), mkfs and
// mount (measured); for compose, from the engine's first container
// create to the last service healthy (the engine's own events); for the
// rest (the package install, the engine's start, the plugin download, the
// bundle, SSM, the pulls) the duration of the run that did the work.
// The bound is the boot's own part plus the longest chain of costs
// through the step graph (status --json's needs).
func figures(b *testing.B, ctx context.Context, m *sim.Machine, fb sim.FirstBoot, logs []sim.LogLine, held time.Time) bootFigures {
	b.Helper()
	first, ok := sim.Find(logs, "run start", "")
	if !ok {
		b.Fatal("no monagent run in the boot's journal")
	}
	cost := workDurations(logs)
	left := max(0, held.Add(instRelease+instAttach).Sub(first.Time))
	cost["volume"] = left + instAttach + execTime(b, logs, "mkfs.xfs") + execTime(b, logs, "mount")
	created, healthy := stackEvents(b, ctx, m, first.Time)
	cost["compose"] = healthy.Sub(created)
	needs := stepGraph(b, ctx, m)
	f := bootFigures{toMonagent: first.Time.Sub(fb.Started), cost: cost}
	f.signal = fb.Signal.Time.Sub(fb.Started)
	signalPath, signalCost := longest("signal", needs, cost)
	f.signalBound = f.toMonagent + signalCost
	var healthyCost time.Duration
	f.path, healthyCost = longest("compose", needs, cost)
	f.healthy, f.healthyBound = healthy.Sub(fb.Started), f.toMonagent+healthyCost
	// Printed, not logged: a benchmark's log is cut to a few lines.
	fmt.Printf("bench: critical path to the signal %s; where its time went, from monagent's first start (the old instance lets go at %v):\n%s",
		strings.Join(signalPath, " → "), held.Add(instRelease).Sub(first.Time).Round(time.Millisecond), trace(logs, first.Time, fb.Signal.Time))
	return f
}

// trace lists monagent's lines from start to end, each at its offset
// from start.
func trace(logs []sim.LogLine, start, end time.Time) string {
	var out strings.Builder
	for _, l := range logs {
		if l.Time.After(end) {
			break
		}
		argv, _ := l.Fields["argv"].([]any)
		fmt.Fprintf(&out, "\t%8v %s %s %s %v %v\n", l.Time.Sub(start).Round(time.Millisecond), l.Mode, l.Step, l.Msg,
			argv, l.Fields["duration"])
	}
	return out.String()
}

// workDurations maps each step to the duration of its first run that did
// work (not found converged).
func workDurations(logs []sim.LogLine) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, l := range logs {
		if l.Msg != "step finish" || l.Fields["skipped"] == true {
			continue
		}
		if _, ok := out[l.Step]; !ok {
			out[l.Step] = l.Duration("duration")
		}
	}
	return out
}

// execTime is the duration of the first command whose argv[0] is name.
func execTime(b *testing.B, logs []sim.LogLine, name string) time.Duration {
	b.Helper()
	for _, l := range logs {
		if argv, _ := l.Fields["argv"].([]any); l.Msg == "exec done" && len(argv) > 0 && argv[0] == name {
			return l.Duration("duration")
		}
	}
	b.Fatalf("no exec of %s in the boot's journal (at log level debug)", name)
	return 0
}

// stackEvents reads the instance engine's container events since the
// first run: the first create, and when the last service was first ready
// (healthy, or started if it has no health check).
func stackEvents(b *testing.B, ctx context.Context, m *sim.Machine, since time.Time) (created, ready time.Time) {
	b.Helper()
	out, err := m.Exec(ctx, "docker", "events", "--since", strconv.FormatInt(since.Unix()-1, 10),
		"--until", strconv.FormatInt(time.Now().Unix(), 10), "--filter", "type=container",
		"--filter", "label=com.docker.compose.project", "--format", "{{json .}}")
	if err != nil {
		b.Fatal(err)
	}
	started, healthy := map[string]time.Time{}, map[string]time.Time{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Action   string
			TimeNano int64 `json:"timeNano"`
			Actor    struct{ Attributes map[string]string }
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			b.Fatalf("docker events: %v: %q", err, line)
		}
		at, svc := time.Unix(0, e.TimeNano), e.Actor.Attributes["com.docker.compose.service"]
		switch {
		case e.Action == "create" && created.IsZero():
			created = at
		case e.Action == "start" && started[svc].IsZero():
			started[svc] = at
		case e.Action == "health_status: healthy" && healthy[svc].IsZero():
			healthy[svc] = at
		}
	}
	if created.IsZero() || len(started) == 0 {
		b.Fatalf("no container created and started in the engine's events:\n%s", out)
	}
	for svc, at := range started {
		if h, ok := healthy[svc]; ok {
			at = h
		}
		if at.After(ready) {
			ready = at
		}
	}
	return created, ready
}

// stepGraph is the step graph, from status --json.
func stepGraph(b *testing.B, ctx context.Context, m *sim.Machine) map[string][]string {
	b.Helper()
	stdout, stderr, code, err := m.Monagent(ctx, "status", "--json")
	if err != nil || code != 0 {
		b.Fatalf("status --json: exit %d, %v\n%s", code, err, stderr)
	}
	var r struct {
		Timeline struct {
			Entries []struct {
				Step  string
				Needs []string
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		b.Fatalf("status --json: %v", err)
	}
	needs := map[string][]string{}
	for _, e := range r.Timeline.Entries {
		needs[e.Step] = e.Needs
	}
	if len(needs["compose"]) == 0 {
		b.Fatalf("status --json gives no needs for compose:\n%s", stdout)
	}
	return needs
}

// longest is the costliest chain of needs ending at step, and its cost.
func longest(step string, needs map[string][]string, cost map[string]time.Duration) ([]string, time.Duration) {
	var best []string
	var bestCost time.Duration
	for _, n := range needs[step] {
		if p, c := longest(n, needs, cost); best == nil || c > bestCost {
			best, bestCost = p, c
		}
	}
	return append(best, step), bestCost + cost[step]
}
