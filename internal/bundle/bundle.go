// Package bundle is the bundle step: the stack bundle (compose file and
// service configuration) copied from s3://<bucket>/<key_prefix> into the
// stack directory.
//
// Every changed object is downloaded into a staging directory beside the
// stack directory and checked (size, and MD5 against a single-part ETag)
// before anything in the stack directory changes; only then is each file
// renamed into place, one atomic rename per file. The directory itself is
// not swapped: running containers bind-mount files and directories of it,
// and a swapped-out tree would leave them on deleted files. The compose
// step recreates the services whose mounted files changed.
package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
)

// S3API is the part of *s3.Client the step uses.
type S3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Params reads SSM parameters; *ssmparam.Store is one.
type Params interface {
	Get(ctx context.Context, name string, optFns ...func(*ssm.Options)) (ssmparam.Parameter, error)
}

// Options are the step's collaborators.
type Options struct {
	Root   string
	Config config.Bundle
	// Keep are paths relative to the stack directory that the bundle never
	// deletes or overwrites (.env, secret files), besides Config.Keep.
	Keep   []string
	S3     S3API
	Params Params
	Log    *zap.Logger
}

// file is one file of the bundle as last installed.
type file struct {
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// object is one object of the listing.
type object struct {
	key, rel, etag string
	size           int64
}

// Step syncs the bundle.
type Step struct {
	o    Options
	keep []string

	bucket  string
	listing []object // nil until listed in this run
	listErr error
	warning string

	installed map[string]file // rel -> file, from the memo and then the sync

	// version is bundle.version_parameter's value read this run;
	// lastVersion the one the installed files were listed at.
	version, lastVersion string
	versionRead          bool
}

// New returns the step.
func New(o Options) *Step {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	keep := append(slices.Clone(o.Keep), o.Config.Keep...)
	// A prefix names a folder: without its slash, "monitoring" would
	// also take in monitoring-old/.
	if p := o.Config.KeyPrefix; p != "" && !strings.HasSuffix(p, "/") {
		o.Config.KeyPrefix = p + "/"
	}
	return &Step{o: o, keep: keep, installed: map[string]file{}}
}

// Restore implements engine.Memoizer.
func (s *Step) Restore(memo map[string]string) {
	s.installed = map[string]file{}
	if err := json.Unmarshal([]byte(memo["files"]), &s.installed); err != nil {
		s.installed = map[string]file{}
	}
	s.lastVersion = memo["version"]
}

// Memo implements engine.Memoizer.
func (s *Step) Memo() map[string]string {
	b, _ := json.Marshal(s.installed)
	return map[string]string{"bucket": s.bucket, "files": string(b), "version": s.lastVersion}
}

// Warning implements engine.Warner.
func (s *Step) Warning() string { return s.warning }

// Digest is one hash of the installed bundle's files, for the compose
// step's fingerprint.
func (s *Step) Digest() string {
	h := sha256.New()
	for _, rel := range slices.Sorted(maps.Keys(s.installed)) {
		fmt.Fprintf(h, "%s %s\n", rel, s.installed[rel].SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Step) dir() string { return filepath.Join(s.o.Root, s.o.Config.Dir) }

// Fingerprint is where the bundle comes from and goes.
func (s *Step) Fingerprint(ctx context.Context) (string, error) {
	bucket, err := s.resolveBucket(ctx)
	if err != nil {
		return "", err
	}
	return strings.Join(append([]string{bucket, s.o.Config.KeyPrefix, s.o.Config.Dir, s.o.Config.VersionParameter}, s.keep...), "|"), nil
}

// Check passes when the listing's ETags are those last installed and every
// installed file is still there, unchanged. When S3 cannot be reached and
// the files are intact, that is a warning, not a failure.
func (s *Step) Check(ctx context.Context) (bool, error) {
	intact := s.intact()
	if s.unchangedVersion(ctx) && intact && len(s.installed) > 0 {
		return true, nil
	}
	listing, err := s.list(ctx)
	if err != nil {
		if retry.Unreachable(err) && intact && len(s.installed) > 0 {
			s.warning = fmt.Sprintf("could not list s3://%s/%s (%v); the files installed by the last sync are intact", s.bucket, s.o.Config.KeyPrefix, err)
			s.o.Log.Warn("bundle listing failed; the installed bundle is intact", zap.Error(err))
			return true, nil
		}
		return false, err
	}
	if !intact {
		return false, nil
	}
	if len(listing) != len(s.installed) {
		return false, nil
	}
	for _, o := range listing {
		if f, ok := s.installed[o.rel]; !ok || f.ETag != o.etag || f.Size != o.size {
			return false, nil
		}
	}
	s.lastVersion = s.version
	return true, nil
}

// unchangedVersion reads bundle.version_parameter (from the run's
// up-front batched read) and reports whether it is the value the
// installed files were listed at. Any doubt (no parameter, not readable)
// is a change: the bucket is listed.
func (s *Step) unchangedVersion(ctx context.Context) bool {
	s.readVersion(ctx)
	return s.version != "" && s.version == s.lastVersion
}

// readVersion reads bundle.version_parameter once per run, before the
// bucket is listed: an upload after the read bumps it again.
func (s *Step) readVersion(ctx context.Context) {
	name := s.o.Config.VersionParameter
	if name == "" || s.o.Config.Source != "" || s.versionRead {
		return
	}
	s.versionRead = true
	p, err := s.o.Params.Get(ctx, name)
	if err != nil {
		s.o.Log.Info("bundle version parameter not read; listing the bucket", zap.String("parameter", name), zap.Error(err))
		return
	}
	// Kept as a digest: the memo passes the redactor, which would mask a
	// value read as a SecureString, and the value itself says nothing.
	sum := sha256.Sum256([]byte(strings.TrimSpace(p.Value)))
	s.version = hex.EncodeToString(sum[:])
}

// intact reports whether every installed file is on disk as installed.
func (s *Step) intact() bool {
	for rel, f := range s.installed {
		sum, size, err := fileSum(filepath.Join(s.dir(), rel))
		if err != nil || sum != f.SHA256 || size != f.Size {
			s.o.Log.Info("bundle file missing or changed", zap.String("file", rel))
			return false
		}
	}
	return true
}

// Apply downloads what changed into staging, then renames it into place
// and removes what the bundle no longer holds.
func (s *Step) Apply(ctx context.Context) error {
	s.readVersion(ctx)
	listing, err := s.list(ctx)
	if err != nil {
		return err
	}
	if len(listing) == 0 && s.o.Config.Source != "" {
		return retry.PermanentError(fmt.Errorf("bundle: %s holds no files: install the stack bundle there, or fix bundle.source", s.o.Config.Source))
	}
	if len(listing) == 0 {
		return retry.PermanentError(fmt.Errorf("bundle: s3://%s/%s holds no objects: upload the stack bundle there, or fix bundle.key_prefix", s.bucket, s.o.Config.KeyPrefix))
	}
	if err := atomicfile.MkdirAll(s.dir(), 0o755); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	staging, err := os.MkdirTemp(filepath.Dir(s.dir()), "."+filepath.Base(s.dir())+".staging-")
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer os.RemoveAll(staging)
	next := map[string]file{}
	var changed []string
	for _, o := range listing {
		if f, ok := s.installed[o.rel]; ok && f.ETag == o.etag && f.Size == o.size {
			if sum, size, err := fileSum(filepath.Join(s.dir(), o.rel)); err == nil && sum == f.SHA256 && size == f.Size {
				next[o.rel] = f
				continue
			}
		}
		f, err := s.download(ctx, o, filepath.Join(staging, filepath.FromSlash(o.rel)))
		if err != nil {
			return err
		}
		next[o.rel], changed = f, append(changed, o.rel)
	}
	if err := s.commit(staging, changed, next); err != nil {
		return err
	}
	s.installed = next
	// The version read before the listing: an upload after it bumps the
	// parameter again, and the next run lists.
	s.lastVersion = s.version
	s.o.Log.Info("bundle installed", zap.String("bucket", s.bucket), zap.String("dir", s.dir()),
		zap.Int("files", len(next)), zap.Strings("changed", changed))
	return nil
}

// commit removes the files the bundle no longer holds, with the
// directories that leaves empty, then renames the staged files into place:
// in that order, a file that became a directory (or the other way round)
// finds its path free. Nothing kept is touched.
func (s *Step) commit(staging string, changed []string, next map[string]file) error {
	for _, rel := range slices.Sorted(maps.Keys(s.installed)) {
		if _, ok := next[rel]; ok || s.kept(rel) {
			continue
		}
		if err := s.remove(rel); err != nil {
			return err
		}
	}
	for _, rel := range changed {
		dst := filepath.Join(s.dir(), filepath.FromSlash(rel))
		if err := s.safeParent(rel); err != nil {
			return err
		}
		if err := atomicfile.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if err := os.Rename(filepath.Join(staging, filepath.FromSlash(rel)), dst); err != nil {
			return fmt.Errorf("bundle: install %s: %w", rel, err)
		}
	}
	return syncDir(s.dir())
}

// remove deletes rel, no longer in the bundle, and the directories above
// it that this leaves empty.
func (s *Step) remove(rel string) error {
	if err := s.safeParent(rel); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.dir(), filepath.FromSlash(rel))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle: remove %s, no longer in the bundle: %w", rel, err)
	}
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if os.Remove(filepath.Join(s.dir(), filepath.FromSlash(d))) != nil {
			break // not empty, or gone
		}
	}
	return nil
}

// safeParent refuses to write under a symlinked directory of the stack
// directory: a link could lead a bundle file anywhere on the host.
func (s *Step) safeParent(rel string) error {
	p := s.dir()
	parts := strings.Split(path.Dir(rel), "/")
	for _, part := range parts {
		if part == "." {
			break
		}
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return retry.PermanentError(fmt.Errorf("bundle: %s would be written through the symlink %s: remove the link, or list the path in bundle.keep", rel, p))
		}
	}
	return nil
}

func (s *Step) kept(rel string) bool {
	for _, k := range s.keep {
		if rel == k || strings.HasPrefix(rel, strings.TrimSuffix(k, "/")+"/") {
			return true
		}
	}
	return false
}

func fileSum(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("bundle: sync %s: %w", dir, err)
	}
	return nil
}

// md5OfETag returns the MD5 a single-part ETag stands for, or "" for a
// multipart one ("<hex>-<parts>"), which is not a digest of the content.
func md5OfETag(etag string) string {
	e := strings.Trim(etag, `"`)
	if len(e) != 32 || strings.Contains(e, "-") {
		return ""
	}
	if _, err := hex.DecodeString(e); err != nil {
		return ""
	}
	return strings.ToLower(e)
}
