package s3sim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/monagent/monagent/rig/awssim/simtest"
)

// TestVirtualHosted addresses the bucket in the Host, as the SDK does by
// default for a named endpoint: bucket.localhost:PORT.
func TestVirtualHosted(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "vhost")
	r.put(t, "vhost", "dir/obj", "virtual")
	u, _ := url.Parse(r.url)
	// Whatever name the SDK asks for, dial the test server.
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, u.Host)
		},
	}}
	c := newClient("http://localhost:"+u.Port(), hc, aws.NopRetryer{}, false)
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("vhost"), Key: aws.String("dir/obj")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "virtual" {
		t.Errorf("virtual-hosted GetObject = %q", b)
	}
	list, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("vhost")})
	if err != nil || len(list.Contents) != 1 {
		t.Errorf("virtual-hosted ListObjectsV2 = %v, %v", list, err)
	}
	var virtual int
	for _, q := range r.requests() {
		if q.host == "vhost.localhost:"+u.Port() && !strings.HasPrefix(q.path, "/vhost") {
			virtual++
		}
	}
	if virtual != 2 {
		t.Errorf("%d virtual-hosted requests arrived, want 2: %+v", virtual, r.requests())
	}

	// bucket.127.0.0.1:PORT, one label more than the server's address.
	req := signedRequest(t, http.MethodGet, r.url+"/dir/obj", nil)
	req.Host = "vhost." + u.Host
	if resp := do(t, req); resp.StatusCode != http.StatusOK {
		t.Errorf("Host %s: status %d", req.Host, resp.StatusCode)
	} else if b, _ := io.ReadAll(resp.Body); string(b) != "virtual" {
		t.Errorf("Host %s: body %q", req.Host, b)
	}
	// Another name entirely is path-style.
	req = signedRequest(t, http.MethodGet, r.url+"/vhost/dir/obj", nil)
	req.Host = "monitoring.internal:" + u.Port()
	if resp := do(t, req); resp.StatusCode != http.StatusOK {
		t.Errorf("Host %s: status %d", req.Host, resp.StatusCode)
	}
}

