package s3sim

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

type listEntry struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
	Owner        *owner `xml:"Owner,omitempty"`
}

type commonPrefix struct {
	Prefix string `xml:"Prefix"`
}

// listResult is ListBucketResult for ListObjectsV2 and ListObjects.
type listResult struct {
	XMLName               xml.Name       `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Marker                *string        `xml:"Marker"`
	NextMarker            string         `xml:"NextMarker,omitempty"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	EncodingType          string         `xml:"EncodingType,omitempty"`
	KeyCount              *int           `xml:"KeyCount"`
	IsTruncated           bool           `xml:"IsTruncated"`
	ContinuationToken     string         `xml:"ContinuationToken,omitempty"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	Contents              []listEntry    `xml:"Contents"`
	CommonPrefixes        []commonPrefix `xml:"CommonPrefixes"`
}

// listQuery is what a listing asks for.
type listQuery struct {
	prefix, delimiter string
	startAfter        string // keys <= startAfter are skipped
	after             string // entries (keys or common prefixes) <= after are skipped
	maxKeys           int
}

func invalidArgument(format string, args ...any) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "InvalidArgument", format, args...)
}

// listObjects answers ListObjectsV2, or with v2 false the original
// ListObjects with its markers.
func (s *Service) listObjects(w http.ResponseWriter, r *http.Request, bucketName string, v2 bool) *simapi.APIError {
	q := r.URL.Query()
	lq := listQuery{prefix: q.Get("prefix"), delimiter: q.Get("delimiter"), maxKeys: 1000}
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return invalidArgument("Provided max-keys not an integer or within integer range")
		}
		lq.maxKeys = min(n, 1000)
	}
	enc := q.Get("encoding-type")
	if enc != "" && enc != "url" {
		return invalidArgument("Invalid Encoding Method specified in Request")
	}
	out := listResult{Name: bucketName, MaxKeys: lq.maxKeys, EncodingType: enc}
	if v2 {
		lq.startAfter = q.Get("start-after")
		if tok := q.Get("continuation-token"); tok != "" {
			after, ok := simapi.DecodeToken(tok)
			if !ok {
				return invalidArgument("The continuation token provided is incorrect")
			}
			lq.after = after
			out.ContinuationToken = tok
		}
	} else {
		lq.after = q.Get("marker")
		out.Marker = &lq.after
	}
	owner := s.owner()
	fetchOwner := !v2 || q.Get("fetch-owner") == "true"

	s.mu.Lock()
	b := s.buckets[bucketName]
	if b == nil {
		s.mu.Unlock()
		return noSuchBucket()
	}
	entries, prefixes, truncated, last := b.list(lq)
	s.mu.Unlock()

	esc := func(v string) string { return v }
	if enc == "url" {
		esc = urlEncode
	}
	out.Prefix, out.Delimiter, out.IsTruncated = esc(lq.prefix), esc(lq.delimiter), truncated
	for _, o := range entries {
		e := listEntry{Key: esc(o.Key), LastModified: isoTime(o.LastModified), ETag: o.ETag, Size: o.Size, StorageClass: "STANDARD"}
		if fetchOwner {
			e.Owner = &owner
		}
		out.Contents = append(out.Contents, e)
	}
	for _, p := range prefixes {
		out.CommonPrefixes = append(out.CommonPrefixes, commonPrefix{esc(p)})
	}
	switch {
	case v2:
		count := len(entries) + len(prefixes)
		out.KeyCount = &count
		out.StartAfter = esc(lq.startAfter)
		if truncated && last != "" {
			out.NextContinuationToken = simapi.EncodeToken(last)
		}
	case truncated && lq.delimiter != "":
		// Without a delimiter clients continue from the last key themselves.
		out.NextMarker = esc(last)
	}
	simapi.WriteXML(w, out)
	return nil
}

// list walks b's keys in order and returns at most q.maxKeys entries,
// objects and common prefixes together, whether more remain, and the last
// entry returned. s.mu must be held.
func (b *bucket) list(q listQuery) (objects []*object, prefixes []string, truncated bool, last string) {
	keys := make([]string, 0, len(b.objects))
	for k := range b.objects {
		if strings.HasPrefix(k, q.prefix) && (q.startAfter == "" || k > q.startAfter) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	n := 0
	for _, k := range keys {
		entry, isPrefix := k, false
		if q.delimiter != "" {
			if i := strings.Index(k[len(q.prefix):], q.delimiter); i >= 0 {
				entry, isPrefix = k[:len(q.prefix)+i+len(q.delimiter)], true
			}
		}
		if q.after != "" && entry <= q.after {
			continue
		}
		if isPrefix && entry == last {
			continue // rolled up into the prefix already returned
		}
		if n == q.maxKeys {
			return objects, prefixes, true, last
		}
		n++
		last = entry
		if isPrefix {
			prefixes = append(prefixes, entry)
		} else {
			objects = append(objects, b.objects[k])
		}
	}
	return objects, prefixes, false, last
}

// urlEncode encodes a listing value as S3 does for encoding-type=url:
// form encoding, slashes kept.
func urlEncode(v string) string {
	return strings.ReplaceAll(url.QueryEscape(v), "%2F", "/")
}
