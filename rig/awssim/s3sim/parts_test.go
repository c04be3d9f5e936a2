package s3sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// uploadParts stores key in bucket by a multipart upload of parts.
func (r *rig) uploadParts(t *testing.T, bucket, key string, parts ...[]byte) {
	t.Helper()
	ctx := context.Background()
	create, err := r.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	var done []s3types.CompletedPart
	for i, body := range parts {
		n := aws.Int32(int32(i + 1))
		out, err := r.s3.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(bucket), Key: aws.String(key), UploadId: create.UploadId, PartNumber: n, Body: bytes.NewReader(body),
		})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, s3types.CompletedPart{PartNumber: n, ETag: out.ETag})
	}
	_, err = r.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: create.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: done},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// httpStatus is the HTTP status of an SDK result or error.
func httpStatus(meta middleware.Metadata, err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	if resp, ok := awsmiddleware.GetRawResponse(meta).(*smithyhttp.Response); ok {
		return resp.StatusCode
	}
	return 0
}

// TestPartNumber reads objects part by part, as S3 serves partNumber: the
// part's bytes with 206 and the multipart object's part count; for an
// object stored in one piece, part 1 is the whole object.
func TestPartNumber(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "parts")
	part1 := bytes.Repeat([]byte{'a'}, 5<<20)
	part2 := []byte("the second and last part")
	r.uploadParts(t, "parts", "multi", part1, part2)
	r.put(t, "parts", "single", "one piece")
	whole := int64(len(part1) + len(part2))

	tests := []struct {
		name, key  string
		part       int32
		rangeSpec  string
		wantBody   []byte
		wantRange  string
		wantCount  int32 // 0: no x-amz-mp-parts-count
		wantStatus int
		wantCode   string // GetObject's error code
	}{
		{name: "first part", key: "multi", part: 1, wantBody: part1, wantRange: "bytes 0-5242879/" + strconv.FormatInt(whole, 10), wantCount: 2, wantStatus: 206},
		{name: "last part", key: "multi", part: 2, wantBody: part2, wantRange: "bytes 5242880-" + strconv.FormatInt(whole-1, 10) + "/" + strconv.FormatInt(whole, 10), wantCount: 2, wantStatus: 206},
		{name: "past the last part", key: "multi", part: 3, wantStatus: 416, wantCode: "InvalidPartNumber"},
		{name: "single part 1", key: "single", part: 1, wantBody: []byte("one piece"), wantRange: "bytes 0-8/9", wantStatus: 206},
		{name: "single part 2", key: "single", part: 2, wantStatus: 416, wantCode: "InvalidPartNumber"},
		{name: "part 0", key: "multi", part: 0, wantStatus: 400, wantCode: "InvalidArgument"},
		{name: "part 10001", key: "single", part: 10001, wantStatus: 400, wantCode: "InvalidArgument"},
		{name: "with a range", key: "single", part: 1, rangeSpec: "bytes=0-1", wantStatus: 400, wantCode: "InvalidRequest"},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &s3.GetObjectInput{Bucket: aws.String("parts"), Key: aws.String(tt.key), PartNumber: aws.Int32(tt.part)}
			if tt.rangeSpec != "" {
				in.Range = aws.String(tt.rangeSpec)
			}
			out, err := r.s3.GetObject(ctx, in)
			var meta middleware.Metadata
			if err == nil {
				defer out.Body.Close() // a failed check must not leave the connection busy
				meta = out.ResultMetadata
			}
			if got := httpStatus(meta, err); got != tt.wantStatus || errorCode(err) != tt.wantCode {
				t.Fatalf("GetObject: status %d, error %v; want %d %q", got, err, tt.wantStatus, tt.wantCode)
			}
			head, herr := r.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("parts"), Key: aws.String(tt.key), PartNumber: aws.Int32(tt.part), Range: in.Range})
			var hmeta middleware.Metadata
			if head != nil {
				hmeta = head.ResultMetadata
			}
			if got := httpStatus(hmeta, herr); got != tt.wantStatus {
				t.Errorf("HeadObject: status %d, error %v; want %d", got, herr, tt.wantStatus)
			}
			if err != nil || herr != nil {
				return
			}
			body, err := io.ReadAll(out.Body)
			if err != nil || !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body: %d bytes (%v), want %d", len(body), err, len(tt.wantBody))
			}
			if got := aws.ToString(out.ContentRange); got != tt.wantRange {
				t.Errorf("Content-Range = %q, want %q", got, tt.wantRange)
			}
			if got := aws.ToInt32(out.PartsCount); got != tt.wantCount {
				t.Errorf("GetObject PartsCount = %d, want %d", got, tt.wantCount)
			}
			if got := aws.ToInt32(head.PartsCount); got != tt.wantCount || aws.ToInt64(head.ContentLength) != int64(len(tt.wantBody)) {
				t.Errorf("HeadObject = parts %d length %d, want %d and %d", got, aws.ToInt64(head.ContentLength), tt.wantCount, len(tt.wantBody))
			}
		})
	}
}

