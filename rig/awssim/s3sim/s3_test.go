package s3sim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/monagent/monagent/rig/awssim/s3sim"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func TestBuckets(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	_, err := r.s3.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket: aws.String("alpha"),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{
			LocationConstraint: s3types.BucketLocationConstraintEuWest1,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.mkBucket(t, "beta.with-dots")

	_, err = r.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("alpha")})
	var owned *s3types.BucketAlreadyOwnedByYou
	if !errors.As(err, &owned) {
		t.Errorf("repeat CreateBucket: error %v, want *types.BucketAlreadyOwnedByYou", err)
	}
	_, err = r.s3.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    aws.String("gamma"),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraintUsWest2},
	})
	if errorCode(err) != "IllegalLocationConstraintException" {
		t.Errorf("CreateBucket in another region: error %v, want IllegalLocationConstraintException", err)
	}
	for _, bad := range []string{"ab", "UPPER", "under_score", "-lead", "trail-", "dou..ble", "192.168.1.1", "xn--punycode", strings.Repeat("a", 64)} {
		_, err := r.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bad)})
		if errorCode(err) != "InvalidBucketName" {
			t.Errorf("CreateBucket %q: error %v, want InvalidBucketName", bad, err)
		}
	}

	if _, err := r.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("alpha")}); err != nil {
		t.Errorf("HeadBucket alpha: %v", err)
	}
	_, err = r.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("missing")})
	var nf *s3types.NotFound
	if !errors.As(err, &nf) {
		t.Errorf("HeadBucket missing: error %v, want *types.NotFound", err)
	}

	list, err := r.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range list.Buckets {
		names = append(names, aws.ToString(b.Name))
		if c := aws.ToTime(b.CreationDate); time.Since(c) > time.Minute {
			t.Errorf("bucket %s CreationDate %v", aws.ToString(b.Name), c)
		}
	}
	if strings.Join(names, " ") != "alpha beta.with-dots" {
		t.Errorf("ListBuckets = %v", names)
	}
	if list.Owner == nil || len(aws.ToString(list.Owner.ID)) != 64 {
		t.Errorf("ListBuckets owner = %+v", list.Owner)
	}

	loc, err := r.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("alpha")})
	if err != nil || loc.LocationConstraint != s3types.BucketLocationConstraintEuWest1 {
		t.Errorf("GetBucketLocation = %v, %v", loc, err)
	}

	r.put(t, "alpha", "k", "v")
	_, err = r.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("alpha")})
	if errorCode(err) != "BucketNotEmpty" {
		t.Errorf("DeleteBucket of a full bucket: error %v, want BucketNotEmpty", err)
	}
	if _, err := r.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("alpha"), Key: aws.String("k")}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("alpha")}); err != nil {
		t.Errorf("DeleteBucket: %v", err)
	}
	if _, err := r.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("alpha")}); !errors.As(err, &nf) {
		t.Errorf("HeadBucket after delete: %v", err)
	}
}

