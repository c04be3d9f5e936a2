package state

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	s := &Store{Path: filepath.Join(t.TempDir(), "var/lib/monagent/state.json")}
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Steps) != 0 {
		t.Fatalf("fresh state has steps: %v", st.Steps)
	}
	st.Steps["volume"] = &Record{Status: Succeeded, Fingerprint: "abc", Attempts: 2,
		Start: time.Unix(100, 0).UTC(), Duration: time.Second, Memo: map[string]string{"k": "v"}}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	r := got.Steps["volume"]
	if r == nil || r.Fingerprint != "abc" || r.Attempts != 2 || r.Memo["k"] != "v" || !r.Start.Equal(time.Unix(100, 0)) {
		t.Fatalf("round trip lost data: %+v", r)
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	for name, content := range map[string]string{
		"torn":    `{"version":1,"steps":{"vol`,
		"garbage": "\x00\x01not json",
		"version": `{"version":99,"steps":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := (&Store{Path: p}).Load()
			if err == nil {
				t.Fatal("corrupt state loaded without error")
			}
			if !strings.Contains(err.Error(), "move it aside") {
				t.Errorf("error does not say how to recover: %v", err)
			}
		})
	}
}

// TestCrashBeforeRename kills a real process between the temp write and the
// rename; the old state must survive whole.
func TestCrashBeforeRename(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	old := &State{Steps: map[string]*Record{"volume": {Status: Succeeded, Fingerprint: "old"}}}
	if err := (&Store{Path: p}).Save(old); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashingWriter$")
	cmd.Env = append(os.Environ(), "STATE_CRASH_PATH="+p)
	err := cmd.Run()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed as planned: %v", err)
	}
	got, err := (&Store{Path: p}).Load()
	if err != nil {
		t.Fatalf("state unreadable after crash: %v", err)
	}
	if got.Steps["volume"].Fingerprint != "old" {
		t.Fatalf("state changed by a crashed write: %+v", got.Steps["volume"])
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".state.json.tmp-*"))
	if len(leftovers) != 1 {
		t.Fatalf("want the crashed temp file left behind (proving the crash hit mid-write), got %v", leftovers)
	}
	// The next save still works beside the stale temp file.
	if err := (&Store{Path: p}).Save(&State{Steps: map[string]*Record{}}); err != nil {
		t.Fatal(err)
	}
}

func TestHelperCrashingWriter(t *testing.T) {
	p := os.Getenv("STATE_CRASH_PATH")
	if p == "" {
		return // only meaningful as the child of TestCrashBeforeRename
	}
	s := &Store{Path: p, afterTemp: func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }}
	_ = s.Save(&State{Steps: map[string]*Record{"volume": {Status: Succeeded, Fingerprint: "new"}}})
	t.Fatal("survived the crash")
}
