package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The latencies BenchmarkBoot injects through awssim: the volume is held
// by the old instance, which lets go after benchRelease; a detach and an
// attach take benchAttach each.
const (
	benchRelease = 3 * time.Second
	benchAttach  = time.Second
	benchOld     = "i-0fedcba9876543210"
)

// BenchmarkBoot is `make bench`: a bootstrap on the host rig from a blank
// volume still held by the old instance to the running light stack, then
// no-op reconciles. It prints its figures, each time against its bound,
// and asserts nothing about them:
//
//   - signal: boot to SUCCESS, against the critical path to it: the wait
//     for the release, the detach and the attach (injected), and the
//     mkfs and mount this machine takes (measured in the same run);
//   - healthy: boot to the stack's container running, against the signal's
//     bound plus `docker compose up` (measured);
//   - noop: the median wall time of five no-op reconciles, their AWS calls
//     and the files they rewrite;
//   - rss: bootstrap's peak resident set; cpu: one reconcile's CPU time;
//   - size: the binary built as shipped.
func BenchmarkBoot(b *testing.B) {
	for range b.N {
		benchBoot(b)
	}
}

func benchBoot(b *testing.B) {
	h, _ := newLightHost(b, "bench", faultScenario(lightBundle(b, "bench\n"), benchAttach, 0), "bench-Secret-1")
	// The old instance's attachment, installed now so that its release
	// counts from the boot.
	held := fmt.Sprintf("ec2:\n  instances: [{id: %s, az: eu-west-1a}]\n  volumes:\n    - {id: %s, size_gib: 2, az: eu-west-1a, encrypted: true, attached_to: %s, release_after: %s}\n",
		benchOld, volumeID, benchOld, benchRelease)
	h.control("POST", "/_sim/scenario", held)
	start := time.Now()

	cmd := h.command(nil, "bootstrap", "--log-level", "debug")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	healthy := make(chan time.Time, 1)
	go watchHealthy(h.project, healthy)
	if err := cmd.Run(); err != nil {
		b.Fatalf("bootstrap: %v\n%s", err, out.String())
	}
	rssMiB := float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024 // Maxrss is in KiB
	var healthyAt time.Time
	select {
	case healthyAt = <-healthy:
	case <-time.After(5 * time.Second):
		b.Fatal("the stack's container never ran")
	}
	logs := out.String()
	signalAt := logTime(b, logs, "cloudformation signal sent")
	mkfs, mount := execDuration(b, logs, "mkfs.xfs"), execDuration(b, logs, "mount")
	up := execDuration(b, logs, "docker")
	signalBound := benchRelease + 2*benchAttach + mkfs + mount
	healthyBound := signalBound + up

	n := benchNoop(b, h)
	size := shippedSize(b)
	signal, toHealthy := signalAt.Sub(start), healthyAt.Sub(start)
	b.ReportMetric(signal.Seconds()/signalBound.Seconds(), "signal-ratio")
	b.ReportMetric(toHealthy.Seconds()/healthyBound.Seconds(), "healthy-ratio")
	b.Logf("measured in this run: mkfs %v, mount %v, docker compose up %v", mkfs, mount, up)
	fmt.Printf("bench: signal=%.2f bound=%.2f ratio=%.2f healthy=%.2f bound=%.2f ratio=%.2f noop=%d calls=%d rss=%.1f cpu=%d size=%.1f\n",
		signal.Seconds(), signalBound.Seconds(), signal.Seconds()/signalBound.Seconds(),
		toHealthy.Seconds(), healthyBound.Seconds(), toHealthy.Seconds()/healthyBound.Seconds(),
		n.wall.Milliseconds(), n.calls, rssMiB, n.cpu.Milliseconds(), float64(size)/(1<<20))
	fmt.Printf("bench: no-op reconcile: AWS calls by service %v, files rewritten %d\n", n.byService, n.rewritten)
}

// noop is what the no-op reconciles measured.
type noop struct {
	wall, cpu        time.Duration
	calls, rewritten int
	byService        map[string]int
}

// watchHealthy sends the time the project's container first runs.
func watchHealthy(project string, at chan<- time.Time) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("docker", "ps", "-q", "--filter", "label=com.docker.compose.project="+project,
			"--filter", "status=running").Output()
		if len(bytes.TrimSpace(out)) > 0 {
			at <- time.Now()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// execDuration is the duration of the first program whose argv starts
// with name, from the debug "exec done" line.
func execDuration(b *testing.B, logs, name string) time.Duration {
	b.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"msg":"exec done"`) || !strings.Contains(line, `"argv":["`+name+`"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, `"duration":`)
		d, err := time.ParseDuration(strings.Trim(strings.SplitN(rest, ",", 2)[0], `"}`))
		if err != nil {
			b.Fatalf("duration in %s: %v", line, err)
		}
		return d
	}
	b.Fatalf("no exec of %s in the log", name)
	return 0
}

// benchNoop runs five no-op reconciles: the median wall time, the AWS
// calls and the CPU time of one, the files under the root any rewrote.
func benchNoop(b *testing.B, h *host) noop {
	b.Helper()
	before := mtimes(b, h.root)
	var walls []time.Duration
	var n noop
	for i := range 5 {
		h.clearCalls()
		cmd := h.command(nil, "reconcile")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("reconcile: %v\n%s", err, out.String())
		}
		walls = append(walls, time.Since(t0))
		if i == 0 {
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			n.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			n.byService = h.countCalls()
			for _, c := range n.byService {
				n.calls += c
			}
		}
	}
	slices.Sort(walls)
	n.wall = walls[len(walls)/2]
	for p, m := range mtimes(b, h.root) {
		if old, ok := before[p]; ok && !old.Equal(m) {
			b.Logf("rewritten by a no-op reconcile: %s", p)
			n.rewritten++
		}
	}
	return n
}

// mtimes maps every regular file under root, the data volume and the
// metrics textfile (rewritten by design after every run) aside, to its
// modification time.
func mtimes(b *testing.B, root string) map[string]time.Time {
	b.Helper()
	out := map[string]time.Time{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil
		case d.IsDir() && (p == filepath.Join(root, "data") || p == filepath.Join(root, "proc")):
			return filepath.SkipDir
		case !d.Type().IsRegular() || strings.HasSuffix(p, ".prom") || strings.HasSuffix(p, "monagent.lock"):
			return nil
		}
		if fi, err := d.Info(); err == nil {
			out[p] = fi.ModTime()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// shippedSize is the size of monagent built as `make build` does.
func shippedSize(b *testing.B) int64 {
	b.Helper()
	out := filepath.Join(b.TempDir(), "monagent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "../../cmd/monagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, msg)
	}
	fi, err := os.Stat(out)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}