func TestObjects(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.mkBucket(t, "objs")
	body := "0123456789 hello, world"
	before := time.Now().Add(-2 * time.Second)
	put, err := r.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("objs"), Key: aws.String("dir/file.txt"), Body: strings.NewReader(body),
		ContentType: aws.String("text/plain; charset=utf-8"), Metadata: map[string]string{"owner": "mon"},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantETag := `"` + md5hex([]byte(body)) + `"`
	if aws.ToString(put.ETag) != wantETag {
		t.Errorf("PutObject ETag = %s, want %s", aws.ToString(put.ETag), wantETag)
	}

	got, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("objs"), Key: aws.String("dir/file.txt")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(b) != body {
		t.Errorf("GetObject body = %q", b)
	}
	if aws.ToString(got.ETag) != wantETag || aws.ToInt64(got.ContentLength) != int64(len(body)) ||
		aws.ToString(got.ContentType) != "text/plain; charset=utf-8" || got.Metadata["owner"] != "mon" {
		t.Errorf("GetObject = etag %s length %d type %q metadata %v", aws.ToString(got.ETag), aws.ToInt64(got.ContentLength), aws.ToString(got.ContentType), got.Metadata)
	}
	if lm := aws.ToTime(got.LastModified); lm.Before(before) || lm.After(time.Now().Add(time.Second)) {
		t.Errorf("LastModified = %v", lm)
	}

	head, err := r.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("objs"), Key: aws.String("dir/file.txt")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(head.ETag) != wantETag || aws.ToInt64(head.ContentLength) != int64(len(body)) {
		t.Errorf("HeadObject = etag %s length %d", aws.ToString(head.ETag), aws.ToInt64(head.ContentLength))
	}

	ranges := []struct{ spec, want string }{
		{"bytes=2-5", "2345"},
		{"bytes=20-", body[20:]},
		{"bytes=-5", body[len(body)-5:]},
		{"bytes=10-1000", body[10:]},
	}
	for _, rg := range ranges {
		out, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("objs"), Key: aws.String("dir/file.txt"), Range: aws.String(rg.spec)})
		if err != nil {
			t.Errorf("Range %s: %v", rg.spec, err)
			continue
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(b) != rg.want || !strings.HasPrefix(aws.ToString(out.ContentRange), "bytes ") {
			t.Errorf("Range %s = %q (Content-Range %q), want %q", rg.spec, b, aws.ToString(out.ContentRange), rg.want)
		}
	}
	_, err = r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("objs"), Key: aws.String("dir/file.txt"), Range: aws.String("bytes=100-")})
	if errorCode(err) != "InvalidRange" {
		t.Errorf("range past the end: error %v, want InvalidRange", err)
	}

	// Overwrite, then delete.
	r.put(t, "objs", "dir/file.txt", "new")
	if got := r.get(t, "objs", "dir/file.txt"); got != "new" {
		t.Errorf("after overwrite: %q", got)
	}
	for range 2 { // deleting what is gone is no error
		if _, err := r.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("objs"), Key: aws.String("dir/file.txt")}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("objs"), Key: aws.String("dir/file.txt")})
	var nsk *s3types.NoSuchKey
	if !errors.As(err, &nsk) {
		t.Errorf("GetObject after delete: error %v, want *types.NoSuchKey", err)
	}
	_, err = r.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("objs"), Key: aws.String("dir/file.txt")})
	var nf *s3types.NotFound
	if !errors.As(err, &nf) {
		t.Errorf("HeadObject after delete: error %v, want *types.NotFound", err)
	}
	for _, op := range []func() error{
		func() error { // the SDK models NoSuchBucket for no object operation: the code tells
			_, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("nobucket"), Key: aws.String("k")})
			return err
		},
		func() error {
			_, err := r.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("nobucket"), Key: aws.String("k"), Body: strings.NewReader("x")})
			return err
		},
		func() error {
			_, err := r.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("nobucket"), Key: aws.String("k")})
			return err
		},
		func() error {
			_, err := r.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("nobucket")})
			return err
		},
	} {
		if err := op(); errorCode(err) != "NoSuchBucket" {
			t.Errorf("error %v, want NoSuchBucket", err)
		}
	}

	// Conditional reads, as a fingerprinting client makes them.
	r.put(t, "objs", "cond", "c")
	cur := `"` + md5hex([]byte("c")) + `"`
	_, err = r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("objs"), Key: aws.String("cond"), IfMatch: aws.String(`"other"`)})
	if errorCode(err) != "PreconditionFailed" {
		t.Errorf("If-Match mismatch: error %v, want PreconditionFailed", err)
	}
	_, err = r.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("objs"), Key: aws.String("cond"), IfNoneMatch: aws.String(cur)})
	if errorCode(err) != "NotModified" {
		t.Errorf("If-None-Match on the current ETag: error %v, want NotModified", err)
	}
}

// TestAWSChunkedUpload sends PutObject over TLS, where the SDK streams the
// body aws-chunked with a trailing checksum; what is stored must be the
// user's bytes.
func TestAWSChunkedUpload(t *testing.T) {
	r := startRig(t, t.TempDir(), true)
	ctx := context.Background()
	r.mkBucket(t, "chunky")
	body := bytes.Repeat([]byte("chunk\r\n0\r\n;\x00"), 150000) // framing look-alikes, ~1.8 MB
	_, err := r.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("chunky"), Key: aws.String("blob"), Body: bytes.NewReader(body),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		t.Fatal(err)
	}
	var chunked bool
	for _, q := range r.requests() {
		if q.method == http.MethodPut && q.path == "/chunky/blob" {
			chunked = strings.Contains(q.contentEncoding, "aws-chunked") && strings.HasPrefix(q.payloadHash, "STREAMING-")
		}
	}
	if !chunked {
		t.Fatal("the SDK did not send the body aws-chunked; the test proves nothing")
	}
	out, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("chunky"), Key: aws.String("blob"), ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body) // the SDK validates the CRC32 as it reads
	out.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Errorf("stored %d bytes, want the %d sent", len(got), len(body))
	}
	if aws.ToString(out.ChecksumCRC32) == "" || aws.ToString(out.ETag) != `"`+md5hex(body)+`"` {
		t.Errorf("GetObject checksum %q etag %s", aws.ToString(out.ChecksumCRC32), aws.ToString(out.ETag))
	}
}