// TestPartNumberCLI fetches a part with "aws s3api get-object --part-number".
func TestPartNumberCLI(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "parts")
	part1 := bytes.Repeat([]byte{'x'}, 5<<20)
	r.uploadParts(t, "parts", "multi", part1, []byte("tail"))
	dst := filepath.Join(t.TempDir(), "part2")
	var out struct {
		ContentLength int64
		ContentRange  string
		PartsCount    int
	}
	raw := r.cli(t, "--output", "json", "s3api", "get-object", "--bucket", "parts", "--key", "multi", "--part-number", "2", dst)
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("get-object output %q: %v", raw, err)
	}
	want := "bytes 5242880-5242883/5242884"
	if out.ContentLength != 4 || out.ContentRange != want || out.PartsCount != 2 {
		t.Errorf("get-object --part-number 2 = %+v, want length 4, range %q, 2 parts", out, want)
	}
	if got, err := os.ReadFile(dst); err != nil || string(got) != "tail" {
		t.Errorf("part 2 on disk: %d bytes (%v), want %q", len(got), err, "tail")
	}
}

// TestLastModifiedWholeSeconds checks that every read of an object reports
// the same LastModified, in whole seconds, as S3 does.
func TestLastModifiedWholeSeconds(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "times")
	keys := []string{"a", "b", "c"}
	for _, k := range keys {
		r.put(t, "times", k, "body of "+k)
	}
	r.uploadParts(t, "times", "d", []byte("only part"))
	keys = append(keys, "d")
	ctx := context.Background()
	list, err := r.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("times")})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]time.Time{}
	for _, o := range list.Contents {
		listed[aws.ToString(o.Key)] = aws.ToTime(o.LastModified)
	}
	for _, k := range keys {
		lm := listed[k]
		if lm.IsZero() || lm.Nanosecond() != 0 {
			t.Errorf("%s: listed LastModified %v, want whole seconds", k, lm.Format(time.RFC3339Nano))
		}
		head, err := r.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("times"), Key: aws.String(k)})
		if err != nil {
			t.Fatal(err)
		}
		if !aws.ToTime(head.LastModified).Equal(lm) {
			t.Errorf("%s: HeadObject LastModified %v, listed %v", k, aws.ToTime(head.LastModified), lm)
		}
	}
}

// TestSyncExactTimestamps downloads a bucket twice with
// "aws s3 sync --exact-timestamps": the second sync finds every file
// current and downloads nothing.
func TestSyncExactTimestamps(t *testing.T) {
	r := newRig(t)
	r.mkBucket(t, "sync")
	for _, k := range []string{"one.txt", "dir/two.txt", "dir/sub/three.txt"} {
		r.put(t, "sync", k, "content of "+k)
	}
	dst := t.TempDir()
	first := r.cli(t, "s3", "sync", "--exact-timestamps", "s3://sync", dst)
	if n := strings.Count(first, "download:"); n != 3 {
		t.Fatalf("first sync downloaded %d files, want 3:\n%s", n, first)
	}
	before := len(r.sim.Calls())
	second := r.cli(t, "s3", "sync", "--exact-timestamps", "s3://sync", dst)
	if strings.Contains(second, "download:") {
		t.Errorf("second sync downloaded again:\n%s", second)
	}
	for _, c := range r.sim.Calls()[before:] {
		if c.Operation == "GetObject" {
			t.Errorf("second sync called GetObject (status %d)", c.Status)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dst, "dir", "sub", "three.txt")); err != nil || string(got) != "content of dir/sub/three.txt" {
		t.Errorf("synced file = %q, %v", got, err)
	}
}
