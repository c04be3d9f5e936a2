package e2e

import (
	"bytes"
	"encoding/json"
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

// BenchmarkBoot is `make bench` (docs/bench.md). It prints its figures,
// each against its bound measured in the same run, and asserts nothing
// about them:
//
//   - signal, healthy: a simulated instance's first boot, with its volume
//     still held by the old instance, to the SUCCESS signal and to every
//     service healthy, against the critical path's bound (benchInstance);
//   - noop: the median wall time of five no-op reconciles on the host
//     rig, their AWS calls by service and the files they rewrite;
//   - rss: the peak resident set of a bootstrap on the host rig (a blank
//     volume to the running light stack); cpu: one reconcile's CPU time;
//   - size: the binary built as shipped.
func BenchmarkBoot(b *testing.B) {
	for range b.N {
		f := benchInstance(b)
		rss, n := benchHost(b)
		size := shippedSize(b)
		b.ReportMetric(f.signal.Seconds()/f.signalBound.Seconds(), "signal-ratio")
		b.ReportMetric(f.healthy.Seconds()/f.healthyBound.Seconds(), "healthy-ratio")
		fmt.Printf("bench: boot to monagent %.2fs (in both bounds); critical path to healthy %s; step costs %v\n",
			f.toMonagent.Seconds(), strings.Join(f.path, " → "), f.cost)
		fmt.Printf("bench: no-op reconcile: AWS calls by service %v, files rewritten %d, steps %v\n", n.byService, n.rewritten, n.steps)
		fmt.Printf("bench: signal=%.2f bound=%.2f ratio=%.2f healthy=%.2f bound=%.2f ratio=%.2f noop=%d calls=%d rss=%.1f cpu=%d size=%.1f\n",
			f.signal.Seconds(), f.signalBound.Seconds(), f.signal.Seconds()/f.signalBound.Seconds(),
			f.healthy.Seconds(), f.healthyBound.Seconds(), f.healthy.Seconds()/f.healthyBound.Seconds(),
			n.wall.Milliseconds(), n.calls, rss, n.cpu.Milliseconds(), float64(size)/(1<<20))
	}
}

// benchHost bootstraps the host rig from a blank volume to the light
// stack and returns the bootstrap's peak RSS in MiB and what the no-op
// reconciles after it measured.
func benchHost(b *testing.B) (float64, noop) {
	h, _ := newLightHost(b, "bench", faultScenario(lightBundle(b, "bench\n"), 0, 0), "bench-Secret-1")
	// The bundle's version parameter, bumped by whoever uploads a bundle:
	// a converged run then asks SSM, in its one batched read, instead of
	// listing the bucket.
	putParameter(b, h, "/monitoring-production/bundle/version", "bundle-upload-20261123T070000Z", true)
	writeFile(b, h.config, readFile(b, h.config)+"bundle:\n  version_parameter: /{prefix}/bundle/version\n")
	cmd := h.command(nil, "bootstrap")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("bootstrap: %v\n%s", err, out.String())
	}
	// Its own peak, from its last line: wait4's figure is the largest of
	// the process and the commands it ran (the Compose plugin's).
	var rss float64
	for _, l := range parseLogFields(out.String()) {
		if l["msg"] == "run converged" {
			rss, _ = l["peak_rss_mib"].(float64)
		}
	}
	if rss == 0 {
		b.Fatalf("no peak_rss_mib on bootstrap's last line:\n%s", out.String())
	}
	return rss, benchNoop(b, h)
}

// parseLogFields decodes monagent's JSON log lines.
func parseLogFields(out string) []map[string]any {
	var lines []map[string]any
	for _, s := range strings.Split(out, "\n") {
		var f map[string]any
		if json.Unmarshal([]byte(s), &f) == nil {
			lines = append(lines, f)
		}
	}
	return lines
}

// noop is what the no-op reconciles measured.
type noop struct {
	wall, cpu        time.Duration
	calls, rewritten int
	byService        map[string]int
	steps            map[string]string // of the first: each step's time, and its own CPU time
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
			n.steps = map[string]string{}
			for _, l := range parseLogFields(out.String()) {
				switch l["msg"] {
				case "step finish":
					n.steps[fmt.Sprint(l["step"])] = fmt.Sprint(l["duration"])
				case "run converged":
					n.steps["own cpu"] = fmt.Sprint(l["cpu"])
				}
			}
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

// mtimes maps every regular file under root to its modification time,
// but for the data volume and monagent's own records of each run, which
// every run rewrites by design: the state file (status's last run and
// timeline) and the metrics textfile.
func mtimes(b *testing.B, root string) map[string]time.Time {
	b.Helper()
	out := map[string]time.Time{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil
		case d.IsDir() && (p == filepath.Join(root, "data") || p == filepath.Join(root, "proc")):
			return filepath.SkipDir
		case !d.Type().IsRegular() || strings.HasSuffix(p, ".prom") || strings.HasSuffix(p, "monagent.lock") ||
			p == filepath.Join(root, "var/lib/monagent/state.json"):
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
