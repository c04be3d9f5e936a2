package s3sim

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// maxKey is S3's limit on a key, in bytes.
const maxKey = 1024

func validKey(key string) *simapi.APIError {
	if len(key) > maxKey {
		return simapi.Errorf(http.StatusBadRequest, "KeyTooLongError", "Your key is too long")
	}
	return nil
}

// checksumHeaders are the full-object checksums a client may send.
func checksumHeaders() []string {
	return []string{"x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme", "x-amz-checksum-sha1", "x-amz-checksum-sha256"}
}

// readError marks a failure to read the request, as opposed to storing it.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

type tagReader struct{ r io.Reader }

func (t tagReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// receive spools a request body, decoding aws-chunked framing so that what
// is stored is exactly the user's bytes, and checks it against the length
// and digest the client declared. It returns the checksums sent in headers
// or trailers.
func (s *Service) receive(r *http.Request) (*spooled, map[string]string, *simapi.APIError) {
	var src io.Reader = r.Body
	var chunked *chunkedReader
	if isAWSChunked(r) {
		chunked = newChunkedReader(r.Body)
		src = chunked
	}
	sp, err := s.spool(tagReader{src})
	switch {
	case errors.Is(err, errChunk):
		return nil, nil, simapi.Errorf(http.StatusBadRequest, "InvalidRequest", "%v", err)
	case errors.As(err, new(readError)):
		return nil, nil, simapi.Errorf(http.StatusBadRequest, "IncompleteBody", "The request body terminated unexpectedly")
	case err != nil:
		return nil, nil, internalError(err)
	}
	if aerr := checkBody(r, sp); aerr != nil {
		sp.discard()
		return nil, nil, aerr
	}
	sums := map[string]string{}
	for _, h := range checksumHeaders() {
		if v := r.Header.Get(h); v != "" {
			sums[h] = v
		}
		if chunked != nil && chunked.trailers[h] != "" {
			sums[h] = chunked.trailers[h]
		}
	}
	return sp, sums, nil
}

// checkBody compares a received body with the declared length and MD5.
func checkBody(r *http.Request, sp *spooled) *simapi.APIError {
	if v := r.Header.Get("X-Amz-Decoded-Content-Length"); v != "" && isAWSChunked(r) {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n != sp.size {
			return simapi.Errorf(http.StatusBadRequest, "IncompleteBody",
				"You did not provide the number of bytes specified by the Content-Length HTTP header")
		}
	}
	if v := r.Header.Get("Content-MD5"); v != "" {
		want, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(want) != md5.Size {
			return simapi.Errorf(http.StatusBadRequest, "InvalidDigest", "The Content-MD5 you specified was invalid.")
		}
		if !bytes.Equal(want, sp.md5) {
			return simapi.Errorf(http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.")
		}
	}
	return nil
}

// userMetadata collects x-amz-meta-* headers, names lower-cased.
func userMetadata(h http.Header) map[string]string {
	var m map[string]string
	for name, vals := range h {
		if rest, ok := strings.CutPrefix(strings.ToLower(name), "x-amz-meta-"); ok && rest != "" {
			if m == nil {
				m = map[string]string{}
			}
			m[rest] = strings.Join(vals, ",")
		}
	}
	return m
}

func contentType(h http.Header) string {
	if ct := h.Get("Content-Type"); ct != "" {
		return ct
	}
	return "binary/octet-stream" // what S3 stores when the client names none
}

func (s *Service) putObject(w http.ResponseWriter, r *http.Request, t target) *simapi.APIError {
	if aerr := validKey(t.key); aerr != nil {
		return aerr
	}
	if !s.hasBucket(t.bucket) {
		return noSuchBucket() // before reading a body that would be wasted
	}
	sp, sums, aerr := s.receive(r)
	if aerr != nil {
		return aerr
	}
	o := &object{
		Key:             t.key,
		Size:            sp.size,
		ETag:            etagOf(sp.md5),
		ContentType:     contentType(r.Header),
		ContentEncoding: storedEncoding(r.Header.Get("Content-Encoding")),
		LastModified:    now(),
		Metadata:        userMetadata(r.Header),
		Checksums:       sums,
	}
	if aerr := s.commit(t.bucket, o, sp); aerr != nil {
		return aerr
	}
	w.Header().Set("ETag", o.ETag)
	for h, v := range sums {
		w.Header().Set(h, v)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// commit stores a spooled body as o, or discards it.
func (s *Service) commit(bucketName string, o *object, sp *spooled) *simapi.APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucketName]
	if b == nil {
		sp.discard()
		return noSuchBucket()
	}
	if err := s.commitLocked(b, o, sp); err != nil {
		sp.discard()
		return internalError(err)
	}
	return nil
}

// open returns a copy of key's metadata and its bytes, opened under the
// lock so that a concurrent overwrite cannot pair old metadata with new
// bytes.
func (s *Service) open(t target) (*object, *os.File, *simapi.APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[t.bucket]
	if b == nil {
		return nil, nil, noSuchBucket()
	}
	o := b.objects[t.key]
	if o == nil {
		return nil, nil, noSuchKey()
	}
	data, _ := objectPaths(s.bucketDir(b.Name), o.Key)
	f, err := os.Open(data)
	if err != nil {
		return nil, nil, internalError(err)
	}
	c := *o
	return &c, f, nil
}

// getObject answers GetObject and HeadObject: the whole object, one Range
// or one part (partNumber).
func (s *Service) getObject(w http.ResponseWriter, r *http.Request, t target) *simapi.APIError {
	part, aerr := partNumberOf(r)
	if aerr != nil {
		return aerr
	}
	o, f, aerr := s.open(t)
	if aerr != nil {
		return aerr
	}
	defer f.Close()
	h := w.Header()
	h.Set("ETag", o.ETag)
	h.Set("Last-Modified", o.LastModified.UTC().Format(http.TimeFormat))
	if status, aerr := preconditions(r, o); aerr != nil || status != 0 {
		if aerr == nil {
			w.WriteHeader(status)
		}
		return aerr
	}
	sp, aerr := selectSpan(r, o, part)
	if aerr != nil {
		return aerr
	}
	writeObjectHeaders(h, o)
	h.Set("Content-Length", strconv.FormatInt(sp.n, 10))
	if sp.partsCount > 0 {
		h.Set("x-amz-mp-parts-count", strconv.Itoa(sp.partsCount))
	}
	status := http.StatusOK
	if sp.partial {
		if sp.n > 0 {
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", sp.start, sp.start+sp.n-1, o.Size))
		}
		status = http.StatusPartialContent
	} else if strings.EqualFold(r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		for k, v := range o.Checksums {
			h.Set(k, v)
		}
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	_, _ = io.Copy(w, io.NewSectionReader(f, sp.start, sp.n)) // the client left; nothing to tell it
	return nil
}

// writeObjectHeaders sets the headers every read of o carries.
func writeObjectHeaders(h http.Header, o *object) {
	h.Set("Content-Type", o.ContentType)
	h.Set("Accept-Ranges", "bytes")
	if o.ContentEncoding != "" {
		h.Set("Content-Encoding", o.ContentEncoding)
	}
	for k, v := range o.Metadata {
		h.Set("x-amz-meta-"+k, v)
	}
}

// span is the bytes of an object a read answers with.
type span struct {
	start, n   int64
	partial    bool // 206, with Content-Range
	partsCount int  // x-amz-mp-parts-count; 0 leaves it out
}

// selectSpan picks what a read returns: part number part (if not 0), else
// the Range header's bytes, else the whole object.
func selectSpan(r *http.Request, o *object, part int) (span, *simapi.APIError) {
	if part > 0 {
		return partSpan(o, part)
	}
	start, n, partial, aerr := parseRange(r.Header.Get("Range"), o.Size)
	return span{start: start, n: n, partial: partial}, aerr
}

// partNumberOf reads the partNumber query parameter, 0 if absent, checking
// it as S3 does before it looks at the object: with a Range header it is
// refused whatever its value.
func partNumberOf(r *http.Request) (int, *simapi.APIError) {
	q := r.URL.Query()
	if !q.Has("partNumber") {
		return 0, nil
	}
	if r.Header.Get("Range") != "" {
		return 0, simapi.Errorf(http.StatusBadRequest, "InvalidRequest", "Cannot specify both Range header and partNumber query parameter")
	}
	n, err := strconv.Atoi(q.Get("partNumber"))
	if err != nil || n < 1 || n > maxParts {
		return 0, invalidArgument("Part number must be an integer between 1 and %d, inclusive", maxParts)
	}
	return n, nil
}

// partSpan is part n of o. An object stored in one piece has one part, the
// whole object; S3 then answers 206 without a parts count.
func partSpan(o *object, n int) (span, *simapi.APIError) {
	sizes := o.Parts
	if sizes == nil {
		sizes = []int64{o.Size}
	}
	if n > len(sizes) {
		return span{}, simapi.Errorf(http.StatusRequestedRangeNotSatisfiable, "InvalidPartNumber", "The requested partnumber is not satisfiable")
	}
	var start int64
	for _, size := range sizes[:n-1] {
		start += size
	}
	return span{start: start, n: sizes[n-1], partial: true, partsCount: len(o.Parts)}, nil
}

// preconditions applies If-Match and If-None-Match: a status to answer
// with instead of the object, or an error.
func preconditions(r *http.Request, o *object) (int, *simapi.APIError) {
	match := func(list string) bool {
		for _, t := range strings.Split(list, ",") {
			if t = strings.TrimSpace(t); t == "*" || t == o.ETag || `"`+t+`"` == o.ETag {
				return true
			}
		}
		return false
	}
	if v := r.Header.Get("If-Match"); v != "" && !match(v) {
		return 0, simapi.Errorf(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
	}
	if v := r.Header.Get("If-None-Match"); v != "" && match(v) {
		return http.StatusNotModified, nil
	}
	return 0, nil
}

// parseRange reads a single "bytes=" range as S3 does: a malformed or
// multiple range is ignored (the whole object), one that starts past the
// end is InvalidRange.
func parseRange(spec string, size int64) (start, n int64, partial bool, aerr *simapi.APIError) {
	whole := func() (int64, int64, bool, *simapi.APIError) { return 0, size, false, nil }
	rng, ok := strings.CutPrefix(strings.TrimSpace(spec), "bytes=")
	if !ok || strings.Contains(rng, ",") {
		return whole()
	}
	first, last, ok := strings.Cut(strings.TrimSpace(rng), "-")
	if !ok {
		return whole()
	}
	invalid := simapi.Errorf(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable")
	if first == "" { // suffix: the last N bytes
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return whole()
		}
		if k == 0 || size == 0 {
			return 0, 0, false, invalid
		}
		k = min(k, size)
		return size - k, k, true, nil
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return whole()
	}
	end := size - 1
	if last != "" {
		b, err := strconv.ParseInt(last, 10, 64)
		if err != nil || b < a {
			return whole()
		}
		end = min(b, size-1)
	}
	if a >= size {
		return 0, 0, false, invalid
	}
	return a, end - a + 1, true, nil
}

func (s *Service) deleteObject(w http.ResponseWriter, t target) *simapi.APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[t.bucket]
	if b == nil {
		return noSuchBucket()
	}
	if b.objects[t.key] != nil {
		if err := s.removeLocked(b, t.key); err != nil {
			return internalError(err)
		}
	}
	w.WriteHeader(http.StatusNoContent) // also when absent, as S3 does
	return nil
}
