package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/monagent/monagent/rig/awssim/s3sim"
	"github.com/monagent/monagent/rig/awssim/simtest"
)

// storeHost names the archives storeNames makes.
const storeHost = "acgs"

// storeNames are five archive names of storeHost, oldest first.
func storeNames() []string {
	base := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	var names []string
	for i := range 5 {
		names = append(names, ArchiveName(storeHost, base.Add(time.Duration(i)*24*time.Hour)))
	}
	return names
}

// testStore checks a store's contract and Prune on it. junk adds what List
// must ignore and Prune must leave.
func testStore(t *testing.T, s Store, junk func(t *testing.T)) {
	ctx := context.Background()
	names := storeNames()
	for i, n := range slices.Backward(names) { // put out of order
		if err := s.Put(ctx, n, strings.NewReader(fmt.Sprintf("archive %d", i))); err != nil {
			t.Fatalf("Put %s: %v", n, err)
		}
	}
	junk(t)
	list(t, s, names)

	if got := read(t, s, names[2]); got != "archive 2" {
		t.Errorf("Open %s: %q, want %q", names[2], got, "archive 2")
	}
	missing := ArchiveName("new-host", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	if _, err := s.Open(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing archive: %v; want fs.ErrNotExist", err)
	}
	// A Put that fails leaves nothing under its name.
	if err := s.Put(ctx, missing, io.MultiReader(strings.NewReader("half"), errReaderOf(errors.New("pack failed")))); err == nil || !strings.Contains(err.Error(), "pack failed") {
		t.Errorf("Put from a failing reader: %v", err)
	}
	if _, err := s.Open(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after a failed Put, Open: %v; want fs.ErrNotExist", err)
	}
	for _, bad := range []string{"../" + names[0], "notes.txt", ""} {
		if err := s.Put(ctx, bad, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) accepted the name", bad)
		}
		if err := s.Delete(ctx, bad); err == nil {
			t.Errorf("Delete(%q) accepted the name", bad)
		}
	}
	list(t, s, names)

	for _, keep := range []int{0, -1} {
		if _, err := Prune(ctx, s, storeHost, keep); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("keep is %d", keep)) || !strings.Contains(err.Error(), "at least 1") {
			t.Errorf("Prune(keep %d): %v; want an error naming the value and the fix", keep, err)
		}
	}
	list(t, s, names)
	deleted, err := Prune(ctx, s, storeHost, 2)
	if err != nil || !slices.Equal(deleted, names[:3]) {
		t.Errorf("Prune(keep 2) = %v, %v; want %v", deleted, err, names[:3])
	}
	list(t, s, names[3:])
	if deleted, err := Prune(ctx, s, storeHost, 2); err != nil || len(deleted) != 0 {
		t.Errorf("Prune again = %v, %v; want nothing deleted", deleted, err)
	}
	if got, err := Latest(ctx, s, storeHost); err != nil || got != names[4] {
		t.Errorf("Latest = %q, %v; want %q", got, err, names[4])
	}
	if err := s.Delete(ctx, names[0]); err != nil {
		t.Errorf("Delete of a deleted archive: %v", err)
	}
}

func list(t *testing.T, s Store, want []string) {
	t.Helper()
	got, err := s.List(context.Background())
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("List = %q, %v; want %q", got, err, want)
	}
}

