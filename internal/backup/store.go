package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/monagent/monagent/internal/atomicfile"
)

// Store keeps archives by name.
type Store interface {
	// Put stores r's content under name, a name ArchiveName made. A Put
	// that fails, r's error included, leaves nothing under name.
	Put(ctx context.Context, name string, r io.Reader) error
	// Open reads an archive. A missing one is an error wrapping
	// fs.ErrNotExist.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the names of the archives (names ArchiveName made, and
	// nothing else), oldest first.
	List(ctx context.Context) ([]string, error)
	// Delete removes an archive; a missing one is not an error.
	Delete(ctx context.Context, name string) error
}

// Save packs parts into s under name, streaming, and returns the manifest.
// On error nothing is left under name.
func Save(ctx context.Context, s Store, name string, r age.Recipient, parts []Part, meta map[string]string) (Manifest, error) {
	pr, pw := io.Pipe()
	var m Manifest
	packed := make(chan error, 1)
	go func() {
		var err error
		m, err = Pack(ctx, pw, r, parts, meta)
		pw.CloseWithError(err) // nil: Put reads io.EOF
		packed <- err
	}()
	putErr := s.Put(ctx, name, pr)
	pr.CloseWithError(errStoreStopped) // Pack's next write fails, if Put ended early
	packErr := <-packed
	switch {
	case packErr != nil && !errors.Is(packErr, errStoreStopped):
		return Manifest{}, fmt.Errorf("save %s: %w", name, packErr)
	case putErr != nil:
		return Manifest{}, fmt.Errorf("save %s: %w", name, putErr)
	case packErr != nil:
		return Manifest{}, fmt.Errorf("save %s: %w", name, packErr)
	}
	return m, nil
}

var errStoreStopped = errors.New("the store stopped reading the archive")

// Restore unpacks the archive name of s into dir, an empty directory; see
// Unpack, whose warning holds: on error, dir holds garbage.
func Restore(ctx context.Context, s Store, name string, id age.Identity, dir string) (Manifest, error) {
	rc, err := s.Open(ctx, name)
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %w", err)
	}
	defer rc.Close()
	m, err := Unpack(ctx, rc, id, dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("archive %s: %w", name, err)
	}
	return m, nil
}

// Prune deletes all but the newest keep archives of s named for host (by
// the time in their names), and returns the names it deleted, also on
// error. Archives of other hosts in the same store are never touched:
// two deployments may share a location.
func Prune(ctx context.Context, s Store, host string, keep int) (deleted []string, err error) {
	if keep < 1 {
		return nil, fmt.Errorf("prune: keep is %d: it must be at least 1, or every backup would be deleted (set the retention count to 1 or more)", keep)
	}
	names, err := listOf(ctx, s, host)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	for _, name := range names[:max(0, len(names)-keep)] {
		if err := s.Delete(ctx, name); err != nil {
			return deleted, fmt.Errorf("prune: %w", err)
		}
		deleted = append(deleted, name)
	}
	return deleted, nil
}

// Latest is the name of the newest archive of s named for host.
func Latest(ctx context.Context, s Store, host string) (string, error) {
	names, err := listOf(ctx, s, host)
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no backups of %s in %v: %w", nameHost(host), s, fs.ErrNotExist)
	}
	return names[len(names)-1], nil
}

// listOf is the archives of s named for host, oldest first.
func listOf(ctx context.Context, s Store, host string) ([]string, error) {
	names, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	want := nameHost(host)
	return slices.DeleteFunc(sortArchives(names), func(n string) bool {
		h, _, _ := ParseArchiveName(n)
		return h != want
	}), nil
}

// sortArchives keeps the archive names of names, oldest first: by the time
// in the name, then by name.
func sortArchives(names []string) []string {
	type archive struct {
		name string
		unix int64
	}
	var as []archive
	for _, n := range names {
		if _, t, ok := ParseArchiveName(n); ok {
			as = append(as, archive{n, t.Unix()})
		}
	}
	slices.SortFunc(as, func(a, b archive) int {
		return cmp.Or(cmp.Compare(a.unix, b.unix), strings.Compare(a.name, b.name))
	})
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.name
	}
	return out
}

// checkArchiveName guards Put and Delete: they change only archives.
func checkArchiveName(name string) error {
	if _, _, ok := ParseArchiveName(name); !ok {
		return fmt.Errorf("%q is not an archive name (want %sHOST-YYYYMMDDTHHMMSSZ%s)", name, namePrefix, nameSuffix)
	}
	return nil
}

// checkBase guards Open, which also reads an archive an operator renamed:
// any file name, but one, in the store.
func checkBase(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%q is not a file name", name)
	}
	return nil
}

// LocalStore keeps archives in a directory, made 0700 if missing; each
// archive is a file, 0600.
type LocalStore struct {
	Dir string
}

func (s LocalStore) String() string { return s.Dir }

// Put writes to a temporary file in the directory, syncs it and renames it:
// a crash leaves the old archive or the new, never a part of one under name,
// at most a ".<name>.tmp-*" file that List ignores.
func (s LocalStore) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkArchiveName(name); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if err := atomicfile.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return atomicfile.Options{}.WriteFrom(filepath.Join(s.Dir, name), ctxReader{ctx, r}, 0o600)
}

func (s LocalStore) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkBase(name); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(s.Dir, name))
}

// List returns the archives among the directory's regular files; a missing
// directory holds none.
func (s LocalStore) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	des, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var names []string
	for _, de := range des {
		if de.Type().IsRegular() {
			names = append(names, de.Name())
		}
	}
	return sortArchives(names), nil
}

func (s LocalStore) Delete(ctx context.Context, name string) error {
	if err := checkArchiveName(name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
