package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"gopkg.in/yaml.v3"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
	"github.com/monagent/monagent/rig/awssim/s3sim"
	"github.com/monagent/monagent/rig/awssim/simapi"
	"github.com/monagent/monagent/rig/awssim/simtest"
)

const (
	bucketName  = "monitoring-scripts"
	bucketParam = "/monitoring-test/ssm/scripts-bucket-name"
	stackDir    = "/opt/monitoring"
)

// fakeParams answers the bucket parameter.
type fakeParams struct {
	values map[string]string
	calls  int
}

func (p *fakeParams) Get(_ context.Context, name string, _ ...func(*ssm.Options)) (ssmparam.Parameter, error) {
	p.calls++
	v, ok := p.values[name]
	if !ok {
		return ssmparam.Parameter{}, fmt.Errorf("SSM parameter %s: %w", name, ssmparam.ErrNotFound)
	}
	return ssmparam.Parameter{Name: name, Value: v}, nil
}

// rig is an S3 simulator holding the bucket, and a host root.
type rig struct {
	t      *testing.T
	sim    *simtest.Sim
	s3     *s3.Client
	api    S3API // what the step is given; s3 unless a test wraps it
	root   string
	params *fakeParams
	keep   []string // Options.Keep
	cfg    config.Bundle
}

func newRig(t *testing.T) *rig {
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
	r := &rig{
		t: t, sim: sim, s3: client, api: client, root: t.TempDir(),
		params: &fakeParams{values: map[string]string{bucketParam: bucketName + "\n"}},
		keep:   []string{".env"},
		cfg:    config.Bundle{BucketParameter: bucketParam, KeyPrefix: "scripts/", Dir: stackDir},
	}
	r.seed(nil)
	return r
}

// seed stores objects (key -> body) through the simulator's scenario, which
// takes any key, also those the SDK would not send as they are.
func (r *rig) seed(objects map[string]string) {
	r.t.Helper()
	type obj struct {
		Key  string `yaml:"key"`
		Body string `yaml:"body"`
	}
	b := struct {
		Name    string `yaml:"name"`
		Objects []obj  `yaml:"objects,omitempty"`
	}{Name: bucketName}
	for k, v := range objects {
		b.Objects = append(b.Objects, obj{k, v})
	}
	doc, err := yaml.Marshal(map[string]any{"s3": map[string]any{"buckets": []any{b}}})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.sim.ApplyScenario(doc); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) put(key, body string) {
	r.t.Helper()
	_, err := r.s3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucketName), Key: aws.String(key), Body: strings.NewReader(body)})
	if err != nil {
		r.t.Fatalf("PutObject %s: %v", key, err)
	}
}

func (r *rig) remove(key string) {
	r.t.Helper()
	_, err := r.s3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key)})
	if err != nil {
		r.t.Fatalf("DeleteObject %s: %v", key, err)
	}
}

// step is a new run's step with the memo of the last one.
func (r *rig) step(memo map[string]string) *Step {
	s := New(Options{Root: r.root, Config: r.cfg, Keep: r.keep, S3: r.api, Params: r.params})
	s.Restore(memo)
	return s
}

// count is how many calls of an S3 operation the simulator answered.
func (r *rig) count(op string) int {
	n := 0
	for _, c := range r.sim.Calls() {
		if c.Service == "s3" && c.Operation == op {
			n++
		}
	}
	return n
}

func (r *rig) path(rel string) string {
	return filepath.Join(r.root, stackDir, filepath.FromSlash(rel))
}

