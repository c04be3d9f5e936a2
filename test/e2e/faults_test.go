package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"golang.org/x/sys/unix"

	"github.com/monagent/monagent/internal/state"
)

// The fault suite: monagent killed at every step boundary and at random
// points inside steps, three invocations at once, AWS, Docker and disk
// faults, and no secret anywhere it should not be. Each test logs a tally
// line; the seed of the random points is logged so that a failure can be
// replayed with MONAGENT_FAULT_SEED.

// faultSeed is MONAGENT_FAULT_SEED, or the time.
func faultSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MONAGENT_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("MONAGENT_FAULT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with MONAGENT_FAULT_SEED=%d)", seed, seed)
	return seed
}

// slowMkfs is an mkfs.xfs that holds the device exclusively for a while
// (%[2]s seconds), as mkfs.xfs holds it while it writes a large volume,
// before the real one runs; it logs its start, its exit status and the
// filesystem's UUID after it. (The mkfs.xfs of a killed agent dies of
// SIGPIPE, exit 141, when it flushes its report to the agent's pipe at
// exit: once the filesystem is complete.)
const slowMkfs = `#!/bin/sh
for a; do dev=$a; done
echo "start $$" >>%[1]s
/usr/bin/perl -MFcntl -e 'sysopen(my $f, $ARGV[0], O_RDWR|O_EXCL) or do { print STDERR "mkfs.xfs: cannot open $ARGV[0]: $!\n"; exit 1 }; sleep %[2]s' "$dev" ||
	{ echo "busy $$" >>%[1]s; exit 1; }
/usr/sbin/mkfs.xfs "$@"
rc=$?
echo "exit $$ $rc made UUID=$(blkid -p -o value -s UUID "$dev")" >>%[1]s
exit $rc
`

