package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "file")
	if err := WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The umask (usually 022) must not take the group and other write bits.
	if err := WriteFile(p, []byte("new\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "new\n" {
		t.Errorf("content = %q, want %q", got, "new\n")
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 {
		t.Errorf("mode = %v, want 0666", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("directory holds %v, want only the file (no temp files left)", ents)
	}
}

func TestWriteFileLeavesDirectoriesToTheCaller(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	err := WriteFile(filepath.Join(missing, "file"), []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("write into a missing directory: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the directory was created: %v", err)
	}
}

func TestOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	p := filepath.Join(t.TempDir(), "file")
	o := Options{Owner: &Owner{UID: 1234, GID: 2345}}
	if err := o.WriteFile(p, []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 2345 || fi.Mode().Perm() != 0o640 {
		t.Errorf("owner %d:%d mode %v, want 1234:2345 0640", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

func TestBeforeRename(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	var during string
	o := Options{BeforeRename: func() {
		b, _ := os.ReadFile(p)
		during = string(b)
	}}
	if err := o.WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if during != "old" {
		t.Errorf("before the rename the file held %q, want %q", during, "old")
	}
}

// TestCrashBeforeRename kills a real process between the temp write and the
// rename; the old file must survive whole.
func TestCrashBeforeRename(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashingWriter$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_CRASH_PATH="+p)
	err := cmd.Run()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed as planned: %v", err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("file unreadable after crash: %v", err)
	}
	if string(got) != "old" {
		t.Fatalf("file changed by a crashed write: %q", got)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".file.tmp-*"))
	if len(leftovers) != 1 {
		t.Fatalf("want the crashed temp file left behind (proving the crash hit mid-write), got %v", leftovers)
	}
	// The next write still works beside the stale temp file.
	if err := WriteFile(p, []byte("next"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "next" {
		t.Fatalf("after the crash a write left %q", got)
	}
}

func TestHelperCrashingWriter(t *testing.T) {
	p := os.Getenv("ATOMICFILE_CRASH_PATH")
	if p == "" {
		return // only meaningful as the child of TestCrashBeforeRename
	}
	o := Options{BeforeRename: func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }}
	_ = o.WriteFile(p, []byte("new"), 0o600)
	t.Fatal("survived the crash")
}