// TestSignedChunkedBody sends the SigV4 streaming framing by hand: chunk
// signatures, a decoded length, and bodies that break the framing.
func TestSignedChunkedBody(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "sig")
	sig := ";chunk-signature=" + strings.Repeat("ab", 32) + "\r\n"
	good := "5" + sig + "hello\r\n" + "7" + sig + ", world\r\n" + "0" + sig + "\r\n"
	tests := []struct {
		name, body, decoded string
		status              int
		code                string
	}{
		{"signed chunks", good, "12", 200, ""},
		{"trailers", "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n", "3", 200, ""},
		{"no final chunk", "5" + sig + "hello\r\n", "5", 400, "IncompleteBody"},
		{"short chunk", "9" + sig + "hello", "9", 400, "IncompleteBody"},
		{"long chunk", "2" + sig + "hello\r\n0\r\n\r\n", "2", 400, "InvalidRequest"},
		{"bad size", "zz" + sig + "hello\r\n", "5", 400, "InvalidRequest"},
		{"decoded length mismatch", good, "99", 400, "IncompleteBody"},
		{"endless line", strings.Repeat("1", 100000), "1", 400, "InvalidRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, r.url+"/sig/obj", strings.NewReader(tt.body))
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00")
			req.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
			req.Header.Set("Content-Encoding", "aws-chunked")
			req.Header.Set("X-Amz-Decoded-Content-Length", tt.decoded)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || (tt.code != "" && !strings.Contains(string(b), "<Code>"+tt.code+"</Code>")) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, tt.status, tt.code)
			}
		})
	}
	if got := r.get(t, "sig", "obj"); got != "abc" {
		t.Errorf("stored %q, want the last good upload, abc", got)
	}
}

func TestListObjectsV2(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.mkBucket(t, "list")
	keys := []string{"a.txt", "b/1", "b/2", "b/c/3", "c/4", "d.txt", "e/5", "e/6", "f", "sp ace/+plus.txt"}
	for _, k := range keys {
		r.put(t, "list", k, "x")
	}
	tests := []struct {
		prefix, delimiter, startAfter string
		wantKeys, wantPrefixes        string
	}{
		{"", "", "", strings.Join(keys, " "), ""},
		{"", "/", "", "a.txt d.txt f", "b/ c/ e/ sp ace/"},
		{"b/", "/", "", "b/1 b/2", "b/c/"},
		{"b/", "", "", "b/1 b/2 b/c/3", ""},
		{"e", "/", "", "", "e/"},
		{"", "/", "b/2", "d.txt f", "b/ c/ e/ sp ace/"}, // b/c/3 is after b/2 and rolls up
		{"", "/", "b/c/3", "d.txt f", "c/ e/ sp ace/"},
		{"zzz", "/", "", "", ""},
	}
	for _, tt := range tests {
		for _, max := range []int32{1, 2, 3, 1000} {
			name := fmt.Sprintf("prefix=%q delimiter=%q start-after=%q max=%d", tt.prefix, tt.delimiter, tt.startAfter, max)
			t.Run(name, func(t *testing.T) {
				gotKeys, gotPrefixes := listAll(t, r.s3, &s3.ListObjectsV2Input{
					Bucket: aws.String("list"), Prefix: aws.String(tt.prefix), Delimiter: aws.String(tt.delimiter),
					StartAfter: aws.String(tt.startAfter), MaxKeys: aws.Int32(max),
				})
				if strings.Join(gotKeys, " ") != tt.wantKeys || strings.Join(gotPrefixes, " ") != tt.wantPrefixes {
					t.Errorf("keys %q prefixes %q, want %q and %q", gotKeys, gotPrefixes, tt.wantKeys, tt.wantPrefixes)
				}
			})
		}
	}

	// encoding-type=url encodes keys and prefixes; the SDK leaves decoding to us.
	out, err := r.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("list"), Prefix: aws.String("sp ace/"), EncodingType: s3types.EncodingTypeUrl})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 1 || aws.ToString(out.Contents[0].Key) != "sp+ace/%2Bplus.txt" || aws.ToString(out.Prefix) != "sp+ace/" {
		t.Errorf("url-encoded listing: prefix %q contents %+v", aws.ToString(out.Prefix), out.Contents)
	}
	c := out.Contents[0]
	if aws.ToInt64(c.Size) != 1 || aws.ToString(c.ETag) != `"`+md5hex([]byte("x"))+`"` || c.StorageClass != "STANDARD" || c.LastModified == nil {
		t.Errorf("entry = %+v", c)
	}

	// The original ListObjects pages with markers.
	var v1Keys, v1Prefixes []string
	marker := ""
	for pages := 0; ; pages++ {
		out, err := r.s3.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("list"), Delimiter: aws.String("/"), Marker: aws.String(marker), MaxKeys: aws.Int32(2)})
		if err != nil || pages > 20 {
			t.Fatalf("ListObjects page %d: %v", pages, err)
		}
		for _, o := range out.Contents {
			v1Keys = append(v1Keys, aws.ToString(o.Key))
		}
		for _, p := range out.CommonPrefixes {
			v1Prefixes = append(v1Prefixes, aws.ToString(p.Prefix))
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		marker = aws.ToString(out.NextMarker)
	}
	if strings.Join(v1Keys, " ") != "a.txt d.txt f" || strings.Join(v1Prefixes, " ") != "b/ c/ e/ sp ace/" {
		t.Errorf("ListObjects: keys %q prefixes %q", v1Keys, v1Prefixes)
	}

	_, err = r.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("list"), ContinuationToken: aws.String("bogus")})
	if errorCode(err) != "InvalidArgument" {
		t.Errorf("bad continuation token: error %v, want InvalidArgument", err)
	}
}

