package bundle

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
)

// objectTimeout bounds the download of one object; bundle files are
// configuration, kilobytes to a few megabytes.
const objectTimeout = 2 * time.Minute

// A bundle is configuration: an object or a listing far larger than these
// is a wrong prefix or a wrong upload, and would fill the root disk.
const (
	maxObject = 64 << 20
	maxBundle = 256 << 20
)

// resolveBucket is bundle.bucket, or the value of bundle.bucket_parameter.
func (s *Step) resolveBucket(ctx context.Context) (string, error) {
	if s.bucket != "" {
		return s.bucket, nil
	}
	if src := s.o.Config.Source; src != "" {
		s.bucket = "local:" + src
		return s.bucket, nil
	}
	if b := s.o.Config.Bucket; b != "" {
		s.bucket = b
		return b, nil
	}
	p, err := s.o.Params.Get(ctx, s.o.Config.BucketParameter)
	switch {
	case errors.Is(err, ssmparam.ErrNotFound):
		return "", retry.PermanentError(fmt.Errorf("bundle: %w (create it with the scripts bucket's name, or set bundle.bucket)", err))
	case err != nil:
		return "", fmt.Errorf("bundle: %w", err)
	}
	s.bucket = strings.TrimSpace(p.Value)
	return s.bucket, nil
}

// list lists the bundle once per run, every page, and checks every key.
func (s *Step) list(ctx context.Context) ([]object, error) {
	if s.listing != nil || s.listErr != nil {
		return s.listing, s.listErr
	}
	s.listing, s.listErr = s.listAll(ctx)
	return s.listing, s.listErr
}

func (s *Step) listAll(ctx context.Context) ([]object, error) {
	if s.o.Config.Source != "" {
		return s.listLocal(ctx)
	}
	bucket, err := s.resolveBucket(ctx)
	if err != nil {
		return nil, err
	}
	prefix := s.o.Config.KeyPrefix
	out := []object{}
	p := s3.NewListObjectsV2Paginator(s.o.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if code := retry.Code(err); code == "NoSuchBucket" || code == "AccessDenied" {
				return nil, retry.PermanentError(fmt.Errorf("bundle: list s3://%s/%s: %w (check bundle.bucket or its parameter, and that the instance role has s3:ListBucket and s3:GetObject on it)", bucket, prefix, err))
			}
			return nil, fmt.Errorf("bundle: list s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if strings.HasSuffix(key, "/") && aws.ToInt64(o.Size) == 0 {
				continue // a "folder" made by the console
			}
			rel, err := relPath(key, prefix)
			if err != nil {
				return nil, retry.PermanentError(fmt.Errorf("bundle: s3://%s/%s: %w", bucket, key, err))
			}
			if s.kept(rel) {
				s.o.Log.Warn("the bundle carries a kept path; it is not installed", zap.String("key", key))
				continue
			}
			out = append(out, object{key: key, rel: rel, etag: aws.ToString(o.ETag), size: aws.ToInt64(o.Size)})
		}
	}
	if err := s.checkListing(out); err != nil {
		return nil, retry.PermanentError(fmt.Errorf("bundle: s3://%s/%s: %w", bucket, prefix, err))
	}
	return out, nil
}

// checkListing refuses a bundle that cannot be installed as one tree, or
// that is too large to be configuration: a key that is both a file and
// the folder of another, a key where a kept path needs a folder, an
// object or a whole larger than the caps.
func (s *Step) checkListing(objs []object) error {
	byRel := map[string]object{}
	var total int64
	for _, o := range objs {
		byRel[o.rel] = o
		if o.size > maxObject {
			return fmt.Errorf("%s is %d bytes, more than the %d a bundle file may be: a bundle holds configuration; move data elsewhere", o.key, o.size, maxObject)
		}
		if total += o.size; total > maxBundle {
			return fmt.Errorf("the bundle is more than %d bytes: a bundle holds configuration; check bundle.key_prefix", maxBundle)
		}
	}
	for _, o := range objs {
		for d := path.Dir(o.rel); d != "."; d = path.Dir(d) {
			if f, ok := byRel[d]; ok {
				return fmt.Errorf("%s is a file, but %s needs it to be a folder: remove one of the two", f.key, o.key)
			}
		}
	}
	for _, k := range s.keep {
		for d := path.Dir(strings.TrimSuffix(k, "/")); d != "."; d = path.Dir(d) {
			if f, ok := byRel[d]; ok {
				return fmt.Errorf("%s is a file, but the kept path %s needs it to be a folder: remove it from the bundle", f.key, k)
			}
		}
	}
	return nil
}

// relPath is key below prefix as a path inside the stack directory; a key
// that would leave it is an error naming the key.
func relPath(key, prefix string) (string, error) {
	rel := strings.TrimPrefix(key, prefix)
	clean := path.Clean(rel)
	switch {
	case rel == "" || clean == ".":
		return "", fmt.Errorf("key %q names the prefix itself, not a file", key)
	case strings.HasPrefix(rel, "/") || path.IsAbs(clean):
		return "", fmt.Errorf("key %q is an absolute path below the prefix: it would escape the stack directory", key)
	case clean == ".." || strings.HasPrefix(clean, "../") || clean != rel:
		return "", fmt.Errorf("key %q is not a clean path below the prefix ('..', '.' or doubled slashes): it could escape the stack directory", key)
	case strings.ContainsRune(rel, 0):
		return "", fmt.Errorf("key %q holds a NUL byte", key)
	}
	return rel, nil
}

// download writes one object to dst, checking its size and, for a
// single-part ETag, its MD5. Transient failures are retried by the SDK.
func (s *Step) download(ctx context.Context, o object, dst string) (file, error) {
	if s.o.Config.Source != "" {
		return s.copyLocal(o, dst)
	}
	ctx, cancel := context.WithTimeout(ctx, objectTimeout)
	defer cancel()
	out, err := s.o.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(o.key), IfMatch: aws.String(o.etag)})
	if err != nil {
		return file{}, fmt.Errorf("bundle: get s3://%s/%s: %w", s.bucket, o.key, err)
	}
	defer out.Body.Close()
	if err := atomicfile.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return file{}, fmt.Errorf("bundle: %w", err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return file{}, fmt.Errorf("bundle: %w", err)
	}
	// Readable by the containers' own users, whatever the umask.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return file{}, fmt.Errorf("bundle: %w", err)
	}
	sum, md := sha256.New(), md5.New()
	// One byte past the listed size is enough to tell a wrong size.
	n, err := io.Copy(io.MultiWriter(f, sum, md), io.LimitReader(out.Body, o.size+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return file{}, fmt.Errorf("bundle: download s3://%s/%s: %w", s.bucket, o.key, err)
	}
	if n != o.size {
		return file{}, fmt.Errorf("bundle: s3://%s/%s: got %d bytes, the listing says %d", s.bucket, o.key, n, o.size)
	}
	if want := md5OfETag(o.etag); want != "" && hex.EncodeToString(md.Sum(nil)) != want {
		return file{}, fmt.Errorf("bundle: s3://%s/%s: MD5 %x does not match its ETag %s", s.bucket, o.key, md.Sum(nil), o.etag)
	}
	return file{ETag: o.etag, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}
