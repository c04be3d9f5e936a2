// Package atomicfile replaces a file's content so that a reader, or a crash
// at any moment, sees the old content or the new, never a mix: the data goes
// to a temporary file in the same directory, is synced, and is renamed over
// the file; the directory is then synced so that the rename itself survives
// a crash.
//
// The directory must exist: its mode is the caller's business (a state
// directory is private, a textfile directory is read by another user).
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Owner is a numeric user and group.
type Owner struct {
	UID, GID int
}

// Options are the less common choices of a write.
type Options struct {
	// Owner, if not nil, is given to the new file, e.g. to keep the owner
	// of the file it replaces; otherwise the file belongs to the process.
	Owner *Owner

	// BeforeRename, if not nil, runs once the temporary file is durable and
	// before it replaces the file; tests use it to crash at the worst moment.
	BeforeRename func()

	// Verify, if not nil, runs once the data is written and before the file
	// is replaced; an error leaves the file as it was. WriteFrom uses it to
	// check a download's checksum.
	Verify func() error
}

// WriteFile replaces name with data, mode perm whatever the umask.
func WriteFile(name string, data []byte, perm fs.FileMode) error {
	return Options{}.WriteFile(name, data, perm)
}

// WriteFile replaces name with data, mode perm whatever the umask. A crash
// may leave a temporary file named ".<base>.tmp-*" beside name.
func (o Options) WriteFile(name string, data []byte, perm fs.FileMode) error {
	return o.WriteFrom(name, bytes.NewReader(data), perm)
}

// WriteFrom is WriteFile with the data streamed from r, for files too
// large to hold in memory.
func (o Options) WriteFrom(name string, r io.Reader, perm fs.FileMode) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if err := o.fill(f, r, perm); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if o.Verify != nil {
		if err := o.Verify(); err != nil {
			return err
		}
	}
	if o.BeforeRename != nil {
		o.BeforeRename()
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	return syncDir(dir)
}

// fill gives f its owner, mode and data, syncs and closes it.
func (o Options) fill(f *os.File, r io.Reader, perm fs.FileMode) error {
	defer f.Close() // for the early returns; the error that counts is below
	// Chown before Chmod: a chown may clear the setuid and setgid bits.
	if o.Owner != nil {
		if err := f.Chown(o.Owner.UID, o.Owner.GID); err != nil {
			return err
		}
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// MkdirAll makes dir and its missing parents with mode perm whatever the
// umask: files other users read (a container's configuration, its secret)
// must be reachable however the agent was started. Directories that exist
// keep their mode.
func MkdirAll(dir string, perm fs.FileMode) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("mkdir %s: not a directory", dir)
		}
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, perm)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