func (r *rig) write(rel, content string) {
	r.t.Helper()
	p := r.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// converge runs the step as the engine does on a run that must apply:
// Check, Apply, and Check again to confirm. It returns the memo to keep.
func (r *rig) converge(memo map[string]string) map[string]string {
	r.t.Helper()
	return applyRun(r.t, r.step(memo))
}

// applyRun is one run of s that applies: Fingerprint, Check, Apply, and
// Check to confirm. It returns the memo to keep.
func applyRun(t *testing.T, s *Step) map[string]string {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Fingerprint(ctx); err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	if _, err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := s.Apply(ctx); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if ok, err := s.Check(ctx); err != nil || !ok {
		t.Fatalf("Check after Apply = %v, %v; want true", ok, err)
	}
	return s.Memo()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fileID is what shows a file was replaced or rewritten.
type fileID struct {
	ino   uint64
	mtime time.Time
}

func idOf(t *testing.T, p string) fileID {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fileID{fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()}
}

var stack = map[string]string{
	"scripts/docker-compose.yml":                          "services:\n  prometheus:\n    image: prom/prometheus\n",
	"scripts/prometheus/prometheus.yml":                   "global:\n  scrape_interval: 15s\n",
	"scripts/grafana/provisioning/datasources/loki.yml":   "apiVersion: 1\n",
	"scripts/grafana/dashboards/empty.json":               "",
	"scripts/grafana/dashboards/":                         "", // a console "folder"
	"other/not-in-the-bundle.txt":                         "elsewhere",
	"scriptsextra/shares-the-prefix-without-a-slash.conf": "no",
}

func TestFirstSyncInstallsEverything(t *testing.T) {
	r := newRig(t)
	r.seed(stack)
	s := r.step(nil)
	ctx := context.Background()
	if ok, err := s.Check(ctx); err != nil || ok {
		t.Fatalf("Check on an empty host = %v, %v; want false, nil", ok, err)
	}
	if err := s.Apply(ctx); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := map[string]string{
		"docker-compose.yml":                        stack["scripts/docker-compose.yml"],
		"prometheus/prometheus.yml":                 stack["scripts/prometheus/prometheus.yml"],
		"grafana/provisioning/datasources/loki.yml": stack["scripts/grafana/provisioning/datasources/loki.yml"],
		"grafana/dashboards/empty.json":             "",
	}
	var got []string
	err := filepath.WalkDir(r.path("."), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(r.path("."), p)
		got = append(got, rel)
		if w, ok := want[filepath.ToSlash(rel)]; !ok {
			t.Errorf("%s installed; it is not in the bundle", rel)
		} else if c := readFile(t, p); c != w {
			t.Errorf("%s = %q, want %q", rel, c, w)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("installed %v, want the %d files of the bundle", got, len(want))
	}
	if n := r.count("GetObject"); n != len(want) {
		t.Errorf("GetObject calls = %d, want %d", n, len(want))
	}
	// Nothing is left beside the stack directory: the staging directory goes.
	entries, err := os.ReadDir(filepath.Dir(r.path(".")))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(stackDir) {
		t.Errorf("beside the stack directory: %v, want only %s", entries, filepath.Base(stackDir))
	}
	if ok, err := s.Check(ctx); err != nil || !ok {
		t.Errorf("Check after Apply = %v, %v; want true", ok, err)
	}
	if r.params.calls != 1 {
		t.Errorf("bucket parameter read %d times, want once", r.params.calls)
	}
	if m := s.Memo(); m["bucket"] != bucketName {
		t.Errorf("memo bucket = %q, want %q (trimmed)", m["bucket"], bucketName)
	}
	if w := s.Warning(); w != "" {
		t.Errorf("Warning() = %q, want none", w)
	}
}

func TestNothingChangedDownloadsNothing(t *testing.T) {
	r := newRig(t)
	r.seed(stack)
	memo := r.converge(nil)
	before := idOf(t, r.path("docker-compose.yml"))
	gets, lists := r.count("GetObject"), r.count("ListObjectsV2")

	s := r.step(memo)
	ctx := context.Background()
	ok, err := s.Check(ctx)
	if err != nil || !ok {
		t.Fatalf("second Check = %v, %v; want true", ok, err)
	}
	// The engine applies anyway when the fingerprint changed: still nothing.
	if err := s.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.count("GetObject") - gets; n != 0 {
		t.Errorf("second run downloaded %d objects, want none", n)
	}
	if n := r.count("ListObjectsV2") - lists; n != 1 {
		t.Errorf("second run listed %d times, want once", n)
	}
	if after := idOf(t, r.path("docker-compose.yml")); after != before {
		t.Errorf("docker-compose.yml rewritten: %+v, was %+v", after, before)
	}
	if got := s.Memo()["files"]; got != memo["files"] {
		t.Errorf("memo changed:\n%s\nwas\n%s", got, memo["files"])
	}
	if d1, d2 := r.step(memo).Digest(), s.Digest(); d1 != d2 {
		t.Errorf("Digest changed with nothing changed: %s, %s", d1, d2)
	}
}

func TestChangedObjectReplacedRemovedObjectDeleted(t *testing.T) {
	r := newRig(t)
	r.seed(stack)
	memo := r.converge(nil)
	kept := idOf(t, r.path("docker-compose.yml"))
	digest := r.step(memo).Digest()

	r.put("scripts/prometheus/prometheus.yml", "global:\n  scrape_interval: 30s\n")
	r.remove("scripts/grafana/provisioning/datasources/loki.yml")
	gets := r.count("GetObject")

	s := r.step(memo)
	ctx := context.Background()
	if ok, err := s.Check(ctx); err != nil || ok {
		t.Fatalf("Check after a change in the bucket = %v, %v; want false", ok, err)
	}
	if err := s.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.count("GetObject") - gets; n != 1 {
		t.Errorf("downloaded %d objects, want only the changed one", n)
	}
	if got := readFile(t, r.path("prometheus/prometheus.yml")); got != "global:\n  scrape_interval: 30s\n" {
		t.Errorf("prometheus.yml = %q, want the new content", got)
	}
	if _, err := os.Lstat(r.path("grafana/provisioning/datasources/loki.yml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed object still installed: %v", err)
	}
	if got := idOf(t, r.path("docker-compose.yml")); got != kept {
		t.Errorf("an unchanged file was rewritten")
	}
	if ok, err := s.Check(ctx); err != nil || !ok {
		t.Errorf("Check after Apply = %v, %v", ok, err)
	}
	if s.Digest() == digest {
		t.Errorf("Digest did not change with the bundle")
	}
}

func TestKeptPathsNeverTouched(t *testing.T) {
	r := newRig(t)
	outside := t.TempDir() // the metrics textfile directory, off the stack
	r.keep = []string{".env", "prometheus/secrets/metrics-token", "node-exporter/textfile"}
	r.cfg.Keep = []string{"grafana/data"}
	r.write(".env", "LOCAL=1\n")
	r.write("prometheus/secrets/metrics-token", "local-token")
	r.write("grafana/data/grafana.db", "local db")
	if err := os.MkdirAll(r.path("node-exporter"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, r.path("node-exporter/textfile")); err != nil {
		t.Fatal(err)
	}
	r.seed(map[string]string{
		"scripts/docker-compose.yml":                    "services: {}\n",
		"scripts/.env":                                  "FROM_BUCKET=1\n",
		"scripts/prometheus/secrets/metrics-token":      "bucket-token",
		"scripts/grafana/data/grafana.db":               "bucket db",
		"scripts/grafana/data/sub/more.db":              "bucket db",
		"scripts/node-exporter/textfile/monagent.prom":  "evil 1\n",
		"scripts/node-exporter/textfile":                "not a dir",
		"scripts/prometheus/secrets/metrics-token.orig": "a sibling is not kept",
	})
	memo := r.converge(nil)

	check := func() {
		t.Helper()
		for rel, want := range map[string]string{
			".env": "LOCAL=1\n", "prometheus/secrets/metrics-token": "local-token", "grafana/data/grafana.db": "local db",
		} {
			if got := readFile(t, r.path(rel)); got != want {
				t.Errorf("kept %s = %q, want %q", rel, got, want)
			}
		}
		if _, err := os.Lstat(r.path("grafana/data/sub")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("grafana/data/sub installed under a kept directory: %v", err)
		}
		fi, err := os.Lstat(r.path("node-exporter/textfile"))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("textfile link replaced: %v, %v", fi, err)
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("written through the textfile link: %v", entries)
		}
	}
	check()
	if got := readFile(t, r.path("prometheus/secrets/metrics-token.orig")); got != "a sibling is not kept" {
		t.Errorf("metrics-token.orig = %q", got)
	}
	if n := r.count("GetObject"); n != 2 {
		t.Errorf("GetObject calls = %d, want 2: kept paths are not downloaded", n)
	}

	// The bucket drops them: still nothing kept is removed.
	for _, k := range []string{"scripts/.env", "scripts/prometheus/secrets/metrics-token", "scripts/grafana/data/grafana.db"} {
		r.remove(k)
	}
	memo = r.converge(memo)
	check()

	// A file installed by an earlier sync and kept since is not removed
	// when the bucket drops it.
	r.cfg.Keep = append(r.cfg.Keep, "prometheus/secrets/metrics-token.orig")
	r.remove("scripts/prometheus/secrets/metrics-token.orig")
	r.converge(memo)
	if got := readFile(t, r.path("prometheus/secrets/metrics-token.orig")); got != "a sibling is not kept" {
		t.Errorf("kept metrics-token.orig = %q", got)
	}
	check()
}

func TestKeysThatEscapeAreRefused(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"scripts/../x", "not a clean path"},
		{"scripts/../../etc/cron.d/x", "not a clean path"},
		{"scripts/a/../../x", "not a clean path"},
		{"scripts//x", "absolute"},
		{"scripts//etc/passwd", "absolute"},
		{"scripts/./x", "not a clean path"},
		{"scripts/a//b", "not a clean path"},
		{"scripts/a/.", "not a clean path"},
		{"scripts/..", "not a clean path"},
		{"scripts/.", "names the prefix itself"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			r := newRig(t)
			r.seed(map[string]string{"scripts/docker-compose.yml": "services: {}\n", tt.key: "escaped"})
			ctx := context.Background()
			s := r.step(nil)
			_, err := s.Check(ctx)
			if err == nil {
				t.Fatal("Check accepted the key")
			}
			for name, err := range map[string]error{"Check": err, "Apply": s.Apply(ctx)} {
				if !retry.IsPermanent(err) {
					t.Errorf("%s: error %v is not permanent", name, err)
				}
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.key)) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: error %v; want it to name %q and say %q", name, err, tt.key, tt.want)
				}
			}
			if n := r.count("GetObject"); n != 0 {
				t.Errorf("downloaded %d objects from a bundle with a bad key", n)
			}
			if _, err := os.Lstat(r.path(".")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stack directory made: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(r.root, "opt", "x")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("escaped file written: %v", err)
			}
		})
	}
}