// listAll pages through ListObjectsV2, checking every page's counts.
func listAll(t *testing.T, c *s3.Client, in *s3.ListObjectsV2Input) (keys, prefixes []string) {
	t.Helper()
	pager := s3.NewListObjectsV2Paginator(c, in)
	for pages := 0; pager.HasMorePages(); pages++ {
		if pages > 50 {
			t.Fatal("pagination does not end")
		}
		out, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := len(out.Contents) + len(out.CommonPrefixes)
		if int(aws.ToInt32(out.KeyCount)) != n || n > int(aws.ToInt32(in.MaxKeys)) {
			t.Errorf("page: KeyCount %d, %d entries, MaxKeys %d", aws.ToInt32(out.KeyCount), n, aws.ToInt32(in.MaxKeys))
		}
		if aws.ToBool(out.IsTruncated) != (out.NextContinuationToken != nil) {
			t.Errorf("IsTruncated %v with NextContinuationToken %v", aws.ToBool(out.IsTruncated), out.NextContinuationToken)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		for _, p := range out.CommonPrefixes {
			prefixes = append(prefixes, aws.ToString(p.Prefix))
		}
	}
	return keys, prefixes
}

// TestKeysStayInside stores keys that look like paths out of the data
// directory, and checks each is its own object and nothing escaped.
func TestKeysStayInside(t *testing.T) {
	parent := t.TempDir()
	r := startRig(t, filepath.Join(parent, "data"), false)
	r.mkBucket(t, "safe")
	keys := []string{
		"../escape", "../../../../etc/passwd-sim", "a/../../b", "..", ".", "a/./b", "a//b", "/lead", "a/", "a", "a/b",
		"a@", "a@meta.json", "%", "%2E%2E", "x/%h00", "ünï cödé/ключ", strings.Repeat("long", 100) + "/" + strings.Repeat("z", 300),
	}
	for i, k := range keys {
		put(t, r, "safe", k, fmt.Sprint(i))
	}
	for i, k := range keys {
		if got := rawGet(t, r, "safe", k); got != fmt.Sprint(i) {
			t.Errorf("key %q = %q, want %d", k, got, i)
		}
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "data" {
		t.Errorf("files escaped the data directory: %v", entries)
	}
	if _, err := os.Stat("/etc/passwd-sim"); err == nil {
		t.Error("/etc/passwd-sim exists")
	}

	// A restart finds every key again.
	r2 := startRig(t, filepath.Join(parent, "data"), false)
	gotKeys, _ := listAll(t, r2.s3, &s3.ListObjectsV2Input{Bucket: aws.String("safe"), MaxKeys: aws.Int32(7)})
	if len(gotKeys) != len(keys) {
		t.Errorf("after restart: %d keys, want %d", len(gotKeys), len(keys))
	}
	if got := rawGet(t, r2, "safe", "../escape"); got != "0" {
		t.Errorf("after restart ../escape = %q", got)
	}
	for _, k := range keys {
		req := signedRequest(t, http.MethodDelete, r2.url+"/safe/"+escapeKey(k), nil)
		if resp := do(t, req); resp.StatusCode != http.StatusNoContent {
			t.Errorf("delete %q: %d", k, resp.StatusCode)
		}
	}
	var left []string
	filepath.WalkDir(filepath.Join(parent, "data", "buckets", "safe"), func(p string, d os.DirEntry, err error) error {
		if err == nil && p != filepath.Join(parent, "data", "buckets", "safe") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 1 || filepath.Base(left[0]) != "@bucket.json" {
		t.Errorf("after deleting every key the bucket holds %v", left)
	}
}

// escapeKey escapes a key for a raw request path, keeping "/" and "." so
// that the dot segments arrive as they are.
func escapeKey(k string) string {
	var b strings.Builder
	for _, c := range []byte(k) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("/.-_~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func signedRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00")
	return req
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

func put(t *testing.T, r *rig, bucket, key, body string) {
	t.Helper()
	resp := do(t, signedRequest(t, http.MethodPut, r.url+"/"+bucket+"/"+escapeKey(key), strings.NewReader(body)))
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT %q: %d %s", key, resp.StatusCode, b)
	}
}

func rawGet(t *testing.T, r *rig, bucket, key string) string {
	t.Helper()
	resp := do(t, signedRequest(t, http.MethodGet, r.url+"/"+bucket+"/"+escapeKey(key), nil))
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %q: %d %s", key, resp.StatusCode, b)
	}
	return string(b)
}

func TestBadRequests(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "bad")
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown bucket", "GET", "/nope?list-type=2", "", 404, "NoSuchBucket"},
		{"unknown bucket object", "GET", "/nope/key", "", 404, "NoSuchBucket"},
		{"missing key", "GET", "/bad/missing", "", 404, "NoSuchKey"},
		{"unsupported subresource", "PUT", "/bad?acl", "", 501, "NotImplemented"},
		{"object tagging", "GET", "/bad/k?tagging", "", 501, "NotImplemented"},
		{"post to root", "POST", "/", "", 405, "MethodNotAllowed"},
		{"patch object", "PATCH", "/bad/k", "", 405, "MethodNotAllowed"},
		{"malformed bucket config", "PUT", "/newbucket", "<CreateBucketConfiguration><Loc", 400, "MalformedXML"},
		{"bad max-keys", "GET", "/bad?list-type=2&max-keys=many", "", 400, "InvalidArgument"},
		{"bad encoding", "GET", "/bad?list-type=2&encoding-type=base64", "", 400, "InvalidArgument"},
		{"key too long", "PUT", "/bad/" + strings.Repeat("k", 1025), "x", 400, "KeyTooLongError"},
		{"bad part number", "PUT", "/bad/k?partNumber=0&uploadId=x", "x", 400, "InvalidArgument"},
		{"unknown upload", "PUT", "/bad/k?partNumber=1&uploadId=x", "x", 404, "NoSuchUpload"},
		{"complete garbage", "POST", "/bad/k?uploadId=x", "garbage", 400, "MalformedXML"},
		{"copy object", "PUT", "/bad/k", "", 501, "NotImplemented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := signedRequest(t, tt.method, r.url+tt.path, strings.NewReader(tt.body))
			if tt.name == "copy object" {
				req.Header.Set("X-Amz-Copy-Source", "/bad/other")
			}
			resp := do(t, req)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), "<Code>"+tt.code+"</Code>") ||
				!strings.Contains(string(b), "<RequestId>") {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, b, tt.status, tt.code)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := s3sim.New(testID, ""); err == nil {
		t.Error("New with no data directory: no error")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "buckets", "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "buckets", "broken", "@bucket.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s3sim.New(testID, dir); err == nil {
		t.Error("New over corrupt bucket metadata: no error")
	}
}
