// Package s3sim simulates S3 for awssim: buckets and objects over the REST
// XML protocol, path-style and virtual-hosted, with the aws-chunked uploads
// the SDK sends and the multipart uploads the CLI makes. Objects live as
// files under a data directory.
package s3sim

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

const xmlns = "http://s3.amazonaws.com/doc/2006-03-01/"

// Service is the simulated S3. It is safe for concurrent use.
type Service struct {
	id   simapi.Identity
	root string

	mu      sync.Mutex
	buckets map[string]*bucket
	uploads map[string]*upload
}

// New returns an S3 that keeps its buckets under dataDir/buckets, loading
// those a previous run left there. dataDir must be the service's own: New
// empties dataDir/tmp and dataDir/uploads, as unfinished multipart uploads
// do not survive a restart.
func New(id simapi.Identity, dataDir string) (*Service, error) {
	if dataDir == "" {
		return nil, errors.New("s3sim: empty data directory")
	}
	s := &Service{id: id, root: dataDir, buckets: map[string]*bucket{}, uploads: map[string]*upload{}}
	for _, dir := range []string{s.tmpDir(), s.uploadsDir()} {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("s3sim: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("s3sim: %w", err)
		}
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("s3sim: %w", err)
	}
	return s, nil
}

// Name is S3's signing name.
func (s *Service) Name() string { return "s3" }

// Close releases nothing: every object is already on disk.
func (s *Service) Close() error { return nil }

// WriteError writes err in S3's REST XML shape.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err *simapi.APIError) {
	simapi.WriteS3Error(w, r, err)
}

// target is what a request addresses.
type target struct {
	bucket, key string
}

// targetOf reads bucket and key from a virtual-hosted Host
// (bucket.localhost:PORT, bucket.127.0.0.1:PORT) or else from the path.
func targetOf(r *http.Request) target {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if b := virtualBucket(r); b != "" {
		return target{bucket: b, key: path}
	}
	b, k, _ := strings.Cut(path, "/")
	return target{bucket: b, key: k}
}

// virtualBucket returns the bucket of a Host that has one more leading
// label than the server's own name (localhost or the address it was
// reached on); an IP literal or any other name means path-style.
func virtualBucket(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if net.ParseIP(host) != nil {
		return ""
	}
	bases := []string{"localhost"}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if h, _, err := net.SplitHostPort(a.String()); err == nil {
			bases = append(bases, h)
		}
	}
	for _, base := range bases {
		if b, ok := strings.CutSuffix(host, "."+base); ok && b != "" {
			return b
		}
	}
	return ""
}

// hasUnsupported reports a subresource of an operation awssim does not
// simulate.
func hasUnsupported(q url.Values) bool {
	for _, sub := range [...]string{
		"accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption", "intelligent-tiering",
		"inventory", "legal-hold", "lifecycle", "logging", "metrics", "notification", "object-lock",
		"ownershipControls", "policy", "policyStatus", "publicAccessBlock", "replication", "requestPayment",
		"restore", "retention", "select", "tagging", "torrent", "versioning", "versions", "website",
	} {
		if q.Has(sub) {
			return true
		}
	}
	return false
}

func notImplemented() *simapi.APIError {
	return simapi.Errorf(http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented")
}

func methodNotAllowed() *simapi.APIError {
	return simapi.Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
}

// Operation names the S3 operation from method, target and subresources.
func (s *Service) Operation(r *http.Request) (string, *simapi.APIError) {
	q := r.URL.Query()
	if hasUnsupported(q) {
		return "", notImplemented()
	}
	t := targetOf(r)
	switch {
	case t.bucket == "":
		if r.Method == http.MethodGet {
			return "ListBuckets", nil
		}
		return "", methodNotAllowed()
	case t.key == "":
		return bucketOperation(r.Method, q)
	}
	return objectOperation(r, q)
}

func bucketOperation(method string, q url.Values) (string, *simapi.APIError) {
	switch method {
	case http.MethodPut:
		return "CreateBucket", nil
	case http.MethodHead:
		return "HeadBucket", nil
	case http.MethodDelete:
		return "DeleteBucket", nil
	case http.MethodGet:
		switch {
		case q.Has("location"):
			return "GetBucketLocation", nil
		case q.Has("uploads"):
			return "", notImplemented()
		case q.Get("list-type") == "2":
			return "ListObjectsV2", nil
		}
		return "ListObjects", nil
	case http.MethodPost:
		return "", notImplemented()
	}
	return "", methodNotAllowed()
}

func objectOperation(r *http.Request, q url.Values) (string, *simapi.APIError) {
	switch r.Method {
	case http.MethodPut:
		switch {
		case r.Header.Get("X-Amz-Copy-Source") != "":
			return "", notImplemented()
		case q.Has("uploadId"):
			return "UploadPart", nil
		}
		return "PutObject", nil
	case http.MethodGet:
		if q.Has("uploadId") {
			return "", notImplemented() // ListParts
		}
		return "GetObject", nil
	case http.MethodHead:
		return "HeadObject", nil
	case http.MethodDelete:
		if q.Has("uploadId") {
			return "AbortMultipartUpload", nil
		}
		return "DeleteObject", nil
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return "CreateMultipartUpload", nil
		case q.Has("uploadId"):
			return "CompleteMultipartUpload", nil
		}
		return "", notImplemented()
	}
	return "", methodNotAllowed()
}

// Serve answers op.
func (s *Service) Serve(w http.ResponseWriter, r *http.Request, op string) {
	t := targetOf(r)
	var aerr *simapi.APIError
	switch op {
	case "ListBuckets":
		aerr = s.listBuckets(w)
	case "CreateBucket":
		aerr = s.createBucket(w, r, t.bucket)
	case "HeadBucket":
		aerr = s.headBucket(w, t.bucket)
	case "DeleteBucket":
		aerr = s.deleteBucket(w, t.bucket)
	case "GetBucketLocation":
		aerr = s.getBucketLocation(w, t.bucket)
	case "ListObjectsV2":
		aerr = s.listObjects(w, r, t.bucket, true)
	case "ListObjects":
		aerr = s.listObjects(w, r, t.bucket, false)
	case "PutObject":
		aerr = s.putObject(w, r, t)
	case "GetObject", "HeadObject":
		aerr = s.getObject(w, r, t)
	case "DeleteObject":
		aerr = s.deleteObject(w, t)
	case "CreateMultipartUpload":
		aerr = s.createMultipartUpload(w, r, t)
	case "UploadPart":
		aerr = s.uploadPart(w, r, t)
	case "CompleteMultipartUpload":
		aerr = s.completeMultipartUpload(w, r, t)
	case "AbortMultipartUpload":
		aerr = s.abortMultipartUpload(w, r, t)
	default:
		aerr = notImplemented()
	}
	if aerr != nil {
		s.WriteError(w, r, aerr)
	}
}

func noSuchBucket() *simapi.APIError {
	return simapi.Errorf(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
}

func noSuchKey() *simapi.APIError {
	return simapi.Errorf(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
}

func internalError(err error) *simapi.APIError {
	return simapi.Errorf(http.StatusInternalServerError, "InternalError", "awssim: %v", err)
}

func (s *Service) bucketsDir() string { return filepath.Join(s.root, "buckets") }
func (s *Service) tmpDir() string     { return filepath.Join(s.root, "tmp") }
func (s *Service) uploadsDir() string { return filepath.Join(s.root, "uploads") }