// madeUUIDs lists the distinct filesystems slowMkfs's log says it made.
func madeUUIDs(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if _, u, ok := strings.Cut(l, "made UUID="); ok && u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// kill -9 while mkfs runs: mkfs, in a process group of its own, goes on.
// The next run, started at once, must neither format the volume a second
// time nor fail the stack: it waits for the mkfs and mounts what it made.
func TestFaultKillDuringMkfs(t *testing.T) {
	ft := &faultTally{}
	t.Cleanup(func() { ft.log(t) })
	h := newHost(t, scenario("", ""), "30s")
	bin := t.TempDir()
	mlog := filepath.Join(bin, "mkfs.log")
	writeExecutable(t, filepath.Join(bin, "mkfs.xfs"), fmt.Sprintf(slowMkfs, mlog, "2"))
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	mkfsLog := func() string { b, _ := os.ReadFile(mlog); return string(b) }

	start := time.Now()
	first := h.runUntil(t, killPoint{name: "inside mkfs.xfs", when: func() bool { return strings.Contains(mkfsLog(), "start") }},
		time.Minute, env, "bootstrap")
	ft.faults++
	if !first.killed {
		t.Fatalf("the run was not killed inside mkfs (exit %d):\n%s%s", first.code, first.stdout, first.stderr)
	}
	ft.killed++
	// The orphaned mkfs holds the run lock it inherited.
	if exec.Command("flock", "-n", filepath.Join(h.root, "run/monagent.lock"), "true").Run() == nil {
		t.Error("the run lock is free while the killed run's mkfs goes on")
	}
	t.Logf("killed inside mkfs after %v (steps running %v, last command %q)", first.elapsed.Round(time.Millisecond), first.inside, first.lastExec)

	// The next run, at once: the orphaned mkfs still holds the device.
	second := h.runUntil(t, killPoint{}, time.Minute, env, "bootstrap")
	t.Logf("the next run: exit %d after %v; mkfs log:\n%s", second.code, second.elapsed.Round(time.Millisecond), mkfsLog())
	waitForLong(t, 30*time.Second, func() bool {
		l := mkfsLog()
		return strings.Count(l, "start") == strings.Count(l, "exit ")+strings.Count(l, "busy ")
	})
	third := h.runUntil(t, killPoint{}, time.Minute, nil, "reconcile")

	made := madeUUIDs(mkfsLog())
	dev, err := filepath.EvalSymlinks(filepath.Join(h.root, byID))
	if err != nil {
		t.Fatal(err)
	}
	final := blkid(t, dev)["UUID"]
	sig := h.signals()
	t.Logf("%v in all: filesystems made %v, on the volume %s, signals %q, third run exit %d",
		time.Since(start).Round(time.Millisecond), made, final, sig, third.code)
	if len(made) != 1 || made[0] != final {
		ft.dataLost++
		t.Errorf("the volume was formatted %d times (%v), holds %s:\n%s", len(made), made, final, mkfsLog())
	}
	if second.code != 0 {
		t.Errorf("the run after the kill: exit %d, want 0 (it should wait for the mkfs under way and use its filesystem):\n%s\n%s",
			second.code, second.stderr, second.stdout)
	}
	if len(sig) != 1 || sig[0] != "Received SUCCESS signal with UniqueId "+instanceID {
		ft.dupSignals += max(len(sig)-1, 0)
		t.Errorf("signals %q, want one SUCCESS", sig)
	}
	if third.code != 0 {
		t.Fatalf("a later run: exit %d\n%s\n%s", third.code, third.stderr, third.stdout)
	}
}

// stepsOf lists the steps a run's log shows starting, in order.
func stepsOf(out string) []string {
	var steps []string
	for _, l := range parseLog(out) {
		if l.Msg == "step start" && !slices.Contains(steps, l.Step) {
			steps = append(steps, l.Step)
		}
	}
	return steps
}

// msgIs matches the first log line with message msg.
func msgIs(msg string) func(logLine) bool { return func(l logLine) bool { return l.Msg == msg } }

// execOf matches the log line of a command whose argv starts with name and
// holds every one of args.
func execOf(name string, args ...string) func(logLine) bool {
	return func(l logLine) bool {
		if l.Msg != "exec" || len(l.Argv) == 0 || l.Argv[0] != name {
			return false
		}
		for _, a := range args {
			if !slices.Contains(l.Argv, a) {
				return false
			}
		}
		return true
	}
}

// kill -9 of monagent at points inside steps and at every step boundary.
// The volume's first life first, each killed in a run of its own: inside
// the attach, at its mkfs, inside the SUCCESS call. Then, each after a
// drift that gives it work and followed by a run that must converge:
// inside the plugin download, the fstab write, the .env write and compose
// up; every step start and finish; and at least 20 random points (a point
// that came after the run ended is drawn again within that run's length).
// Drifts: the volume unmounted, detached or its fstab line gone, the state
// file lost, the plugin deleted, a new bundle, a new password, the
// container removed, an endpoint changed. After each kill the host is
// checked: every file old or new, the volume's one filesystem and the
// sentinel on it, one SUCCESS.
func TestFaultKill9(t *testing.T) {
	seed := faultSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	ft := &faultTally{}
	t.Cleanup(func() { ft.log(t) })
	sw := watchSecrets(t)
	secret := faultSecret(t, "Kill")
	sw.addSecret(secret)
	notes := "notes v0\n"
	bundle := lightBundle(t, notes)
	h, sum := newLightHost(t, "faultkill", faultScenario(bundle, 400*time.Millisecond, 700*time.Millisecond), secret)
	fstabOld := "# static file system information\nUUID=1111-2222 /boot/efi vfat umask=0077 0 1\n"
	writeFile(t, filepath.Join(h.root, "etc/fstab"), fstabOld)
	iv := newInvariants(h, ft, fstabOld, sum)
	iv.passwords[secret], iv.notes[notes] = true, true
	// mkfs.xfs logs each real run: a kill right at the exec line may come
	// before the program starts, which the agent's log cannot tell.
	bin := t.TempDir()
	mlog := filepath.Join(bin, "mkfs.log")
	writeExecutable(t, filepath.Join(bin, "mkfs.xfs"), fmt.Sprintf(slowMkfs, mlog, "0"))
	pathEnv := []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	data := filepath.Join(h.root, "data")
	pluginDir := filepath.Join(h.root, "usr/local/lib/docker/cli-plugins")
	served := filepath.Join(simArg(t, h, "--files"), "docker-compose")
	pluginBytes, err := os.ReadFile(served)
	if err != nil {
		t.Fatal(err)
	}
	pinned := sum

	drifts := map[string]func(){
		"umount": func() { _ = exec.Command("umount", data).Run() },
		"detach": func() {
			// As an operator would: nothing uses the filesystem any more
			// (a container's bind mount would keep it, and awssim's loop
			// device, alive past the detach).
			if c := containers(t, h.project)["app"]; c.ID != "" {
				run(t, "docker", "rm", "-f", c.ID)
			}
			_ = exec.Command("umount", data).Run()
			if _, err := h.ec2().DetachVolume(context.Background(), &ec2.DetachVolumeInput{VolumeId: aws.String(volumeID)}); err != nil {
				t.Fatal(err)
			}
			waitForLong(t, 30*time.Second, func() bool { return volumeState(t, h) == "available" })
		},
		"fstab":      func() { writeAtomic(t, filepath.Join(h.root, "etc/fstab"), fstabOld) },
		"state-lost": func() { _ = os.Remove(filepath.Join(h.root, "var/lib/monagent/state.json")) },
		"plugin":     func() { _ = os.Remove(filepath.Join(pluginDir, "docker-compose")) },
		// A new plugin build is pinned: the same program with a different
		// tail, so its checksum differs and its version does not.
		"plugin-upgrade": func() {
			b := append(slices.Clip(pluginBytes), fmt.Sprintf("\x00fault build %d", len(iv.pluginSums))...)
			writeAtomic(t, served, string(b))
			s := sha256.Sum256(b)
			next := hex.EncodeToString(s[:])
			writeFile(t, h.config, strings.Replace(readFile(t, h.config), pinned, next, 1))
			iv.pluginSums[next], pinned = true, next
		},
		"bundle": func() {
			notes = fmt.Sprintf("notes v%d\n", len(iv.notes))
			iv.notes[notes] = true
			h.control("POST", "/_sim/scenario", fmt.Sprintf("s3:\n  buckets:\n    - name: monitoring-production-scripts\n      objects:\n        - {key: scripts/notes.txt, body: %q}\n", notes))
		},
		"env": func() {
			pw := faultSecret(t, "Kill")
			sw.addSecret(pw)
			iv.passwords[pw] = true
			putParameter(t, h, "/monitoring-production/grafana/admin-password", pw, true)
		},
		"container": func() {
			if c := containers(t, h.project)["app"]; c.ID != "" {
				_ = exec.Command("docker", "rm", "-f", c.ID).Run()
			}
		},
		"endpoint": func() { putString(t, h, "/monitoring-production/tempo/endpoint", "http://old-host:4317") },
	}
	driftNames := slices.Sorted(maps.Keys(drifts))
	stepDrifts := map[string][]string{"packages": {"container"}, "volume": {"umount", "detach", "fstab"}, "signal": {"state-lost"},
		"docker": {"plugin", "plugin-upgrade"}, "docker-ready": {"plugin"}, "bundle": {"bundle"}, "pull": {"bundle"}, "env": {"env"},
		"compose": {"container"}, "endpoints": {"endpoint"}}
	verbs := []string{"bootstrap", "reconcile"}

	var logs strings.Builder
	inside := map[string]int{}
	runs := 0
	// kill applies the drifts, runs monagent until p and checks the host.
	kill := func(n int, p killPoint, applied []string) killRun {
		t.Helper()
		for _, d := range applied {
			drifts[d]()
		}
		verb := verbs[rng.IntN(2)]
		r := h.runUntil(t, p, 2*time.Minute, pathEnv, verb)
		runs++
		sw.addRun(r)
		logs.WriteString(r.stdout)
		ft.faults++
		what := fmt.Sprintf("point %d (%s, %s, drift %v)", n, p, verb, applied)
		if r.killed {
			ft.killed++
			for _, s := range r.inside {
				inside[s]++
			}
		} else if r.code != 0 {
			t.Errorf("%s: the run ended before the kill, exit %d:\n%s\n%s", what, r.code, r.stderr, r.stdout)
		}
		iv.check(t, what+", killed", false)
		t.Logf("%s: killed %v after %v inside %v (last command %.50q)", what, r.killed, r.elapsed.Round(time.Millisecond), r.inside, r.lastExec)
		return r
	}
	// converge is the run after a kill: it must converge.
	var stepNames []string
	converge := func(n int) {
		t.Helper()
		r := h.runUntil(t, killPoint{}, 2*time.Minute, pathEnv, verbs[rng.IntN(2)])
		if stepNames == nil {
			stepNames = stepsOf(r.stdout)
		}
		runs++
		sw.addRun(r)
		logs.WriteString(r.stdout)
		if r.code != 0 {
			t.Fatalf("point %d: the next run did not converge: exit %d\n%s\n%s", n, r.code, r.stderr, r.stdout)
		}
		iv.check(t, fmt.Sprintf("point %d, then %s converged", n, r.args[0]), true)
		if iv.sentinel == "" {
			iv.sentinel = faultSecret(t, "Sentinel")
			writeFile(t, filepath.Join(data, "fault-sentinel"), iv.sentinel)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	start := time.Now()
	n := 0

	// The volume's first life: each kill comes a little further.
	for _, p := range []killPoint{
		{name: "inside the attach", match: msgIs("attaching volume"), delay: 150 * time.Millisecond},
		{name: "at mkfs", match: execOf("mkfs.xfs")},
		{name: "inside the SUCCESS call", msg: "step start", step: "signal", delay: 300 * time.Millisecond},
	} {
		kill(n, p, nil)
		n++
	}
	converge(n - 1)

	// Inside the writes, each after the drift that makes it happen.
	for _, c := range []struct {
		p     killPoint
		drift string
	}{
		{killPoint{name: "inside the plugin download", created: filepath.Join(pluginDir, ".docker-compose.tmp-")}, "plugin-upgrade"},
		{killPoint{name: "inside the fstab write", created: filepath.Join(h.root, "etc/.fstab.tmp-")}, "fstab"},
		{killPoint{name: "inside the .env write", created: filepath.Join(h.stackDir(), "..env.tmp-")}, "env"},
		{killPoint{name: "inside the state write", created: filepath.Join(h.root, "var/lib/monagent/.state.json.tmp-")}, "umount"},
		{killPoint{name: "inside compose up", match: execOf("docker", "compose", "up"), delay: 300 * time.Millisecond}, "container"},
	} {
		kill(n, c.p, []string{c.drift})
		converge(n)
		n++
	}

	// Every step boundary, in a random order.
	var bounds []killPoint
	for _, s := range stepNames {
		bounds = append(bounds, killPoint{msg: "step start", step: s}, killPoint{msg: "step finish", step: s})
	}
	rng.Shuffle(len(bounds), func(i, j int) { bounds[i], bounds[j] = bounds[j], bounds[i] })
	for _, p := range bounds {
		ds, ok := stepDrifts[p.step]
		if !ok {
			ds = driftNames // a step this test does not know: any drift
		}
		kill(n, p, []string{ds[rng.IntN(len(ds))]})
		converge(n)
		n++
	}

	// Random points, until 20 have killed a run.
	randomKills, within, again := 0, 2500*time.Millisecond, false
	var applied []string
	for attempt := 0; randomKills < 20 && attempt < 60; attempt++ {
		if !again {
			within, applied = 2500*time.Millisecond, nil
			for _, d := range driftNames {
				if rng.IntN(3) == 0 {
					applied = append(applied, d)
				}
			}
		}
		r := kill(n, killPoint{after: time.Duration(20+rng.Int64N(int64(within/time.Millisecond)-20)) * time.Millisecond}, applied)
		// A run that ended first has converged: the same drift again, and
		// a point within the length of that run.
		again, within = !r.killed, max(r.elapsed, 40*time.Millisecond)
		if r.killed {
			randomKills++
			converge(n)
		}
		n++
	}
	if randomKills < 20 {
		t.Errorf("only %d random points killed a run", randomKills)
	}

	mk, _ := os.ReadFile(mlog)
	if made := madeUUIDs(string(mk)); len(made) != 1 || made[0] != iv.uuid {
		ft.dataLost++
		t.Errorf("filesystems made %v over the whole test, want the one %s:\n%s", made, iv.uuid, mk)
	}
	t.Logf("mkfs.xfs: %d exec lines in the logs, %d real runs: %q", strings.Count(logs.String(), `"msg":"exec","argv":["mkfs.xfs"`),
		strings.Count(string(mk), "start"), strings.Split(strings.TrimSpace(string(mk)), "\n"))
	st := h.mustConverge("status", "--json")
	sw.add("status --json", st.stdout)
	sw.files(h)
	t.Logf("%d kill points (the boundaries of %v, %d random ones that killed a run), %d runs in %v; killed inside steps: %v",
		n, stepNames, randomKills, runs, time.Since(start).Round(time.Second), inside)
}

// simArg is the value of one of awssim's flags.
func simArg(t testing.TB, h *host, flag string) string {
	t.Helper()
	if i := slices.Index(h.sim.Args, flag); i >= 0 && i+1 < len(h.sim.Args) {
		return h.sim.Args[i+1]
	}
	t.Fatalf("awssim runs without %s", flag)
	return ""
}

// putString stores a String parameter, as an operator would.
func putString(t testing.TB, h *host, name, value string) {
	t.Helper()
	_, err := ssm.NewFromConfig(h.awsConfig()).PutParameter(context.Background(), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
}

// Three invocations at once, as on a first boot: user-data's bootstrap,
// the boot unit's reconcile and an operator's reconcile. At most one runs
// steps at a time (their step windows never overlap, so no step runs twice
// at once); the others wait on the lock and find the host converged, or
// give up after --lock-timeout with exit 3. One filesystem, one attach,
// one SUCCESS.
func TestFaultConcurrentInvocations(t *testing.T) {
	tests := []struct {
		name string
		// staggered: the operator's run starts once bootstrap runs steps,
		// with --lock-timeout 1s.
		staggered bool
	}{
		{"all three wait their turn", false},
		{"the manual run gives up on the lock", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := &faultTally{}
			t.Cleanup(func() { ft.log(t) })
			sw := watchSecrets(t)
			secret := faultSecret(t, "Conc")
			sw.addSecret(secret)
			h, _ := newLightHost(t, "faultconc", faultScenario(lightBundle(t, "notes\n"), 400*time.Millisecond, 300*time.Millisecond), secret)
			lockPath := filepath.Join(h.root, "run/monagent.lock")
			limit := 3 * time.Minute
			var runs []*bgRun
			runs = append(runs, h.startBg(t, "user-data bootstrap", limit, "bootstrap"))
			if tt.staggered {
				runs[0].waitLine(t, 30*time.Second, msgIs("step start"))
				if exec.Command("flock", "-n", lockPath, "true").Run() == nil {
					t.Error("bootstrap runs steps, yet the run lock is free")
				}
			}
			runs = append(runs, h.startBg(t, "unit reconcile", limit, "reconcile"))
			manual := []string{"reconcile"}
			if tt.staggered {
				manual = []string{"--lock-timeout", "1s", "reconcile"}
			}
			runs = append(runs, h.startBg(t, "manual reconcile", limit, manual...))
			ft.faults += 3

			var wins []window
			var logs string
			for i, b := range runs {
				r := b.wait(t)
				sw.addRun(r)
				logs += r.stdout
				w, steps := stepWindows(b.name, r.stdout)
				if w.steps != len(steps) {
					t.Errorf("%s: %d step starts for %d steps: a step ran twice", b.name, w.steps, len(steps))
				}
				t.Logf("%s: exit %d, started %s, steps %v from %s to %s", b.name, r.code, w.began.Format("15:04:05.000"), slices.Sorted(maps.Keys(steps)),
					w.start.Format("15:04:05.000"), w.end.Format("15:04:05.000"))
				switch {
				case tt.staggered && i == 2:
					if r.code != 3 || !strings.Contains(r.stderr, "lock") || !strings.Contains(r.stderr, "--lock-timeout") || w.steps != 0 {
						t.Errorf("%s: exit %d with %d steps, want 3 naming the lock and --lock-timeout, no step:\n%s", b.name, r.code, w.steps, r.stderr)
					}
				case r.code != 0:
					t.Errorf("%s: exit %d, want 0:\n%s\n%s", b.name, r.code, r.stderr, r.stdout)
				}
				if w.steps > 0 {
					wins = append(wins, w)
				}
			}
			slices.SortFunc(wins, func(a, b window) int { return a.start.Compare(b.start) })
			for i := 1; i < len(wins); i++ {
				if wins[i].start.Before(wins[i-1].end) {
					t.Errorf("%s ran steps from %s while %s ran steps until %s", wins[i].name, wins[i].start.Format("15:04:05.000"),
						wins[i-1].name, wins[i-1].end.Format("15:04:05.000"))
				}
				// It was there all along: the lock held it back.
				if !wins[i].began.Before(wins[i-1].end) {
					t.Errorf("%s started at %s, after %s had finished: nothing shows it waited on the lock", wins[i].name,
						wins[i].began.Format("15:04:05.000"), wins[i-1].name)
				}
			}
			if len(wins) < 2 {
				t.Errorf("only %d runs ran steps", len(wins))
			}
			if n := strings.Count(logs, `"msg":"exec","argv":["mkfs.xfs"`); n != 1 {
				ft.dataLost++
				t.Errorf("mkfs.xfs ran %d times", n)
			}
			if n := h.callCount("ec2", "AttachVolume"); n != 1 {
				t.Errorf("AttachVolume called %d times", n)
			}
			if sig := h.signals(); len(sig) != 1 || sig[0] != "Received SUCCESS signal with UniqueId "+instanceID {
				ft.dupSignals += max(len(sig)-1, 0)
				t.Errorf("signals %q, want one SUCCESS", sig)
			}
			if c := containers(t, h.project)["app"]; c.Status != "running" {
				t.Errorf("app: %+v", c)
			}
		})
	}
}

// awsOperations are the operations of awssim's services, for faults on
// every one of them.
var awsOperations = map[string][]string{
	"imds":           {"GetToken", "GetMetadata", "GetDynamicData"},
	"ec2":            {"CreateVolume", "DescribeVolumes", "AttachVolume", "DetachVolume", "DeleteVolume"},
	"ssm":            {"GetParameter", "GetParameters", "GetParametersByPath", "PutParameter", "DeleteParameter", "LabelParameterVersion"},
	"cloudformation": {"DescribeStacks", "DescribeStackEvents", "DescribeStackResource", "DescribeStackResources", "SignalResource"},
	"s3":             {"ListBuckets", "HeadBucket", "GetBucketLocation", "ListObjects", "ListObjectsV2", "GetObject", "HeadObject"},
}

// Throttling, and bursts of 5xx, on every operation of every service:
// the whole stack still converges, with one SUCCESS. Each operation fails
// its first two calls (IMDS, whose client tries three times, its first).
func TestFaultAWSTransient(t *testing.T) {
	type fault struct {
		status int
		code   string
	}
	tests := []struct {
		name   string
		faults map[string]fault // service -> the error
	}{
		{"throttling", map[string]fault{"imds": {503, ""}, "ec2": {503, "RequestLimitExceeded"}, "ssm": {400, "ThrottlingException"},
			"cloudformation": {400, "Throttling"}, "s3": {503, "SlowDown"}}},
		{"5xx bursts", map[string]fault{"imds": {500, ""}, "ec2": {500, "InternalError"}, "ssm": {500, "InternalServerError"},
			"cloudformation": {503, "ServiceUnavailable"}, "s3": {500, "InternalError"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := &faultTally{}
			t.Cleanup(func() { ft.log(t) })
			sw := watchSecrets(t)
			secret := faultSecret(t, "Aws")
			sw.addSecret(secret)
			h, _ := newLightHost(t, "faultaws", faultScenario(lightBundle(t, "notes\n"), 300*time.Millisecond, 0), secret)
			for svc, ops := range awsOperations {
				f := tt.faults[svc]
				count := 2
				if svc == "imds" {
					count = 1
				}
				body := fmt.Sprintf(`{"count":%d,"status":%d`, count, f.status)
				if f.code != "" {
					body += fmt.Sprintf(`,"code":%q`, f.code)
				}
				for _, op := range ops {
					h.setFault(svc+"."+op, body+"}")
					ft.faults++
				}
			}
			h.clearCalls()
			r := h.monagent("bootstrap")
			sw.add("bootstrap", r.stdout+r.stderr)
			sw.files(h)
			calls := h.calls()
			for svc, ops := range awsOperations {
				for _, op := range ops {
					h.clearFault(svc + "." + op)
				}
			}
			if r.code != 0 {
				t.Fatalf("exit %d under %s:\n%s\n%s", r.code, tt.name, r.stderr, r.stdout)
			}
			// Every operation monagent called failed first, and was retried.
			called, faulted := map[string]int{}, map[string]int{}
			for _, c := range calls {
				if _, ok := awsOperations[c.Service]; !ok {
					continue // the plugin's download: not AWS, no fault installed
				}
				called[c.Service+"."+c.Operation]++
				if c.Code != "" {
					faulted[c.Service+"."+c.Operation]++
				}
			}
			var ops []string
			for op, n := range called {
				ops = append(ops, fmt.Sprintf("%s %d/%d", op, faulted[op], n))
				if faulted[op] == 0 || n <= faulted[op] {
					t.Errorf("%s: %d calls, %d faulted: its fault did not fire, or it was not retried", op, n, faulted[op])
				}
			}
			slices.Sort(ops)
			t.Logf("%s: converged in %v; faulted/all calls per operation: %v", tt.name, r.elapsed.Round(time.Millisecond), ops)
			if sig := h.signals(); len(sig) != 1 || sig[0] != "Received SUCCESS signal with UniqueId "+instanceID {
				ft.dupSignals += max(len(sig)-1, 0)
				t.Errorf("signals %q, want one SUCCESS", sig)
			}
			if c := containers(t, h.project)["app"]; c.Status != "running" {
				t.Errorf("app: %+v", c)
			}
		})
	}
}

// Faults no retry fixes: exit 4 with a message naming the fix, and during
// bootstrap a FAILURE signal within 5 s of a failure the signal depends on
// (a stack that does not exist cannot be told). A failure the signal does
// not depend on (the bundle's bucket) leaves the signal to the volume: the
// signal path keeps going, so the stack's outcome never depends on which
// step failed first.
func TestFaultAWSPermanent(t *testing.T) {
	const kmsKey = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	sw := watchSecrets(t)
	denied := `{"count":-1,"status":400,"code":"AccessDeniedException","message":"User: arn:aws:sts::123456789012:assumed-role/monitoring-role/i-0123456789abcdef0 is not authorized to perform: ssm:GetParameters on resource: arn:aws:ssm:eu-west-1:123456789012:parameter/monitoring-production/ebs/volume-id because no identity-based policy allows the ssm:GetParameters action"}`
	tests := []struct {
		name string
		// host makes the host; the infrastructure half unless the fault
		// needs the application's.
		host func(t *testing.T) *host
		want []string
		// signal is the one signal expected: FAILURE, SUCCESS or "" for none.
		signal string
	}{
		{"KMS key revoked", func(t *testing.T) *host {
			return newHost(t, scenario("      encrypted: true\n      kms_key_id: "+kmsKey+"\n      kms_revoked: true", ""), "30s")
		}, []string{kmsKey, "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"}, "FAILURE"},
		{"volume in another AZ", func(t *testing.T) *host {
			return newHost(t, strings.Replace(scenario("", ""), "az: eu-west-1a", "az: eu-west-1b", 1), "30s")
		}, []string{"eu-west-1b", "eu-west-1a"}, "FAILURE"},
		{"volume never released", func(t *testing.T) *host {
			return newHost(t, scenario("      attached_to: i-0fedcba9876543210", ""), "3s")
		}, []string{"i-0fedcba9876543210"}, "FAILURE"},
		{"stack not found", func(t *testing.T) *host {
			h := newHost(t, scenario("", ""), "30s")
			writeFile(t, h.config, strings.Replace(readFile(t, h.config), "name: Monitoring-Compute-production", "name: Monitoring-Compute-staging", 1))
			return h
		}, []string{"Monitoring-Compute-staging", "does not exist", "stack.name"}, ""},
		{"access denied on a parameter", func(t *testing.T) *host {
			h := newHost(t, scenario("", ""), "30s")
			h.setFault("ssm.GetParameters", denied)
			h.setFault("ssm.GetParameter", denied)
			return h
		}, []string{"AccessDeniedException", "/monitoring-production/ebs/volume-id", "the instance role needs ssm:GetParameters"}, "FAILURE"},
		{"bucket missing", func(t *testing.T) *host {
			scen := faultScenario(t.TempDir(), 300*time.Millisecond, 0)
			scen = scen[:strings.Index(scen, "s3:\n")]
			secret := faultSecret(t, "Bucket")
			sw.addSecret(secret)
			h, _ := newLightHost(t, "faultbucket", scen, secret)
			return h
		}, []string{"monitoring-production-scripts", "NoSuchBucket", "bundle.bucket"}, "SUCCESS"},
	}
	ft := &faultTally{}
	t.Cleanup(func() { ft.log(t) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.host(t)
			ft.faults++
			r := h.monagent("bootstrap")
			sw.add(tt.name, r.stdout+r.stderr)
			if p, err := os.ReadFile(filepath.Join(h.root, "var/lib/monagent/state.json")); err == nil {
				sw.add(tt.name+" state", string(p))
			}
			if r.code != 4 {
				t.Fatalf("exit %d, want 4\nstderr: %s\nstdout: %s", r.code, r.stderr, r.stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("the error does not name %q:\n%s", w, r.stderr)
				}
			}
			sig := h.signals()
			switch tt.signal {
			case "":
				if len(sig) != 0 {
					t.Errorf("signals %q on %s, want none", sig, stackName)
				}
				t.Logf("exit 4: %s", strings.TrimSpace(r.stderr))
				return
			case "SUCCESS":
				if len(sig) != 1 || sig[0] != "Received SUCCESS signal with UniqueId "+instanceID {
					t.Errorf("signals %q, want the volume's SUCCESS alone", sig)
				}
				t.Logf("exit 4, SUCCESS from the volume: %s", strings.TrimSpace(r.stderr))
				return
			}
			if len(sig) != 1 || sig[0] != "Received FAILURE signal with UniqueId "+instanceID {
				t.Fatalf("want one FAILURE signal, got %q\n%s", sig, r.stdout)
			}
			failed := logTime(t, r.stdout, "step failed")
			d := h.signalTime("FAILURE").Sub(failed)
			if d < -time.Second || d > 5*time.Second {
				t.Errorf("FAILURE signalled %v after the step failed, want within 5s", d)
			}
			t.Logf("exit 4, FAILURE %v after the failure: %s", d, strings.TrimSpace(r.stderr))
		})
	}
}

// Docker faults: a container killed after up and the plugin deleted are
// repaired by the next run; the engine stopped in the middle of a run
// fails it with the cause named, a run while it is down says to start it,
// and once it is back the next run repairs the stack. The engine that
// stops is a private dockerd: the host's is shared.
func TestFaultDocker(t *testing.T) {
	ft := &faultTally{}
	t.Cleanup(func() { ft.log(t) })
	sw := watchSecrets(t)

	t.Run("container killed after up", func(t *testing.T) {
		secret := faultSecret(t, "Docker")
		sw.addSecret(secret)
		h, sum := newLightHost(t, "faultdocker", faultScenario(lightBundle(t, "notes\n"), 300*time.Millisecond, 0), secret)
		h.mustConverge("bootstrap")
		before := containers(t, h.project)["app"]
		run(t, "docker", "kill", before.ID)
		ft.faults++
		r := h.mustConverge("reconcile")
		sw.add("reconcile after the kill", r.stdout+r.stderr)
		after := containers(t, h.project)["app"]
		if after.Status != "running" || after.StartedAt == before.StartedAt {
			t.Errorf("the killed container was not brought back: before %+v, after %+v", before, after)
		}
		if !strings.Contains(r.stdout, "stack not converged") || !strings.Contains(r.stdout, "docker compose up") {
			t.Errorf("the run does not say why it brought the stack up:\n%s", r.stdout)
		}

		// The plugin deleted: reinstalled, checksum verified.
		plugin := filepath.Join(h.root, "usr/local/lib/docker/cli-plugins/docker-compose")
		if err := os.Remove(plugin); err != nil {
			t.Fatal(err)
		}
		ft.faults++
		r = h.mustConverge("reconcile")
		sw.add("reconcile after the plugin went", r.stdout+r.stderr)
		if got, err := sha256File(plugin); err != nil || got != sum {
			t.Errorf("the plugin is not back: %s %v", got, err)
		}
		if !strings.Contains(r.stdout, "compose plugin installed") {
			t.Errorf("no line says the plugin was installed again:\n%s", r.stdout)
		}
	})

	t.Run("engine stopped mid-run", func(t *testing.T) {
		secret := faultSecret(t, "Engine")
		sw.addSecret(secret)
		e := newPrivateEngine(t)
		e.load("grafana/tempo:2.6.1")
		h, _ := newLightHost(t, "faultengine", faultScenario(lightBundle(t, "notes\n"), 300*time.Millisecond, 0), secret)
		h.extraEnv = []string{"DOCKER_HOST=unix://" + e.sock}
		writeFile(t, h.config, strings.Replace(readFile(t, h.config), "ready_timeout: 60s", "ready_timeout: 5s", 1))
		t.Cleanup(func() {
			down := e.docker("compose", "--project-name", h.project, "--project-directory", h.stackDir(), "down", "--timeout", "5")
			down.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(h.root, "usr/local/lib/docker"))
			_ = down.Run()
		})
		h.mustConverge("bootstrap")
		if st := e.state(h.project, "app"); st != "running" {
			t.Fatalf("the app on the private engine: %q", st)
		}

		// The container goes, a run starts, and the engine stops as the
		// run reaches compose.
		if out, err := e.docker("rm", "-f", h.project+"-app-1").CombinedOutput(); err != nil {
			t.Fatalf("docker rm: %v\n%s", err, out)
		}
		start := time.Now()
		b := h.startBg(t, "reconcile", 3*time.Minute, "reconcile")
		b.waitLine(t, 60*time.Second, func(l logLine) bool { return l.Msg == "step start" && l.Step == "compose" })
		e.stop()
		ft.faults++
		r := b.wait(t)
		sw.addRun(r)
		t.Logf("engine stopped at compose: exit %d after %v: %s", r.code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))
		// Where the engine is in its shutdown decides the words: "Error
		// response from daemon" while it stops, "Cannot connect to the
		// Docker daemon at unix://..." once it is gone.
		if r.code == 0 || !strings.Contains(r.stderr, "step compose") || !strings.Contains(r.stderr, "daemon") {
			t.Errorf("exit %d, want a failure of compose naming the Docker daemon:\n%s\n%s", r.code, r.stderr, r.stdout)
		}

		// While it is down: the run says to start it.
		r2 := h.monagent("reconcile")
		sw.add("reconcile with the engine down", r2.stdout+r2.stderr)
		t.Logf("engine down: exit %d: %s", r2.code, strings.TrimSpace(r2.stderr))
		if r2.code == 0 || !strings.Contains(r2.stderr, "does not answer") || !strings.Contains(r2.stderr, "start dockerd") {
			t.Errorf("exit %d, want a failure saying the engine does not answer and to start it:\n%s", r2.code, r2.stderr)
		}

		// Back: the next run repairs the stack.
		e.start()
		r3 := h.mustConverge("reconcile")
		sw.add("reconcile with the engine back", r3.stdout+r3.stderr)
		if st := e.state(h.project, "app"); st != "running" {
			t.Errorf("the app after the engine came back: %q", st)
		}
		if n := h.signals(); len(n) != 1 {
			t.Errorf("signals %q", n)
		}
	})
}

// Disk faults: the data volume full, the state directory read-only. Each
// is a clear error naming the path and the cause; nothing is half
// written; once the fault is gone the next run converges.
func TestFaultDisk(t *testing.T) {
	ft := &faultTally{}
	t.Cleanup(func() { ft.log(t) })

	t.Run("data volume full", func(t *testing.T) {
		sw := watchSecrets(t)
		secret := faultSecret(t, "Disk")
		sw.addSecret(secret)
		h, _ := newLightHost(t, "faultdisk", faultScenario(lightBundle(t, "notes\n"), 300*time.Millisecond, 0), secret)
		h.mustConverge("bootstrap", "--until", "volume")
		data := filepath.Join(h.root, "data")
		filled := fillFilesystem(t, data)
		ft.faults++
		r := h.monagent("bootstrap")
		sw.add("bootstrap on a full volume", r.stdout+r.stderr)
		t.Logf("volume full (%s): exit %d: %s", filled, r.code, strings.TrimSpace(r.stderr))
		if r.code == 0 || !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, data) {
			t.Errorf("exit %d, want a failure naming the full volume's path and ENOSPC:\n%s\n%s", r.code, r.stderr, r.stdout)
		}
		checkNothingHalfWritten(t, h, map[string]bool{secret: true})
		if sig := h.signals(); len(sig) != 1 || !strings.Contains(sig[0], "SUCCESS") {
			t.Errorf("signals %q: the volume was there, SUCCESS stands", sig)
		}
		run(t, "rm", "-rf", filepath.Join(data, "filler"))
		h.mustConverge("reconcile")
		if c := containers(t, h.project)["app"]; c.Status != "running" {
			t.Errorf("app: %+v", c)
		}
		// A converged host whose data volume fills up stays converged: no
		// run writes there unless it must.
		fillFilesystem(t, data)
		ft.faults++
		r = h.mustConverge("reconcile")
		sw.add("reconcile of a converged host on a full volume", r.stdout+r.stderr)
		sw.files(h)
		run(t, "rm", "-rf", filepath.Join(data, "filler"))
	})

	for _, tt := range []struct {
		name      string
		readOnly  func(t *testing.T, dir string)
		writeable func(dir string)
		cause     string
	}{
		{"state directory immutable", func(t *testing.T, dir string) { run(t, "chattr", "+i", dir) },
			func(dir string) { _ = exec.Command("chattr", "-i", dir).Run() }, "operation not permitted"},
		{"state directory on a read-only mount", func(t *testing.T, dir string) {
			run(t, "mount", "--bind", dir, dir)
			run(t, "mount", "-o", "remount,bind,ro", dir)
		}, func(dir string) { _ = exec.Command("umount", dir).Run() }, "read-only file system"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, scenario("", ""), "30s")
			h.mustConverge("bootstrap")
			dir := filepath.Join(h.root, "var/lib/monagent")
			statePath := filepath.Join(dir, "state.json")
			before := readFile(t, statePath)
			// Work to do, and so a state to save: the volume unmounted.
			run(t, "umount", filepath.Join(h.root, "data"))
			tt.readOnly(t, dir)
			t.Cleanup(func() { tt.writeable(dir) })
			ft.faults++
			r := h.monagent("reconcile")
			t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
			if r.code == 0 || !strings.Contains(r.stderr, statePath) || !strings.Contains(r.stderr, tt.cause) {
				t.Errorf("exit %d, want a failure naming %s and %q:\n%s", r.code, statePath, tt.cause, r.stderr)
			}
			if after := readFile(t, statePath); after != before {
				ft.torn++
				t.Errorf("the state file changed under a read-only directory")
			}
			if m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(m) > 0 {
				ft.tempLeft += len(m)
				t.Errorf("temporary files left: %v", m)
			}
			tt.writeable(dir)
			h.mustConverge("reconcile")
			if st := readFile(t, statePath); st == before {
				t.Error("the state was not saved once the directory was writable again")
			}
		})
	}
}