func read(t *testing.T, s Store, name string) string {
	t.Helper()
	rc, err := s.Open(context.Background(), name)
	if err != nil {
		t.Fatalf("Open %s: %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func errReaderOf(err error) io.Reader { return failingReader{err} }

func TestLocalStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups", "monagent") // made by the first Put
	s := LocalStore{Dir: dir}
	if got, err := s.List(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("List of a missing directory = %v, %v; want none", got, err)
	}
	names := storeNames()
	var junk []string
	testStore(t, s, func(t *testing.T) {
		junk = []string{
			"." + names[0] + ".tmp-123456", // a crashed Put's temporary file
			"notes.txt",
			names[0] + ".partial",
		}
		for _, j := range junk {
			writeFile(t, filepath.Join(dir, j), []byte("junk"), 0o600, 0)
		}
		junk = append(junk, "sub")
		mkdir(t, filepath.Join(dir, "sub"), 0o700, 0)
		writeFile(t, filepath.Join(dir, "sub", names[0]), nil, 0o600, 0)
	})
	for _, j := range junk {
		if _, err := os.Lstat(filepath.Join(dir, j)); err != nil {
			t.Errorf("Prune removed what is not an archive: %v", err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the store's directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, names[4])); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("an archive: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if des, _ := os.ReadDir(dir); len(des) != len(junk)+2 {
		t.Errorf("the directory holds %d entries, want the 2 archives and %d junk: a temporary file left behind?", len(des), len(junk))
	}
}

const testBucket = "monitoring-backups"

// newS3 is an S3 simulator over HTTP, with the bucket, and a client of it.
func newS3(t *testing.T) *s3.Client {
	t.Helper()
	svc, err := s3sim.New(simtest.Identity(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sim := simtest.Serve(t, svc)
	client := s3.NewFromConfig(sim.Config(), func(o *s3.Options) {
		o.UsePathStyle = true
		o.Retryer = awsretry.NewStandard(func(so *awsretry.StandardOptions) {
			so.MaxAttempts = 3
			so.Backoff = awsretry.NewExponentialJitterBackoff(5 * time.Millisecond)
		})
	})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatal(err)
	}
	return client
}

// smallPages lists two keys a page, so that a List of a few archives
// needs several pages; it counts them.
type smallPages struct {
	*s3.Client
	pages atomic.Int32
}

func (c *smallPages) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	c.pages.Add(1)
	in.MaxKeys = aws.Int32(2)
	return c.Client.ListObjectsV2(ctx, in, optFns...)
}

func TestS3Store(t *testing.T) {
	client := newS3(t)
	paged := &smallPages{Client: client}
	s := S3Store{Client: paged, Bucket: testBucket, Prefix: "backups", TempDir: t.TempDir()}
	names := storeNames()
	junk := []string{"backups/notes.txt", "backups/sub/" + names[0], "other/" + names[0], "backups" + names[0], "backups/." + names[0] + ".tmp-1"}
	testStore(t, s, func(t *testing.T) {
		for _, k := range junk {
			if _, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: strings.NewReader("junk")}); err != nil {
				t.Fatal(err)
			}
		}
	})
	if n := paged.pages.Load(); n < 10 {
		t.Errorf("%d ListObjectsV2 pages in all; want several a List", n)
	}
	out, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	want := append(slices.Clone(junk), "backups/"+names[3], "backups/"+names[4])
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("the bucket holds\n%q\nwant\n%q", keys, want)
	}
	if des, _ := os.ReadDir(s.TempDir); len(des) != 0 {
		t.Errorf("Put left %d files in its temporary directory", len(des))
	}
}

func TestS3StoreErrors(t *testing.T) {
	client := newS3(t)
	s := S3Store{Client: client, Bucket: "no-such-bucket", Prefix: "backups/"}
	ctx := context.Background()
	if _, err := s.List(ctx); err == nil || !strings.Contains(err.Error(), "s3://no-such-bucket/backups/") || !strings.Contains(err.Error(), "check the bucket's name") {
		t.Errorf("List of a missing bucket: %v", err)
	}
	if err := s.Put(ctx, storeNames()[0], strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "NoSuchBucket") {
		t.Errorf("Put into a missing bucket: %v", err)
	}
}

// TestSaveRestore packs into each store and restores from it, and shows
// that a Save that fails leaves nothing in the store.
func TestSaveRestore(t *testing.T) {
	requireRoot(t)
	id := newIdentity(t)
	parts := sampleTree(t, t.TempDir())
	stores := map[string]Store{
		"local": LocalStore{Dir: t.TempDir()},
		"s3":    S3Store{Client: newS3(t), Bucket: testBucket, Prefix: "backups/", TempDir: t.TempDir()},
	}
	ctx := context.Background()
	for kind, s := range stores {
		t.Run(kind, func(t *testing.T) {
			name := ArchiveName("host", time.Now())
			saved, err := Save(ctx, s, name, id.Recipient(), parts, map[string]string{"host": "host"})
			if err != nil {
				t.Fatalf("Save: %v", err)
			}
			dst := t.TempDir()
			restored, err := Restore(ctx, s, name, id, dst)
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if len(restored.Entries) != len(saved.Entries) || restored.Meta["host"] != "host" {
				t.Errorf("Restore's manifest: %d entries, meta %v; Save's: %d entries", len(restored.Entries), restored.Meta, len(saved.Entries))
			}
			got := snapshot(t, dst, "")
			for n, w := range wantTree(t, parts) {
				if got[n] != w {
					t.Errorf("%s: restored %+v, want %+v", n, got[n], w)
				}
			}

			_, err = Restore(ctx, s, name, newIdentity(t), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), "archive "+name+": decrypt: the key does not match") {
				t.Errorf("Restore with another key: %v", err)
			}

			failed := ArchiveName("host", time.Now().Add(time.Hour))
			bad := append(slices.Clone(parts), Part{Name: "missing", Path: "/nonexistent/part"})
			if _, err := Save(ctx, s, failed, id.Recipient(), bad, nil); err == nil || !strings.Contains(err.Error(), "part missing") {
				t.Errorf("Save of a missing part: %v", err)
			}
			list(t, s, []string{name})
		})
	}
}

