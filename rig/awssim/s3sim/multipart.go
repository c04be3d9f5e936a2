package s3sim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// minPart is the smallest part S3 accepts, but for the last.
const minPart = 5 << 20

// maxParts is the most parts an upload may have.
const maxParts = 10000

// upload is a multipart upload in progress; its parts are files under
// <dataDir>/uploads/<id>/.
type upload struct {
	id, bucket, key string
	proto           object // what the finished object inherits
	parts           map[int]part
}

type part struct {
	etag string
	size int64
	md5  []byte
}

func noSuchUpload() *simapi.APIError {
	return simapi.Errorf(http.StatusNotFound, "NoSuchUpload",
		"The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")
}

func (s *Service) createMultipartUpload(w http.ResponseWriter, r *http.Request, t target) *simapi.APIError {
	if aerr := validKey(t.key); aerr != nil {
		return aerr
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return internalError(err)
	}
	u := &upload{
		id: hex.EncodeToString(idb), bucket: t.bucket, key: t.key, parts: map[int]part{},
		proto: object{
			ContentType:     contentType(r.Header),
			ContentEncoding: storedEncoding(r.Header.Get("Content-Encoding")),
			Metadata:        userMetadata(r.Header),
		},
	}
	if err := os.Mkdir(filepath.Join(s.uploadsDir(), u.id), 0o700); err != nil {
		return internalError(err)
	}
	s.mu.Lock()
	if s.buckets[t.bucket] == nil {
		s.mu.Unlock()
		os.Remove(filepath.Join(s.uploadsDir(), u.id))
		return noSuchBucket()
	}
	s.uploads[u.id] = u
	s.mu.Unlock()
	simapi.WriteXML(w, struct {
		XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ InitiateMultipartUploadResult"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		UploadID string   `xml:"UploadId"`
	}{Bucket: t.bucket, Key: t.key, UploadID: u.id})
	return nil
}

// uploadOfLocked finds the upload a request names; s.mu must be held.
func (s *Service) uploadOfLocked(r *http.Request, t target) (*upload, *simapi.APIError) {
	if s.buckets[t.bucket] == nil {
		return nil, noSuchBucket()
	}
	u := s.uploads[r.URL.Query().Get("uploadId")]
	if u == nil || u.bucket != t.bucket || u.key != t.key {
		return nil, noSuchUpload()
	}
	return u, nil
}

func (s *Service) uploadPart(w http.ResponseWriter, r *http.Request, t target) *simapi.APIError {
	n, err := strconv.Atoi(r.URL.Query().Get("partNumber"))
	if err != nil || n < 1 || n > maxParts {
		return invalidArgument("Part number must be an integer between 1 and %d, inclusive", maxParts)
	}
	s.mu.Lock()
	_, aerr := s.uploadOfLocked(r, t)
	s.mu.Unlock()
	if aerr != nil {
		return aerr
	}
	sp, _, aerr := s.receive(r)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, aerr := s.uploadOfLocked(r, t) // it may have completed meanwhile
	if aerr != nil {
		sp.discard()
		return aerr
	}
	if err := os.Rename(sp.path, filepath.Join(s.uploadsDir(), u.id, strconv.Itoa(n))); err != nil {
		sp.discard()
		return internalError(err)
	}
	p := part{etag: etagOf(sp.md5), size: sp.size, md5: sp.md5}
	u.parts[n] = p
	w.Header().Set("ETag", p.etag)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Service) completeMultipartUpload(w http.ResponseWriter, r *http.Request, t target) *simapi.APIError {
	var req struct {
		Parts []completedPart `xml:"Part"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return simapi.Errorf(http.StatusBadRequest, "IncompleteBody", "The request body terminated unexpectedly")
	}
	if err := xml.Unmarshal(body, &req); err != nil || len(req.Parts) == 0 {
		return malformedXML()
	}
	s.mu.Lock()
	u, aerr := s.uploadOfLocked(r, t)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	chosen, aerr := checkParts(u, req.Parts)
	if aerr != nil {
		s.mu.Unlock()
		return aerr
	}
	delete(s.uploads, u.id) // claimed: no other completion or part can race
	s.mu.Unlock()

	defer os.RemoveAll(filepath.Join(s.uploadsDir(), u.id))
	o, sp, err := s.assemble(u, chosen)
	if err != nil {
		return internalError(err)
	}
	if aerr := s.commit(u.bucket, o, sp); aerr != nil {
		return aerr
	}
	simapi.WriteXML(w, struct {
		XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CompleteMultipartUploadResult"`
		Location string   `xml:"Location"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		ETag     string   `xml:"ETag"`
	}{Location: "/" + u.bucket + "/" + u.key, Bucket: u.bucket, Key: u.key, ETag: o.ETag})
	return nil
}

type completedPart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
}

// checkParts validates a completion's part list as S3 does: order first,
// then that each part was uploaded with that ETag, then part sizes.
func checkParts(u *upload, parts []completedPart) ([]int, *simapi.APIError) {
	for i := 1; i < len(parts); i++ {
		if parts[i].PartNumber <= parts[i-1].PartNumber {
			return nil, simapi.Errorf(http.StatusBadRequest, "InvalidPartOrder",
				"The list of parts was not in ascending order. The parts list must be specified in order by part number.")
		}
	}
	chosen := make([]int, 0, len(parts))
	for _, p := range parts {
		have, ok := u.parts[p.PartNumber]
		if !ok || strings.Trim(p.ETag, `"`) != strings.Trim(have.etag, `"`) {
			return nil, simapi.Errorf(http.StatusBadRequest, "InvalidPart",
				"One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")
		}
		chosen = append(chosen, p.PartNumber)
	}
	for _, n := range chosen[:len(chosen)-1] {
		if u.parts[n].size < minPart {
			return nil, simapi.Errorf(http.StatusBadRequest, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
		}
	}
	return chosen, nil
}

// assemble concatenates the chosen parts into a spooled body.
func (s *Service) assemble(u *upload, chosen []int) (*object, *spooled, error) {
	readers := make([]io.Reader, 0, len(chosen))
	sums := make([][]byte, 0, len(chosen))
	sizes := make([]int64, 0, len(chosen))
	for _, n := range chosen {
		f, err := os.Open(filepath.Join(s.uploadsDir(), u.id, strconv.Itoa(n)))
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		readers = append(readers, f)
		sums = append(sums, u.parts[n].md5)
		sizes = append(sizes, u.parts[n].size)
	}
	sp, err := s.spool(io.MultiReader(readers...))
	if err != nil {
		return nil, nil, err
	}
	o := u.proto
	o.Key, o.Size, o.ETag, o.Parts = u.key, sp.size, multipartETag(sums), sizes
	o.LastModified = now()
	return &o, sp, nil
}

func (s *Service) abortMultipartUpload(w http.ResponseWriter, r *http.Request, t target) *simapi.APIError {
	s.mu.Lock()
	u, aerr := s.uploadOfLocked(r, t)
	if aerr == nil {
		delete(s.uploads, u.id)
	}
	s.mu.Unlock()
	if aerr != nil {
		return aerr
	}
	if err := os.RemoveAll(filepath.Join(s.uploadsDir(), u.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return internalError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