// fillFilesystem fills the filesystem at dir, blocks and inodes, under
// dir/filler; it returns what it made.
func fillFilesystem(t testing.TB, dir string) string {
	t.Helper()
	filler := filepath.Join(dir, "filler")
	if err := os.MkdirAll(filler, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 0
	// Blocks: allocations of shrinking sizes until none fits.
	for _, size := range []int64{64 << 20, 1 << 20, 64 << 10, 4 << 10} {
		for ; n < 100000; n++ {
			f, err := os.Create(filepath.Join(filler, strconv.Itoa(n)))
			if err != nil {
				break
			}
			err = unix.Fallocate(int(f.Fd()), 0, 0, size)
			f.Close()
			if err != nil {
				break
			}
		}
	}
	// Inodes: empty files until none can be made.
	for ; n < 200000; n++ {
		f, err := os.Create(filepath.Join(filler, strconv.Itoa(n)))
		if err != nil {
			break
		}
		f.Close()
	}
	if err := os.Mkdir(filepath.Join(dir, "probe"), 0o755); err == nil {
		t.Fatalf("%s still has room after %d files", dir, n)
	}
	var st unix.Statfs_t
	_ = unix.Statfs(dir, &st)
	return fmt.Sprintf("%d files, %d blocks and %d inodes free", n, st.Bavail, st.Ffree)
}

// checkNothingHalfWritten: the state parses, .env is whole and holds one
// of the values, no temporary file is left behind.
func checkNothingHalfWritten(t testing.TB, h *host, passwords map[string]bool) {
	t.Helper()
	if _, err := (&state.Store{Path: filepath.Join(h.root, "var/lib/monagent/state.json")}).Load(); err != nil {
		t.Errorf("state: %v", err)
	}
	if env := readEnv(t, filepath.Join(h.stackDir(), ".env")); !passwords[env["GRAFANA_ADMIN_PASSWORD"]] || len(env) != 2 {
		t.Errorf(".env is not whole: %d keys", len(env))
	}
	for _, dir := range []string{"var/lib/monagent", "opt/monitoring", "etc", "data"} {
		if m, _ := filepath.Glob(filepath.Join(h.root, dir, ".*.tmp-*")); len(m) > 0 {
			t.Errorf("temporary files left: %v", m)
		}
	}
}

// Secrets: a SecureString bound for .env and the generated token never
// show in any process's argv (sampled every 20 ms while the runs go), the
// logs, the errors, the state file, status (text and JSON), doctor, smoke
// or the metrics.
func TestFaultSecrets(t *testing.T) {
	ft := &faultTally{}
	t.Cleanup(func() { ft.log(t) })
	sw := watchSecrets(t)
	secret := faultSecret(t, "Env")
	sw.addSecret(secret)
	h, _ := newLightHost(t, "faultsecret", faultScenario(lightBundle(t, "notes\n"), 300*time.Millisecond, 0), secret)
	// smoke checks the seed stack, which the light one is not: once, briefly.
	writeFile(t, h.config, strings.Replace(readFile(t, h.config), "smoke:\n", "smoke:\n  attempts: 1\n  timeout: 1s\n", 1))
	for _, args := range [][]string{{"bootstrap"}, {"reconcile"}, {"status"}, {"status", "--json"}, {"doctor"}, {"smoke", "--json"}} {
		r := h.runUntil(t, killPoint{}, 3*time.Minute, nil, args...)
		sw.addRun(r)
		t.Logf("%v: exit %d in %v", args, r.code, r.elapsed.Round(time.Millisecond))
		if r.code != 0 && args[0] != "doctor" && args[0] != "smoke" {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.code, r.stderr, r.stdout)
		}
	}
	// A rotated value, and a run that fails with the values in hand.
	rotated := faultSecret(t, "Env")
	sw.addSecret(rotated)
	putParameter(t, h, "/monitoring-production/grafana/admin-password", rotated, true)
	h.control("POST", "/_sim/scenario", fmt.Sprintf("s3:\n  buckets:\n    - name: monitoring-production-scripts\n      objects:\n        - {key: scripts/docker-compose.yml, body: %q}\n",
		strings.Replace(lightCompose, "${GRAFANA_ADMIN_USER}", "${NOT_IN_DOTENV}", 1)))
	r := h.runUntil(t, killPoint{}, 3*time.Minute, nil, "reconcile")
	sw.addRun(r)
	t.Logf("a failing run after the rotation: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	sw.addSecret(getParameter(t, h, "/monitoring-production/prometheus/metrics-bearer-token"))
	sw.files(h)
	if env := readEnv(t, filepath.Join(h.stackDir(), ".env")); env["GRAFANA_ADMIN_PASSWORD"] != rotated {
		t.Error(".env does not hold the rotated value: the test would prove nothing")
	}
	if !sw.sawArgv("monagent", "bootstrap") || !sw.sawArgv("docker", "compose", "up") {
		t.Error("the sampler never saw monagent's or docker compose's argv: it proves nothing")
	}
	// A control: a value in the argv of a process that lives 200 ms is seen.
	canary := faultSecret(t, "Canary")
	run(t, "sh", "-c", "sleep 0.2", canary)
	if !sw.sawArgv(canary) {
		t.Error("the sampler missed a process that lived 200 ms")
	}
	ft.faults += 2
}

// A filesystem whose mkfs never finished (an mkfs killed outright, e.g. by
// the machine going down: xfs marks its superblock "in progress" until
// the end) shows to blkid as xfs: it is never formatted again, and the run
// stops for good, saying why and how to repair it.
func TestFaultHalfMadeFilesystem(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	var uuid string
	prepare(t, h, func(dev string) {
		run(t, "mkfs.xfs", "-q", "-K", dev)
		run(t, "xfs_db", "-x", "-c", "sb 0", "-c", "write inprogress 1", dev)
		uuid = blkid(t, dev)["UUID"]
	})
	r := h.monagent("bootstrap")
	t.Logf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	if strings.Contains(r.stdout, `"argv":["mkfs`) {
		t.Fatal("a volume holding a filesystem was formatted again")
	}
	dev, err := filepath.EvalSymlinks(filepath.Join(h.root, byID))
	if err != nil {
		t.Fatal(err)
	}
	if got := blkid(t, dev)["UUID"]; got != uuid {
		t.Fatalf("the filesystem changed: %s -> %s", uuid, got)
	}
	// Permanent (exit 4: systemd does not restart into it), with the repair
	// that monagent leaves to the operator.
	if r.code != 4 || !strings.Contains(r.stderr, "Structure needs cleaning") || !strings.Contains(r.stderr, "xfs_repair -n "+dev) {
		t.Fatalf("exit %d, want 4: a failure of the mount saying why and how to repair:\n%s", r.code, r.stderr)
	}
	if sig := h.signals(); len(sig) != 1 || !strings.Contains(sig[0], "FAILURE") {
		t.Errorf("signals %q, want one FAILURE", sig)
	}
}