func TestParseLocation(t *testing.T) {
	tests := []struct {
		in      string
		want    Location
		archive bool
	}{
		{"/var/backups/monagent", Location{Dir: "/var/backups/monagent"}, false},
		{"/var/backups/monagent/", Location{Dir: "/var/backups/monagent"}, false},
		{"/var/backups//monagent/../x", Location{Dir: "/var/backups/x"}, false},
		{"/var/backups/monagent-backup-h-20261123T060000Z.tar.gz.age", Location{Dir: "/var/backups", Name: "monagent-backup-h-20261123T060000Z.tar.gz.age"}, true},
		{"/root/renamed.age", Location{Dir: "/root", Name: "renamed.age"}, true},
		{"s3://bucket", Location{Bucket: "bucket"}, false},
		{"s3://bucket/", Location{Bucket: "bucket"}, false},
		{"s3://bucket/backups", Location{Bucket: "bucket", Dir: "backups/"}, false},
		{"s3://bucket/backups/host-a/", Location{Bucket: "bucket", Dir: "backups/host-a/"}, false},
		{"s3://my.bucket-1/backups/monagent-backup-h-20261123T060000Z.tar.gz.age", Location{Bucket: "my.bucket-1", Dir: "backups/", Name: "monagent-backup-h-20261123T060000Z.tar.gz.age"}, true},
		{"s3://bucket/x.age", Location{Bucket: "bucket", Name: "x.age"}, true},
	}
	for _, tt := range tests {
		got, err := ParseLocation(tt.in)
		if err != nil || got != tt.want || got.IsArchive() != tt.archive {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		again, err := ParseLocation(got.String())
		if err != nil || again != got {
			t.Errorf("ParseLocation(%q.String() = %q) = %+v, %v", tt.in, got.String(), again, err)
		}
	}

	bad := []struct{ in, want string }{
		{"", "empty"},
		{"backups", "relative"},
		{"./x.age", "relative"},
		{"https://bucket.s3.amazonaws.com/x", "only s3://"},
		{"S3://bucket/x", "only s3://"},
		{"s3://", "no bucket"},
		{"s3:///key", "no bucket"},
		{"s3://Bucket/x", "not a valid bucket name"},
		{"s3://b/x", "not a valid bucket name"},
		{"s3://bucket//x", "not a clean path"},
		{"s3://bucket/a/../b/", "not a clean path"},
		{"s3://bucket/a//b.age", "not a clean path"},
	}
	for _, tt := range bad {
		_, err := ParseLocation(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "s3://bucket/prefix/") {
			t.Errorf("ParseLocation(%q) = %v; want an error with %q and the expected forms", tt.in, err, tt.want)
		}
	}
}

func TestLocationStore(t *testing.T) {
	client := newS3(t)
	for _, tt := range []struct {
		in   string
		want Store
	}{
		{"/var/backups/monagent", LocalStore{Dir: "/var/backups/monagent"}},
		{"/var/backups/x.age", LocalStore{Dir: "/var/backups"}},
		{"s3://bucket/backups/", S3Store{Client: client, Bucket: "bucket", Prefix: "backups/"}},
		{"s3://bucket/backups/x.age", S3Store{Client: client, Bucket: "bucket", Prefix: "backups/"}},
	} {
		l, err := ParseLocation(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Store(client)
		if err != nil || s != tt.want {
			t.Errorf("ParseLocation(%q).Store = %v, %v; want %v", tt.in, s, err, tt.want)
		}
	}
	l, _ := ParseLocation("s3://bucket/backups/")
	if _, err := l.Store(nil); err == nil {
		t.Error("an S3 location's store without a client: no error")
	}
}
