package s3sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// validBucketName applies S3's general purpose bucket naming rules.
func validBucketName(name string) *simapi.APIError {
	bad := simapi.Errorf(http.StatusBadRequest, "InvalidBucketName", "The specified bucket is not valid.")
	if len(name) < 3 || len(name) > 63 {
		return bad
	}
	for i, c := range []byte(name) {
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && c != '.' && c != '-' || (i == 0 || i == len(name)-1) && !alnum {
			return bad
		}
	}
	switch {
	case strings.Contains(name, ".."), strings.Contains(name, ".-"), strings.Contains(name, "-."),
		strings.HasPrefix(name, "xn--"), strings.HasSuffix(name, "-s3alias"), net.ParseIP(name) != nil:
		return bad
	}
	return nil
}

func (s *Service) hasBucket(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buckets[name] != nil
}

func (s *Service) createBucket(w http.ResponseWriter, r *http.Request, name string) *simapi.APIError {
	if aerr := validBucketName(name); aerr != nil {
		return aerr
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return simapi.Errorf(http.StatusBadRequest, "IncompleteBody", "The request body terminated unexpectedly")
	}
	if strings.TrimSpace(string(body)) != "" {
		var cfg struct{ LocationConstraint string }
		if err := xml.Unmarshal(body, &cfg); err != nil {
			return malformedXML()
		}
		if cfg.LocationConstraint != "" && s.id.Region != "" && cfg.LocationConstraint != s.id.Region {
			return simapi.Errorf(http.StatusBadRequest, "IllegalLocationConstraintException",
				"The %s location constraint is incompatible for the region specific endpoint this request was sent to.", cfg.LocationConstraint)
		}
	}
	if aerr := s.addBucket(name); aerr != nil {
		return aerr
	}
	w.Header().Set("Location", "/"+name)
	w.WriteHeader(http.StatusOK)
	return nil
}

func malformedXML() *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "MalformedXML",
		"The XML you provided was not well-formed or did not validate against our published schema")
}

func (s *Service) addBucket(name string) *simapi.APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buckets[name] != nil {
		return simapi.Errorf(http.StatusConflict, "BucketAlreadyOwnedByYou",
			"Your previous request to create the named bucket succeeded and you already own it.")
	}
	b := &bucket{Name: name, Created: now(), objects: map[string]*object{}}
	dir := s.bucketDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return internalError(err)
	}
	if err := writeJSON(filepath.Join(dir, bucketMeta), b); err != nil {
		return internalError(err)
	}
	s.buckets[name] = b
	return nil
}

func (s *Service) headBucket(w http.ResponseWriter, name string) *simapi.APIError {
	if !s.hasBucket(name) {
		return noSuchBucket()
	}
	w.Header().Set("X-Amz-Bucket-Region", s.id.Region)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Service) deleteBucket(w http.ResponseWriter, name string) *simapi.APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	switch {
	case b == nil:
		return noSuchBucket()
	case len(b.objects) > 0:
		return simapi.Errorf(http.StatusConflict, "BucketNotEmpty", "The bucket you tried to delete is not empty")
	}
	if err := os.RemoveAll(s.bucketDir(name)); err != nil {
		return internalError(err)
	}
	delete(s.buckets, name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) getBucketLocation(w http.ResponseWriter, name string) *simapi.APIError {
	if !s.hasBucket(name) {
		return noSuchBucket()
	}
	simapi.WriteXML(w, struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ LocationConstraint"`
		Region  string   `xml:",chardata"`
	}{Region: s.id.Region})
	return nil
}

type owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

func (s *Service) owner() owner {
	// A canonical user ID is 64 hex digits; derive a stable one.
	sum := sha256.Sum256([]byte(s.id.AccountID))
	return owner{ID: hex.EncodeToString(sum[:]), DisplayName: "awssim"}
}

func (s *Service) listBuckets(w http.ResponseWriter) *simapi.APIError {
	type entry struct {
		Name         string `xml:"Name"`
		CreationDate string `xml:"CreationDate"`
		BucketRegion string `xml:"BucketRegion,omitempty"`
	}
	out := struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListAllMyBucketsResult"`
		Owner   owner    `xml:"Owner"`
		Buckets []entry  `xml:"Buckets>Bucket"`
	}{Owner: s.owner()}
	s.mu.Lock()
	for _, b := range s.buckets {
		out.Buckets = append(out.Buckets, entry{b.Name, isoTime(b.Created), s.id.Region})
	}
	s.mu.Unlock()
	sort.Slice(out.Buckets, func(i, j int) bool { return out.Buckets[i].Name < out.Buckets[j].Name })
	simapi.WriteXML(w, out)
	return nil
}

// isoTime formats t as S3 does in XML bodies.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
