package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/retry"
)

// A local source (bundle.source) stands in for S3 on a host off AWS. Its
// files' SHA-256 digests play the part of ETags: the listing hashes every
// file, which for a bundle of configuration costs milliseconds.

// listLocal walks the source directory. Only regular files and
// directories are taken: a symlink could point anywhere on the host.
func (s *Step) listLocal(ctx context.Context) ([]object, error) {
	src := filepath.Join(s.o.Root, s.o.Config.Source)
	// The source itself may be a link to the release directory it stands
	// for: the walk below would not go through it, and would take it for
	// a file. Only the source is followed; a link inside it is refused.
	if real, err := filepath.EvalSymlinks(src); err == nil {
		src = real
	}
	fi, err := os.Stat(src)
	if err != nil || !fi.IsDir() {
		return nil, retry.PermanentError(fmt.Errorf("bundle: bundle.source %s is not a directory (%v): install the stack bundle there, or fix bundle.source", s.o.Config.Source, err))
	}
	out := []object{}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file (a symlink or device): copy the file itself into the bundle", rel)
		case s.kept(rel):
			return nil
		}
		sum, size, err := fileSum(p)
		if err != nil {
			return err
		}
		out = append(out, object{key: p, rel: rel, etag: "sha256:" + sum, size: size})
		return nil
	})
	if err != nil {
		return nil, retry.PermanentError(fmt.Errorf("bundle: %s: %w", s.o.Config.Source, err))
	}
	if err := s.checkListing(out); err != nil {
		return nil, retry.PermanentError(fmt.Errorf("bundle: %s: %w", s.o.Config.Source, err))
	}
	return out, nil
}

// copyLocal copies one source file to dst, checking it is still the file
// that was listed.
func (s *Step) copyLocal(o object, dst string) (file, error) {
	in, err := os.Open(o.key)
	if err != nil {
		return file{}, fmt.Errorf("bundle: %w", err)
	}
	defer in.Close()
	if err := atomicfile.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return file{}, fmt.Errorf("bundle: %w", err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return file{}, fmt.Errorf("bundle: %w", err)
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), io.LimitReader(in, o.size+1))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return file{}, fmt.Errorf("bundle: copy %s: %w", o.key, err)
	}
	got := hex.EncodeToString(sum.Sum(nil))
	if n != o.size || "sha256:"+got != o.etag {
		return file{}, errors.New("bundle: " + o.key + " changed while it was copied; the next run copies it again")
	}
	return file{ETag: o.etag, Size: n, SHA256: got}, nil
}
