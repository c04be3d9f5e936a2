package e2e

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// User-data's bootstrap and the boot unit's reconcile at once, as on a
// first boot: whichever takes the lock first converges the host and sends
// SUCCESS; the other waits on the lock and then finds the host converged.
// One attach, one filesystem, one signal.
func TestConcurrentRunsSerialise(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for i, verb := range []string{"bootstrap", "reconcile"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := h.command(nil, "--log-level", "debug", verb)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			codes[i] = exitCode(cmd.Run())
			outs[i] = out.String()
		}()
	}
	wg.Wait()
	for i := range codes {
		if codes[i] != 0 {
			t.Fatalf("run %d: exit %d\n%s", i, codes[i], outs[i])
		}
	}
	mkfs := strings.Count(outs[0]+outs[1], `"msg":"exec","argv":["mkfs.xfs"`)
	if mkfs != 1 {
		t.Fatalf("mkfs.xfs ran %d times across the two runs", mkfs)
	}
	if n := h.callCount("ec2", "AttachVolume"); n != 1 {
		t.Fatalf("AttachVolume called %d times", n)
	}
	if sig := h.signals(); len(sig) != 1 || !strings.Contains(sig[0], "SUCCESS") {
		t.Fatalf("signals %q", sig)
	}
	// The second run found every step converged and skipped it.
	if !strings.Contains(outs[0], "step skipped") && !strings.Contains(outs[1], "step skipped") {
		t.Fatal("neither run skipped a step: they did not see each other's result")
	}
}

func (h *host) callCount(service, op string) int {
	h.t.Helper()
	n := 0
	for _, c := range h.calls() {
		if c.Service == service && c.Operation == op {
			n++
		}
	}
	return n
}