func TestMultipartUpload(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.mkBucket(t, "mpu")
	part1 := bytes.Repeat([]byte{'a'}, 5<<20)
	part2 := []byte("tail")
	create, err := r.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String("mpu"), Key: aws.String("big"), ContentType: aws.String("application/x-tar"),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := create.UploadId
	upload := func(n int32, body []byte) string {
		t.Helper()
		out, err := r.s3.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String("mpu"), Key: aws.String("big"), UploadId: id, PartNumber: aws.Int32(n), Body: bytes.NewReader(body),
		})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ETag)
	}
	e1, e2 := upload(1, part1), upload(2, part2)
	complete := func(parts ...s3types.CompletedPart) error {
		_, err := r.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: aws.String("mpu"), Key: aws.String("big"), UploadId: id,
			MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts},
		})
		return err
	}
	p := func(n int32, etag string) s3types.CompletedPart {
		return s3types.CompletedPart{PartNumber: aws.Int32(n), ETag: aws.String(etag)}
	}
	failures := []struct {
		name  string
		parts []s3types.CompletedPart
		code  string
	}{
		{"wrong etag", []s3types.CompletedPart{p(1, e1), p(2, `"0000"`)}, "InvalidPart"},
		{"missing part", []s3types.CompletedPart{p(1, e1), p(3, e2)}, "InvalidPart"},
		{"out of order", []s3types.CompletedPart{p(2, e2), p(1, e1)}, "InvalidPartOrder"},
		{"small first part", []s3types.CompletedPart{p(2, e2), p(3, e2)}, "InvalidPart"},
	}
	for _, f := range failures {
		if err := complete(f.parts...); errorCode(err) != f.code {
			t.Errorf("%s: error %v, want %s", f.name, err, f.code)
		}
	}
	if err := complete(p(1, e1), p(2, e2)); err != nil {
		t.Fatal(err)
	}
	head, err := r.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("mpu"), Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(aws.ToString(head.ETag), `-2"`) || aws.ToInt64(head.ContentLength) != int64(len(part1)+len(part2)) ||
		aws.ToString(head.ContentType) != "application/x-tar" {
		t.Errorf("HeadObject = etag %s length %d type %s", aws.ToString(head.ETag), aws.ToInt64(head.ContentLength), aws.ToString(head.ContentType))
	}
	if got := r.get(t, "mpu", "big"); got != string(part1)+string(part2) {
		t.Errorf("assembled object differs (%d bytes)", len(got))
	}
	// Completed: the upload is gone.
	if err := complete(p(1, e1), p(2, e2)); errorCode(err) != "NoSuchUpload" {
		t.Errorf("second completion: error %v, want NoSuchUpload", err)
	}

	small, err := r.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("mpu"), Key: aws.String("small")})
	if err != nil {
		t.Fatal(err)
	}
	id = small.UploadId
	_, err = r.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("mpu"), Key: aws.String("small"), UploadId: id, PartNumber: aws.Int32(1), Body: strings.NewReader("x")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String("mpu"), Key: aws.String("small"), UploadId: id,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{p(1, `"`+md5hex([]byte("x"))+`"`), p(2, `"`+md5hex([]byte("x"))+`"`)}},
	})
	if errorCode(err) != "InvalidPart" {
		t.Errorf("unknown second part: %v", err)
	}
	if _, err := r.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("mpu"), Key: aws.String("small"), UploadId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = r.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("mpu"), Key: aws.String("small"), UploadId: id})
	if !errors.As(err, new(*s3types.NoSuchUpload)) {
		t.Errorf("second abort: error %v, want *types.NoSuchUpload", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(r.dir, "uploads")); len(entries) != 0 {
		t.Errorf("uploads left behind: %v", entries)
	}
	// A part too small in the middle.
	mid, err := r.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("mpu"), Key: aws.String("mid")})
	if err != nil {
		t.Fatal(err)
	}
	var etags []string
	for i, body := range []string{"small", "last"} {
		out, err := r.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("mpu"), Key: aws.String("mid"), UploadId: mid.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: strings.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		etags = append(etags, aws.ToString(out.ETag))
	}
	_, err = r.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String("mpu"), Key: aws.String("mid"), UploadId: mid.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{p(1, etags[0]), p(2, etags[1])}},
	})
	if errorCode(err) != "EntityTooSmall" {
		t.Errorf("small middle part: error %v, want EntityTooSmall", err)
	}
}

// localFiles lists dir's regular files as slash-separated relative paths.
func localFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("%s holds no files", dir)
	}
	return files
}

