// Package secretgen keeps the secrets a monitoring host generates for
// itself when there is no SSM to hold them: random keys, a password with
// its bcrypt hash, a self-signed TLS key pair.
//
// Every secret is get-or-create: a rerun returns what the first run
// wrote, byte for byte, because a new value would lock out whoever holds
// the old one (a Grafana login, an encrypted backup, a scraper's basic
// auth). For the same reason a file that exists but is not a valid secret
// is an error naming the file and the fix, never silently replaced. The
// TLS pair is the exception by design: it is renewed before it expires.
//
// Callers serialize runs (the agent's run lock): two processes creating
// the same missing secret at once would each return their own value, and
// the last rename would win.
package secretgen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/monagent/monagent/internal/atomicfile"
)

const (
	dirMode     fs.FileMode = 0o700
	privateMode fs.FileMode = 0o600
	publicMode  fs.FileMode = 0o644 // a certificate: no secret in it
)

// Store keeps secrets as files in Dir.
type Store struct {
	// Dir holds the files. It is made 0700 if missing; missing parents
	// are made 0755, since only the secrets themselves are private.
	Dir string
	// Now is the clock TLS validity is judged by; nil means time.Now.
	Now func() time.Time

	// bcryptCost, when set, replaces BcryptCost: tests under -race on a
	// small machine cannot afford a cost-10 hash in every case.
	bcryptCost int
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// FileError is a file the store will not use as it is, with the command
// or action that fixes it. It never carries the file's content.
type FileError struct {
	Path    string
	Problem string
	Fix     string
	Err     error
}

func (e *FileError) Error() string {
	msg := "secretgen: " + e.Path + ": " + e.Problem
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

func (e *FileError) Unwrap() error { return e.Err }

// path is name's file in the store, once name is known to be one plain
// file name: a name from configuration must not reach outside Dir, nor
// look like atomicfile's ".<base>.tmp-*" temporary files.
func (s *Store) path(name string) (string, error) {
	if name == "" || name[0] == '.' || filepath.Base(name) != name {
		return "", fmt.Errorf("secretgen: secret name %q: want a plain file name, not starting with '.'", name)
	}
	if s.Dir == "" {
		return "", errors.New("secretgen: no directory given")
	}
	return filepath.Join(s.Dir, name), nil
}

// ensureDir makes Dir, or checks that it is as private as one just made.
func (s *Store) ensureDir() error {
	fi, err := os.Stat(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return s.makeDir()
	}
	if err != nil {
		return fmt.Errorf("secretgen: %w", err)
	}
	if !fi.IsDir() {
		return &FileError{Path: s.Dir, Problem: "is not a directory", Fix: "move it away so a directory can be made there"}
	}
	return checkAccess(s.Dir, fi, dirMode)
}

func (s *Store) makeDir() error {
	if err := atomicfile.MkdirAll(filepath.Dir(s.Dir), 0o755); err != nil {
		return fmt.Errorf("secretgen: %w", err)
	}
	if err := os.Mkdir(s.Dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("secretgen: %w", err)
	}
	// Mkdir's mode passes through the umask; 0700 only loses bits to
	// it, but an explicit chmod keeps the mode out of the umask's hands.
	if err := os.Chmod(s.Dir, dirMode); err != nil {
		return fmt.Errorf("secretgen: %w", err)
	}
	if o := owner(); o != nil {
		if err := os.Chown(s.Dir, o.UID, o.GID); err != nil {
			return fmt.Errorf("secretgen: %w", err)
		}
	}
	return nil
}

// owner is root:root when running as root, whatever the process's group;
// otherwise new files simply belong to the process.
func owner() *atomicfile.Owner {
	if os.Geteuid() == 0 {
		return &atomicfile.Owner{UID: 0, GID: 0}
	}
	return nil
}

// checkAccess refuses a path whose mode has any bit beyond want, or that
// belongs to another user than the one running the agent.
//
// A looser mode is an error rather than tightened on the spot: by the
// time we see it, other users may already have read the secret, and a
// silent chmod would hide that from the operator, who must decide whether
// to rotate it. The fix is one command, given in the error.
//
// Only the owning user is checked, not the group: with no group bits in
// the mode the group grants nothing, while the owner can chmod the file.
func checkAccess(path string, fi fs.FileInfo, want fs.FileMode) error {
	if extra := fi.Mode().Perm() &^ want; extra != 0 {
		return &FileError{
			Path:    path,
			Problem: fmt.Sprintf("mode %04o is looser than %04o (other users may have read it)", fi.Mode().Perm(), want),
			Fix:     fmt.Sprintf("run: chmod %o %s, and rotate the secret if it may have leaked", want, path),
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if euid := os.Geteuid(); ok && int(st.Uid) != euid {
		return &FileError{
			Path:    path,
			Problem: fmt.Sprintf("belongs to uid %d, not to uid %d that runs monagent (its owner can read and change it)", st.Uid, euid),
			Fix:     fmt.Sprintf("run: chown %d:%d %s", euid, os.Getegid(), path),
		}
	}
	return nil
}

// read returns path's content, or ok false when it does not exist. A file
// that is not a regular one, or is too open, is an error.
func read(path string, want fs.FileMode) (data []byte, ok bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("secretgen: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, &FileError{Path: path, Problem: "is not a regular file", Fix: "remove it, or replace it with the secret's file"}
	}
	if err := checkAccess(path, fi, want); err != nil {
		return nil, false, err
	}
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("secretgen: %w", err)
	}
	return data, true, nil
}

// write replaces path atomically: a crash leaves the old file or the new,
// never an empty one that the next run would take for corrupt.
func write(path string, data []byte, mode fs.FileMode) error {
	if err := (atomicfile.Options{Owner: owner()}).WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("secretgen: %w", err)
	}
	return nil
}
