package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With NOTIFY_SOCKET set, as systemd sets it for the unit, each step's
// progress arrives as STATUS= on the socket.
func TestSdNotifyStatusPerStep(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()

	cmd := h.command(nil, "bootstrap")
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	var msgs []string
	timeout := time.After(2 * time.Second)
collect:
	for {
		select {
		case m := <-got:
			msgs = append(msgs, m)
			if strings.HasPrefix(m, "STATUS=bootstrap converged in ") {
				break collect
			}
		case <-timeout:
			break collect
		}
	}
	joined := strings.Join(msgs, "\n")
	if !strings.Contains(joined, "STATUS=reading instance metadata") {
		t.Errorf("no metadata status in:\n%s", joined)
	}
	// Steps that need nothing of each other start together.
	for _, want := range []string{"STATUS=running: packages, volume", "STATUS=running: signal"} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in:\n%s", want, joined)
		}
	}
	if !strings.Contains(joined, "EXTEND_TIMEOUT_USEC=") {
		t.Errorf("no step extended the start timeout:\n%s", joined)
	}
	// The lock wait is bounded by --lock-timeout (15 min), not by the
	// unit's 5 min: systemd must not kill a run that waits for a backup.
	if !strings.Contains(joined, "STATUS=waiting for the run lock\nEXTEND_TIMEOUT_USEC=960000000\n") {
		t.Errorf("the lock wait does not extend the start timeout to --lock-timeout and a minute:\n%s", joined)
	}
	if last := msgs[len(msgs)-1]; !strings.HasPrefix(last, "STATUS=bootstrap converged in ") {
		t.Errorf("last status %q, want the outcome with the run's duration:\n%s", last, joined)
	}
}
