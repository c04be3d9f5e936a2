package s3sim

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/monagent/monagent/internal/atomicfile"
)

// On disk, under <dataDir>/buckets/<bucket>/, a key's "/"-separated
// segments become directories and its last segment two files: <seg>@ (the
// bytes) and <seg>@meta.json. Segments are escaped so that none is empty,
// "." or "..", or holds a separator or "@": no key can escape the bucket,
// and a key "a" never collides with a key "a/b".

// bucket is a bucket and the index of its objects.
type bucket struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	objects map[string]*object
}

// object is an object's metadata, persisted beside its bytes.
type object struct {
	Key             string            `json:"key"`
	Size            int64             `json:"size"`
	ETag            string            `json:"etag"` // quoted, as on the wire
	ContentType     string            `json:"content_type"`
	ContentEncoding string            `json:"content_encoding,omitempty"`
	LastModified    time.Time         `json:"last_modified"`
	Metadata        map[string]string `json:"metadata,omitempty"`  // x-amz-meta-* without the prefix
	Checksums       map[string]string `json:"checksums,omitempty"` // x-amz-checksum-* header -> value
	// Parts are the sizes of a multipart object's parts, in order; nil for
	// an object stored in one piece.
	Parts []int64 `json:"parts,omitempty"`
}

// now is the time S3 records for a new object or bucket: S3 keeps whole
// seconds, in listings as in Last-Modified, and clients such as
// "aws s3 sync --exact-timestamps" compare them with file times that have
// no fraction.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

const bucketMeta = "@bucket.json"

// maxSegment keeps escaped segments under common file name limits.
const maxSegment = 200

// escapeSegment maps a key segment to a file name injectively.
func escapeSegment(seg string) string {
	switch seg {
	case "":
		return "%"
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	var b strings.Builder
	for _, c := range []byte(seg) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() > maxSegment {
		// "%h" is no escape sequence, so hashed names cannot collide with
		// escaped ones.
		sum := sha256.Sum256([]byte(seg))
		return "%h" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// objectPaths returns where key's bytes and metadata live in bucket dir.
func objectPaths(dir, key string) (data, meta string) {
	segs := strings.Split(key, "/")
	parts := make([]string, 0, len(segs))
	parts = append(parts, dir)
	for _, seg := range segs[:len(segs)-1] {
		parts = append(parts, escapeSegment(seg))
	}
	parent := filepath.Join(parts...)
	last := escapeSegment(segs[len(segs)-1])
	return filepath.Join(parent, last+"@"), filepath.Join(parent, last+"@meta.json")
}

func (s *Service) bucketDir(name string) string { return filepath.Join(s.bucketsDir(), name) }

// load rebuilds the index from what a previous run stored.
func (s *Service) load() error {
	entries, err := os.ReadDir(s.bucketsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || validBucketName(e.Name()) != nil {
			continue
		}
		b, err := s.loadBucket(e.Name())
		if err != nil {
			return err
		}
		s.buckets[b.Name] = b
	}
	return nil
}

func (s *Service) loadBucket(name string) (*bucket, error) {
	dir := s.bucketDir(name)
	b := &bucket{Name: name, objects: map[string]*object{}}
	if err := readJSON(filepath.Join(dir, bucketMeta), b); err != nil {
		return nil, err
	}
	b.Name = name
	b.Created = b.Created.Truncate(time.Second)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "@meta.json") {
			return err
		}
		var o object
		if err := readJSON(path, &o); err != nil {
			return err
		}
		// Trust only metadata that sits where its key says it does.
		if _, meta := objectPaths(dir, o.Key); meta != path {
			return fmt.Errorf("%s: holds key %q, which belongs elsewhere", path, o.Key)
		}
		o.LastModified = o.LastModified.Truncate(time.Second) // stored by an older awssim
		b.objects[o.Key] = &o
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return b, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeJSON writes v to path atomically (see package atomicfile), mode 0600
// as the objects' bytes.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

// spooled is a body received into a temporary file.
type spooled struct {
	path string
	size int64
	md5  []byte
}

// spool copies src into a new temporary file, hashing it as it goes.
func (s *Service) spool(src io.Reader) (*spooled, error) {
	f, err := os.CreateTemp(s.tmpDir(), "body-*")
	if err != nil {
		return nil, err
	}
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	return &spooled{path: f.Name(), size: n, md5: h.Sum(nil)}, nil
}

func (sp *spooled) discard() { os.Remove(sp.path) }

// commitLocked moves a spooled body into place as o in bucket b and
// records it. s.mu must be held.
func (s *Service) commitLocked(b *bucket, o *object, sp *spooled) error {
	data, meta := objectPaths(s.bucketDir(b.Name), o.Key)
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		return err
	}
	if err := os.Rename(sp.path, data); err != nil {
		return err
	}
	if err := writeJSON(meta, o); err != nil {
		return err
	}
	b.objects[o.Key] = o
	return nil
}

// removeLocked deletes key's files and the directories it leaves empty.
// s.mu must be held.
func (s *Service) removeLocked(b *bucket, key string) error {
	dir := s.bucketDir(b.Name)
	data, meta := objectPaths(dir, key)
	for _, p := range []string{meta, data} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	delete(b.objects, key)
	for d := filepath.Dir(data); d != dir && strings.HasPrefix(d, dir); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break // not empty
		}
	}
	return nil
}

// etagOf is S3's ETag of a single-part object.
func etagOf(sum []byte) string { return `"` + hex.EncodeToString(sum) + `"` }

// multipartETag is S3's ETag of a multipart object: the MD5 of the parts'
// MD5s, then the part count.
func multipartETag(sums [][]byte) string {
	h := md5.New()
	for _, s := range sums {
		h.Write(s)
	}
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(h.Sum(nil)), len(sums))
}