func TestRelPath(t *testing.T) {
	tests := []struct {
		key, prefix, want string
		ok                bool
	}{
		{"scripts/a.yml", "scripts/", "a.yml", true},
		{"scripts/a/b/c.yml", "scripts/", "a/b/c.yml", true},
		{"scripts/..a", "scripts/", "..a", true},
		{"scripts/a..b/c", "scripts/", "a..b/c", true},
		{"a.yml", "", "a.yml", true},
		{"/a.yml", "", "", false},
		{"scripts/", "scripts/", "", false},
		{"scripts/a/", "scripts/", "", false},
		{"scripts/nul\x00", "scripts/", "", false},
		{"scripts/../x", "scripts/", "", false},
	}
	for _, tt := range tests {
		got, err := relPath(tt.key, tt.prefix)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("relPath(%q, %q) = %q, %v; want %q, ok %t", tt.key, tt.prefix, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.key)) {
			t.Errorf("relPath(%q) error %v does not name the key", tt.key, err)
		}
	}
}

func TestEmptyListingIsPermanent(t *testing.T) {
	r := newRig(t)
	r.seed(map[string]string{"other/x": "x", "scripts/": "", "scripts/empty-dir/": ""})
	err := r.step(nil).Apply(context.Background())
	if !retry.IsPermanent(err) {
		t.Fatalf("Apply of an empty prefix: %v, want a permanent error", err)
	}
	if want := "s3://" + bucketName + "/scripts/"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "no objects") {
		t.Errorf("error %q; want it to name %s and say it holds no objects", err, want)
	}

	// Emptied after a sync: nothing installed is deleted.
	r2 := newRig(t)
	r2.seed(stack)
	memo := r2.converge(nil)
	for k := range stack {
		r2.remove(k)
	}
	s := r2.step(memo)
	if ok, err := s.Check(context.Background()); err != nil || ok {
		t.Errorf("Check of an emptied bucket = %v, %v; want false", ok, err)
	}
	if err := s.Apply(context.Background()); !retry.IsPermanent(err) {
		t.Errorf("Apply of an emptied bucket: %v, want a permanent error", err)
	}
	if _, err := os.Stat(r2.path("docker-compose.yml")); err != nil {
		t.Errorf("an emptied bucket removed the installed bundle: %v", err)
	}
}

