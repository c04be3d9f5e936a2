package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func (h *host) throttledCalls() int {
	h.t.Helper()
	n := 0
	for _, c := range h.calls() {
		if c.Code == "RequestLimitExceeded" || c.Code == "Throttling" {
			n++
		}
	}
	return n
}

func TestExitCodes(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	t.Run("bad config is 2 and names the key", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("prefix: monitoring-production\nvolume:\n  id: vol-xyz\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bins.monagent, "--root", h.root, "--config", bad, "reconcile")
		cmd.Env = h.env()
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), "volume.id") {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("unknown verb and flag are 2", func(t *testing.T) {
		for _, args := range [][]string{{"frobnicate"}, {"reconcile", "--bogus"}, {"reconcile", "--only", "nosuchstep"}} {
			if r := h.monagent(args...); r.code != 2 {
				t.Errorf("%v: exit %d, want 2: %s", args, r.code, r.stderr)
			}
		}
	})
	t.Run("lock held is 3", func(t *testing.T) {
		h.holdLock(t)
		r := h.monagent("--lock-timeout", "500ms", "reconcile")
		if r.code != 3 || !strings.Contains(r.stderr, "lock") {
			t.Fatalf("exit %d, want 3: %s", r.code, r.stderr)
		}
	})
	t.Run("version", func(t *testing.T) {
		r := h.monagent("version")
		if r.code != 0 || !strings.Contains(r.stdout, "go1.") {
			t.Fatalf("exit %d: %s", r.code, r.stdout)
		}
	})
}

// SIGTERM during a wait stops the run and records the step as interrupted.
func TestSigtermInterruptsAndRecords(t *testing.T) {
	h := newHost(t, scenario("      attached_to: i-0fedcba9876543210", ""), "60s")
	cmd := h.command(nil, "reconcile")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to stop after SIGTERM", d)
	}
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	st := h.mustConverge("status", "--json")
	if !strings.Contains(st.stdout, `"interrupted"`) {
		t.Fatalf("volume step not recorded as interrupted:\n%s", st.stdout)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// The configuration the package installs is an example: the boot unit's
// reconcile on it does nothing and succeeds (on a first boot it runs
// before user-data writes the host's configuration), bootstrap refuses.
// Neither calls AWS: the example names another environment's stack.
func TestExampleConfigurationDoesNothing(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	writeFile(t, h.config, readFile(t, "../../packaging/config.example.yaml"))
	h.clearCalls()
	r := h.monagent("reconcile")
	if r.code != 0 || !strings.Contains(r.stdout, "not configured: nothing done") || !strings.Contains(r.stdout, "example: true") {
		t.Fatalf("reconcile on the example: exit %d, want 0 with a notice\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = h.monagent("bootstrap")
	if r.code != 2 || !strings.Contains(r.stderr, "the package's example configuration") {
		t.Fatalf("bootstrap on the example: exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = h.monagent("doctor")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  config: "+h.config+" is the package's example configuration") {
		t.Fatalf("doctor on the example: exit %d, want 1 naming the file\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := h.countCalls(); len(n) != 0 {
		t.Fatalf("AWS calls on the example configuration: %v", n)
	}
	if _, err := os.Stat(filepath.Join(h.root, "var/lib/monagent/state.json")); err == nil {
		t.Fatal("a state file was written")
	}
}