func TestSeed(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "existing")
	seedStack := simtest.SeedStack(t)
	err := r.sim.ApplyScenario([]byte(`
s3:
  buckets:
    - name: existing
      objects:
        - {key: hello.txt, body: "hi there"}
    - name: stack
      dirs:
        - {path: ` + seedStack + `, prefix: scripts/}
faults:
  s3.GetObject: {count: 1, code: SlowDown, status: 503}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("existing"), Key: aws.String("hello.txt")})
	if errorCode(err) != "SlowDown" {
		t.Errorf("first GetObject: error %v, want the injected SlowDown", err)
	}
	retrying := newClient(r.url, nil, nil, true)
	out, err := retrying.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("existing"), Key: aws.String("hello.txt")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "hi there" || aws.ToString(out.ContentType) != "text/plain; charset=utf-8" {
		t.Errorf("seeded object = %q type %q", b, aws.ToString(out.ContentType))
	}

	want := localFiles(t, seedStack)
	keys, _ := listAll(t, r.s3, &s3.ListObjectsV2Input{Bucket: aws.String("stack"), MaxKeys: aws.Int32(1000)})
	var wantKeys []string
	for rel := range want {
		wantKeys = append(wantKeys, "scripts/"+rel)
	}
	sort.Strings(wantKeys)
	if strings.Join(keys, "\n") != strings.Join(wantKeys, "\n") {
		t.Errorf("seeded keys = %v, want %v", keys, wantKeys)
	}
	if got := r.get(t, "stack", "scripts/docker-compose.yml"); got != string(want["docker-compose.yml"]) {
		t.Error("seeded docker-compose.yml differs from the file")
	}

	for _, bad := range []string{
		"s3: {buckets: [{name: Bad_Name}]}",
		"s3: {buckets: [{name: okname, objects: [{key: k, bdy: x}]}]}",
		"s3: {buckets: [{name: okname, dirs: [{path: /nonexistent/dir, prefix: x/}]}]}",
		"s3: {bucket: []}",
	} {
		if err := r.sim.ApplyScenario([]byte(bad)); err == nil {
			t.Errorf("scenario %q: no error", bad)
		}
	}
}

func TestConcurrentClients(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "busy")
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 6 {
				key := fmt.Sprintf("k/%d", (i+j)%5) // writers collide on keys
				body := strings.Repeat(fmt.Sprint(i), 1000+j)
				if _, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("busy"), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
					errs <- err
					return
				}
				out, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("busy"), Key: aws.String(key)})
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(out.Body)
				out.Body.Close()
				// Some writer's whole body, never a mix, and matching its ETag.
				if err != nil || len(b) == 0 || strings.Count(string(b), string(b[:1])) != len(b) || `"`+md5hex(b)+`"` != aws.ToString(out.ETag) {
					errs <- fmt.Errorf("%s: torn read (%d bytes, etag %s): %v", key, len(b), aws.ToString(out.ETag), err)
					return
				}
				if _, err := r.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("busy")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// cli runs the AWS CLI against the rig and returns its stdout.
func (r *rig) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := simtest.AWSCLI(t, r.url, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestCLI(t *testing.T) {
	r := newRig(t)
	seedStack := simtest.SeedStack(t)
	r.cli(t, "s3", "mb", "s3://clibucket")
	r.cli(t, "s3", "cp", "--recursive", "--only-show-errors", seedStack, "s3://clibucket/scripts/")
	want := localFiles(t, seedStack)
	for rel, body := range want {
		if got := r.get(t, "clibucket", "scripts/"+rel); got != string(body) {
			t.Errorf("scripts/%s: stored %d bytes, want %d", rel, len(got), len(body))
		}
	}

	ls := r.cli(t, "s3", "ls", "--recursive", "s3://clibucket/")
	if n := strings.Count(ls, "\n"); n != len(want) {
		t.Errorf("s3 ls --recursive lists %d lines, want %d:\n%s", n, len(want), ls)
	}
	if !strings.Contains(ls, "scripts/grafana/dashboards/loki-logs.json") {
		t.Errorf("s3 ls --recursive lacks a nested key:\n%s", ls)
	}
	top := r.cli(t, "s3", "ls", "s3://clibucket/scripts/")
	for _, line := range []string{"PRE grafana/", "PRE prometheus/", "docker-compose.yml"} {
		if !strings.Contains(top, line) {
			t.Errorf("s3 ls s3://clibucket/scripts/ lacks %q:\n%s", line, top)
		}
	}
	if buckets := r.cli(t, "s3", "ls"); !strings.Contains(buckets, "clibucket") {
		t.Errorf("s3 ls = %q", buckets)
	}

	// Over 8 MiB the CLI uploads in parts; the object must come back whole.
	dir := t.TempDir()
	big := make([]byte, 9<<20+12345)
	for i := range big {
		big[i] = byte(i*7 + i>>13)
	}
	src := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(src, big, 0o644); err != nil {
		t.Fatal(err)
	}
	r.cli(t, "s3", "cp", "--only-show-errors", src, "s3://clibucket/big.bin")
	head, err := r.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("clibucket"), Key: aws.String("big.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(aws.ToString(head.ETag), `-2"`) {
		t.Errorf("big.bin ETag %s: want a two-part multipart ETag", aws.ToString(head.ETag))
	}
	dst := filepath.Join(dir, "back.bin")
	r.cli(t, "s3", "cp", "--only-show-errors", "s3://clibucket/big.bin", dst)
	back, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, big) {
		t.Errorf("big.bin round trip: %d bytes back, want %d identical", len(back), len(big))
	}
}