func TestBucketErrors(t *testing.T) {
	t.Run("parameter missing", func(t *testing.T) {
		r := newRig(t)
		r.params.values = nil
		_, err := r.step(nil).Fingerprint(context.Background())
		if !retry.IsPermanent(err) || !strings.Contains(err.Error(), bucketParam) || !strings.Contains(err.Error(), "bundle.bucket") {
			t.Errorf("error %v; want permanent, naming %s and bundle.bucket", err, bucketParam)
		}
	})
	t.Run("bucket from config", func(t *testing.T) {
		r := newRig(t)
		r.seed(stack)
		r.params.values = nil
		r.cfg.Bucket = bucketName
		r.converge(nil)
		if r.params.calls != 0 {
			t.Errorf("bucket parameter read %d times with bundle.bucket set", r.params.calls)
		}
	})
	t.Run("no such bucket", func(t *testing.T) {
		r := newRig(t)
		r.cfg.Bucket = "no-such-bucket"
		_, err := r.step(nil).Check(context.Background())
		if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "s3://no-such-bucket/scripts/") || !strings.Contains(err.Error(), "s3:ListBucket") {
			t.Errorf("error %v; want permanent, naming the bucket and the permission", err)
		}
	})
}

// maxKeys makes every listing page hold at most n keys.
type maxKeys struct {
	S3API
	n int32
}

func (m maxKeys) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	c := *in
	c.MaxKeys = aws.Int32(m.n)
	return m.S3API.ListObjectsV2(ctx, &c, optFns...)
}

