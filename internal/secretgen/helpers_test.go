package secretgen

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// old is the mtime files are set to before a rerun, so that a rewrite
// shows whatever the file system's timestamp granularity.
func old() time.Time { return time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC) }

// snapshot is what a rerun must leave alone: bytes, inode, mtime.
type snapshot struct {
	data  []byte
	ino   uint64
	mtime time.Time
}

// freeze backdates path and records it.
func freeze(t *testing.T, path string) snapshot {
	t.Helper()
	if err := os.Chtimes(path, old(), old()); err != nil {
		t.Fatal(err)
	}
	return snap(t, path)
}

func snap(t *testing.T, path string) snapshot {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{data: data, ino: fi.Sys().(*syscall.Stat_t).Ino, mtime: fi.ModTime()}
}

func assertUntouched(t *testing.T, path string, before snapshot) {
	t.Helper()
	after := snap(t, path)
	if !bytes.Equal(after.data, before.data) {
		t.Errorf("%s: content changed", filepath.Base(path))
	}
	if after.ino != before.ino || !after.mtime.Equal(before.mtime) {
		t.Errorf("%s: rewritten (inode %d -> %d, mtime %v -> %v)", filepath.Base(path), before.ino, after.ino, before.mtime, after.mtime)
	}
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %04o, want %04o", filepath.Base(path), fi.Mode().Perm(), want)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
		t.Errorf("%s: owner uid %d, want %d", filepath.Base(path), uid, os.Geteuid())
	}
}

// assertErr checks err mentions every one of want and none of secrets.
func assertErr(t *testing.T, err error, want []string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q quotes the file's content %q", err, s)
		}
	}
}

// newStore is a store with the production bcrypt cost.
func newStore(t *testing.T) *Store {
	t.Helper()
	return &Store{Dir: filepath.Join(t.TempDir(), "etc", "secrets")}
}

// fastStore hashes at a cost tests can afford under -race, for tests
// about something else than the cost.
func fastStore(t *testing.T) *Store {
	s := newStore(t)
	s.bcryptCost = bcrypt.MinCost + 1
	return s
}

func writeFile(t *testing.T, path, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