func TestPagination(t *testing.T) {
	t.Run("small pages", func(t *testing.T) {
		r := newRig(t)
		r.api = maxKeys{S3API: r.s3, n: 3}
		objs := map[string]string{}
		for i := range 7 {
			objs[fmt.Sprintf("scripts/f%d.conf", i)] = fmt.Sprint(i)
		}
		r.seed(objs)
		memo := r.converge(nil)
		for i := range 7 {
			if got := readFile(t, r.path(fmt.Sprintf("f%d.conf", i))); got != fmt.Sprint(i) {
				t.Errorf("f%d.conf = %q", i, got)
			}
		}
		if n := r.count("ListObjectsV2"); n != 3 {
			t.Errorf("ListObjectsV2 calls = %d, want 3 pages of at most 3", n)
		}
		if ok, err := r.step(memo).Check(context.Background()); err != nil || !ok {
			t.Errorf("second Check = %v, %v; want true", ok, err)
		}
	})
	t.Run("more than 1000 objects", func(t *testing.T) {
		r := newRig(t)
		objs := map[string]string{}
		for i := range 1003 {
			objs[fmt.Sprintf("scripts/d%d/f%04d", i%7, i)] = ""
		}
		r.seed(objs)
		s := r.step(nil)
		got, err := s.list(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1003 {
			t.Errorf("listed %d objects, want 1003", len(got))
		}
		if n := r.count("ListObjectsV2"); n != 2 {
			t.Errorf("ListObjectsV2 calls = %d, want 2", n)
		}
		seen := map[string]bool{}
		for _, o := range got {
			if seen[o.rel] {
				t.Errorf("%s listed twice", o.rel)
			}
			seen[o.rel] = true
		}
	})
}

// corrupt alters the body of one key as it is downloaded.
type corrupt struct {
	S3API
	key  string
	edit func([]byte) []byte
}

func (c corrupt) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := c.S3API.GetObject(ctx, in, optFns...)
	if err != nil || aws.ToString(in.Key) != c.key {
		return out, err
	}
	b, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		return nil, err
	}
	out.Body = io.NopCloser(bytes.NewReader(c.edit(b)))
	return out, nil
}

func TestDownloadVerified(t *testing.T) {
	tests := []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"same size, other bytes", func(b []byte) []byte { return bytes.ToUpper(b) }, "does not match its ETag"},
		{"cut short", func(b []byte) []byte { return b[:len(b)/2] }, "the listing says"},
		{"too long", func(b []byte) []byte { return append(b, '\n') }, "the listing says"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.seed(stack)
			memo := r.converge(nil)
			// Two files change; the second arrives damaged: neither is
			// installed, since nothing moves before every download checks out.
			r.put("scripts/docker-compose.yml", "services: {changed: {}}\n")
			r.put("scripts/prometheus/prometheus.yml", "global: {changed: true}\n")
			r.api = corrupt{S3API: r.s3, key: "scripts/prometheus/prometheus.yml", edit: tt.edit}
			err := r.step(memo).Apply(context.Background())
			if err == nil || !strings.Contains(err.Error(), "scripts/prometheus/prometheus.yml") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply: %v; want an error naming the key and saying %q", err, tt.want)
			}
			for rel, key := range map[string]string{"docker-compose.yml": "scripts/docker-compose.yml", "prometheus/prometheus.yml": "scripts/prometheus/prometheus.yml"} {
				if got := readFile(t, r.path(rel)); got != stack[key] {
					t.Errorf("%s = %q after a failed sync, want the old content", rel, got)
				}
			}
			if entries, _ := os.ReadDir(filepath.Dir(r.path("."))); len(entries) != 1 {
				t.Errorf("staging left behind: %v", entries)
			}
		})
	}
}

func TestLocalEditRestored(t *testing.T) {
	for _, edit := range []struct {
		name string
		do   func(r *rig)
	}{
		{"edited", func(r *rig) { r.write("prometheus/prometheus.yml", "global:\n  scrape_interval: 1s\n") }},
		{"same size", func(r *rig) { r.write("prometheus/prometheus.yml", "global:\n  scrape_interval: 99s\n") }},
		{"deleted", func(r *rig) { os.Remove(r.path("prometheus/prometheus.yml")) }},
	} {
		t.Run(edit.name, func(t *testing.T) {
			r := newRig(t)
			r.seed(stack)
			memo := r.converge(nil)
			edit.do(r)
			gets := r.count("GetObject")
			s := r.step(memo)
			ctx := context.Background()
			if ok, err := s.Check(ctx); err != nil || ok {
				t.Fatalf("Check after a local edit = %v, %v; want false", ok, err)
			}
			if err := s.Apply(ctx); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, r.path("prometheus/prometheus.yml")); got != stack["scripts/prometheus/prometheus.yml"] {
				t.Errorf("prometheus.yml = %q, not restored", got)
			}
			if n := r.count("GetObject") - gets; n != 1 {
				t.Errorf("downloaded %d objects, want the edited one only", n)
			}
			if ok, err := s.Check(ctx); err != nil || !ok {
				t.Errorf("Check after Apply = %v, %v", ok, err)
			}
		})
	}
}

func TestSymlinkedDirectoryNeverWrittenThrough(t *testing.T) {
	t.Run("before the first sync", func(t *testing.T) {
		r := newRig(t)
		outside := t.TempDir()
		if err := os.MkdirAll(r.path("."), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, r.path("conf")); err != nil {
			t.Fatal(err)
		}
		r.seed(map[string]string{"scripts/docker-compose.yml": "services: {}\n", "scripts/conf/deep/a.yml": "a"})
		err := r.step(nil).Apply(context.Background())
		if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "symlink") || !strings.Contains(err.Error(), "conf/deep/a.yml") {
			t.Errorf("Apply: %v; want a permanent error naming the file and the symlink", err)
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("written through the link: %v", entries)
		}
	})
	t.Run("link made after a sync", func(t *testing.T) {
		r := newRig(t)
		r.seed(map[string]string{"scripts/docker-compose.yml": "services: {}\n", "scripts/conf/a.yml": "a", "scripts/conf/b.yml": "b"})
		memo := r.converge(nil)
		// The operator moves conf elsewhere and links it back, with the
		// same files: intact. The bucket then drops b.yml.
		outside := filepath.Join(t.TempDir(), "conf")
		if err := os.Rename(r.path("conf"), outside); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, r.path("conf")); err != nil {
			t.Fatal(err)
		}
		r.remove("scripts/conf/b.yml")
		r.put("scripts/conf/a.yml", "new a")
		err := r.step(memo).Apply(context.Background())
		if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("Apply: %v; want a permanent error naming the symlink", err)
		}
		if got := readFile(t, filepath.Join(outside, "a.yml")); got != "a" {
			t.Errorf("written through the link: a.yml = %q", got)
		}
		if got := readFile(t, filepath.Join(outside, "b.yml")); got != "b" {
			t.Errorf("removed through the link: b.yml = %q", got)
		}
	})
}

func TestS3Outage(t *testing.T) {
	outage := &simapi.Fault{Count: -1, Status: 503}
	t.Run("files intact: warning", func(t *testing.T) {
		r := newRig(t)
		r.seed(stack)
		memo := r.converge(nil)
		r.sim.SetFault("s3.ListObjectsV2", outage)
		s := r.step(memo)
		ok, err := s.Check(context.Background())
		if err != nil || !ok {
			t.Fatalf("Check during an outage with intact files = %v, %v; want true", ok, err)
		}
		if w := s.Warning(); !strings.Contains(w, "s3://"+bucketName+"/scripts/") || !strings.Contains(w, "intact") {
			t.Errorf("Warning() = %q; want it to name the bucket and say the files are intact", w)
		}
	})
	t.Run("file edited: error", func(t *testing.T) {
		r := newRig(t)
		r.seed(stack)
		memo := r.converge(nil)
		r.write("docker-compose.yml", "edited")
		r.sim.SetFault("s3.ListObjectsV2", outage)
		s := r.step(memo)
		ok, err := s.Check(context.Background())
		if err == nil || ok {
			t.Fatalf("Check during an outage with an edited file = %v, %v; want an error", ok, err)
		}
		if retry.IsPermanent(err) {
			t.Errorf("outage error %v is permanent; retrying may fix it", err)
		}
		if s.Warning() != "" {
			t.Errorf("Warning() = %q with an error", s.Warning())
		}
		if err := s.Apply(context.Background()); err == nil {
			t.Error("Apply during an outage succeeded")
		}
		if got := readFile(t, r.path("docker-compose.yml")); got != "edited" {
			t.Errorf("docker-compose.yml = %q", got)
		}
	})
	t.Run("never synced: error", func(t *testing.T) {
		r := newRig(t)
		r.seed(stack)
		r.sim.SetFault("s3.ListObjectsV2", outage)
		if ok, err := r.step(nil).Check(context.Background()); err == nil || ok {
			t.Errorf("Check during an outage before any sync = %v, %v; want an error", ok, err)
		}
	})
}

// The files are read by the containers' own users (nobody, grafana), so
// they are installed readable whatever the umask of the shell the
// operator runs monagent from.
func TestModesIndependentOfUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	r := newRig(t)
	r.seed(stack)
	r.converge(nil)
	// Modes cut by an operator's umask 077 (or a hardened 027) would
	// leave the bundle 0600/0700 root, unreadable to Prometheus
	// (nobody) and Grafana (472).
	for rel, want := range map[string]os.FileMode{
		"docker-compose.yml":                        0o644,
		"prometheus/prometheus.yml":                 0o644,
		"prometheus":                                0o755 | os.ModeDir,
		"grafana/provisioning":                      0o755 | os.ModeDir,
		"grafana/provisioning/datasources/loki.yml": 0o644,
	} {
		fi, err := os.Stat(r.path(rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode %v under umask 077, want %v", rel, fi.Mode(), want)
		}
	}
}

func TestMD5OfETag(t *testing.T) {
	tests := []struct{ etag, want string }{
		{`"d41d8cd98f00b204e9800998ecf8427e"`, "d41d8cd98f00b204e9800998ecf8427e"},
		{`"D41D8CD98F00B204E9800998ECF8427E"`, "d41d8cd98f00b204e9800998ecf8427e"},
		{"d41d8cd98f00b204e9800998ecf8427e", "d41d8cd98f00b204e9800998ecf8427e"},
		{`"9b2cf535f27731c974343645a3985328-2"`, ""}, // multipart: not a digest
		{`"d41d8cd98f00b204e9800998ecf8427"`, ""},
		{`"z41d8cd98f00b204e9800998ecf8427e"`, ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := md5OfETag(tt.etag); got != tt.want {
			t.Errorf("md5OfETag(%s) = %q, want %q", tt.etag, got, tt.want)
		}
	}
}

// A path that changes from a file to a folder, or back, between two
// bundles is installed: the old file or folder makes way first.
func TestRestructure(t *testing.T) {
	tests := []struct {
		name     string
		from, to map[string]string
		gone     string
	}{
		{"file becomes a folder", map[string]string{"scripts/a.yml": "x", "scripts/rules": "one file"},
			map[string]string{"scripts/a.yml": "x", "scripts/rules/a.yml": "groups: []\n"}, ""},
		{"folder becomes a file", map[string]string{"scripts/a.yml": "x", "scripts/rules/deep/a.yml": "groups: []\n"},
			map[string]string{"scripts/a.yml": "x", "scripts/rules": "one file"}, ""},
		{"folder emptied", map[string]string{"scripts/a.yml": "x", "scripts/old/deep/a.yml": "y"},
			map[string]string{"scripts/a.yml": "x"}, "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.seed(tt.from)
			memo := r.converge(nil)
			for k := range tt.from {
				r.remove(k)
			}
			for k, v := range tt.to {
				r.put(k, v)
			}
			r.converge(memo)
			for k, v := range tt.to {
				if got := readFile(t, r.path(strings.TrimPrefix(k, "scripts/"))); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.gone != "" {
				if _, err := os.Lstat(r.path(tt.gone)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s is still there: %v", tt.gone, err)
				}
			}
		})
	}
}

// inflate lists one key with a size of its own: the caps are checked on
// the listing, before any download.
type inflate struct {
	S3API
	key  string
	size int64
}

func (f inflate) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	out, err := f.S3API.ListObjectsV2(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	for i := range out.Contents {
		if aws.ToString(out.Contents[i].Key) == f.key {
			out.Contents[i].Size = aws.Int64(f.size)
		}
	}
	return out, nil
}

// A listing that cannot be one tree, or is too large to be configuration,
// is refused before anything is downloaded, naming what is wrong.
func TestListingRefused(t *testing.T) {
	tests := []struct {
		name    string
		objects map[string]string
		keep    []string
		api     func(S3API) S3API
		want    []string
	}{
		{"a key is the folder of another", map[string]string{"scripts/rules": "x", "scripts/rules/a.yml": "y"}, nil, nil,
			[]string{"scripts/rules is a file", "scripts/rules/a.yml needs it to be a folder"}},
		{"a key where a kept path needs a folder", map[string]string{"scripts/a.yml": "x", "scripts/prometheus/secrets": "y"},
			[]string{"prometheus/secrets/metrics-token"}, nil,
			[]string{"scripts/prometheus/secrets is a file", "kept path prometheus/secrets/metrics-token"}},
		{"an object too large", map[string]string{"scripts/a.yml": "x", "scripts/big.tar": "y"}, nil,
			func(api S3API) S3API { return inflate{api, "scripts/big.tar", maxObject + 1} },
			[]string{"scripts/big.tar is 67108865 bytes"}},
		{"a bundle too large", map[string]string{"scripts/a": "x", "scripts/b": "y", "scripts/c": "z", "scripts/d": "w", "scripts/e": "v"}, nil,
			func(api S3API) S3API {
				return inflate{inflate{inflate{inflate{api, "scripts/a", maxObject}, "scripts/b", maxObject}, "scripts/c", maxObject}, "scripts/d", maxObject}
			},
			[]string{"the bundle is more than 268435456 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.seed(tt.objects)
			r.keep = append(r.keep, tt.keep...)
			if tt.api != nil {
				r.api = tt.api(r.s3)
			}
			s := r.step(nil)
			err := s.Apply(context.Background())
			if !retry.IsPermanent(err) {
				t.Fatalf("Apply: %v, want a permanent error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if n := r.count("GetObject"); n != 0 {
				t.Errorf("%d objects downloaded from a refused listing", n)
			}
		})
	}
}

// A prefix written without its slash still names a folder.
func TestPrefixWithoutSlash(t *testing.T) {
	r := newRig(t)
	r.seed(stack)
	r.cfg.KeyPrefix = "scripts"
	r.converge(nil)
	if _, err := os.Lstat(r.path("shares-the-prefix-without-a-slash.conf")); err == nil {
		t.Error("an object of scriptsextra/ was installed for the prefix scripts")
	}
	if got := readFile(t, r.path("prometheus/prometheus.yml")); got != stack["scripts/prometheus/prometheus.yml"] {
		t.Errorf("prometheus.yml = %q", got)
	}
}

// With bundle.version_parameter, a converged run does not list the bucket
// while the parameter and the installed files are unchanged; a bumped
// parameter, or a file changed on the host, lists it again.
func TestVersionParameterSparesTheListing(t *testing.T) {
	const versionParam = "/monitoring-test/bundle/version"
	r := newRig(t)
	r.cfg.VersionParameter = versionParam
	r.params.values[versionParam] = "v1"
	r.seed(map[string]string{"scripts/docker-compose.yml": "services: {}\n", "scripts/prometheus/prometheus.yml": "global: {}\n"})
	memo := r.converge(nil)
	if memo["version"] == "" || strings.Contains(memo["version"], "v1") {
		t.Fatalf("memo version = %q, want v1's digest", memo["version"])
	}
	lists := r.count("ListObjectsV2")

	check := func(want bool) {
		t.Helper()
		s := r.step(memo)
		ok, err := s.Check(context.Background())
		if err != nil || ok != want {
			t.Fatalf("Check = %v, %v; want %v", ok, err, want)
		}
	}
	check(true)
	if n := r.count("ListObjectsV2"); n != lists {
		t.Fatalf("a converged run with the same version listed the bucket (%d lists, was %d)", n, lists)
	}

	// An upload, then the bump: the next run lists and installs it.
	r.put("scripts/prometheus/prometheus.yml", "global: {scrape_interval: 15s}\n")
	check(true) // not bumped yet: the bucket is not asked
	r.params.values[versionParam] = "v2"
	check(false)
	memo = r.converge(memo)
	if got := readFile(t, r.path("prometheus/prometheus.yml")); !strings.Contains(got, "15s") {
		t.Errorf("the new bundle was not installed: %q", got)
	}
	if v1 := memo["version"]; v1 == "" {
		t.Errorf("memo version empty after v2 was installed")
	}

	// A file changed on the host: listed and repaired whatever the version.
	r.write("docker-compose.yml", "tampered\n")
	lists = r.count("ListObjectsV2")
	check(false)
	if r.count("ListObjectsV2") == lists {
		t.Error("a changed file did not make the run list the bucket")
	}

	// No such parameter: the bucket is listed, as without one.
	delete(r.params.values, versionParam)
	memo = r.converge(memo)
	lists = r.count("ListObjectsV2")
	check(true)
	if r.count("ListObjectsV2") == lists {
		t.Error("without the parameter a run did not list the bucket")
	}
}

// A first run applies without a Check (nothing installed yet): it still
// records the version, so the next run does not list the bucket.
func TestVersionRecordedByApplyAlone(t *testing.T) {
	const versionParam = "/monitoring-test/bundle/version"
	r := newRig(t)
	r.cfg.VersionParameter = versionParam
	r.params.values[versionParam] = "v7"
	r.seed(map[string]string{"scripts/docker-compose.yml": "services: {}\n"})
	s := r.step(nil)
	if err := s.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := s.Memo()["version"]; v == "" {
		t.Error("no version in the memo after Apply alone")
	}
}
