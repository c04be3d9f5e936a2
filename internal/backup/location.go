package backup

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Location is where backups are kept (a store), or one archive in it.
type Location struct {
	// Bucket is the S3 bucket; "" for a local path.
	Bucket string
	// Dir is the local directory, absolute, or the S3 prefix: "" or
	// ending in "/".
	Dir string
	// Name is the archive's file name, or "" when the location is a store.
	Name string
}

const locationForms = "want an absolute directory (/var/backups/monagent), s3://bucket/prefix/, " +
	"or for one archive an absolute file path or s3://bucket/prefix/<name>.tar.gz.age"

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ParseLocation reads a store's location, an absolute directory or
// s3://bucket/prefix/, or one archive's, an absolute file path or
// s3://bucket/key. The name's form alone tells them apart, not what
// exists: a last element ending in ".age" names an archive, anything else
// (a trailing "/" always) a store. So restore --from takes either, the
// newest archive of a store being Latest's.
func ParseLocation(s string) (Location, error) {
	if rest, ok := strings.CutPrefix(s, "s3://"); ok {
		l, err := parseS3(rest)
		if err != nil {
			return Location{}, fmt.Errorf("location %q: %w; %s", s, err, locationForms)
		}
		return l, nil
	}
	switch {
	case s == "":
		return Location{}, fmt.Errorf("location is empty: %s", locationForms)
	case strings.Contains(s, "://"):
		return Location{}, fmt.Errorf("location %q: only s3:// URLs are supported; %s", s, locationForms)
	case !filepath.IsAbs(s):
		return Location{}, fmt.Errorf("location %q is a relative path; %s", s, locationForms)
	}
	clean := filepath.Clean(s)
	if !strings.HasSuffix(s, "/") && strings.HasSuffix(clean, ".age") {
		return Location{Dir: filepath.Dir(clean), Name: filepath.Base(clean)}, nil
	}
	return Location{Dir: clean}, nil
}

// parseS3 reads bucket/key or bucket/prefix/.
func parseS3(s string) (Location, error) {
	bucket, key, _ := strings.Cut(s, "/")
	switch {
	case bucket == "":
		return Location{}, errors.New("no bucket")
	case !bucketRE.MatchString(bucket):
		return Location{}, fmt.Errorf("%q is not a valid bucket name (3 to 63 lowercase letters, digits, dots and hyphens)", bucket)
	case key == "":
		return Location{Bucket: bucket}, nil
	}
	trimmed := strings.TrimSuffix(key, "/")
	if trimmed == "" || path.Clean(trimmed) != trimmed || strings.HasPrefix(trimmed, "/") || hasDotDot(trimmed) {
		return Location{}, fmt.Errorf("key %q is not a clean path (a leading or doubled slash, or a \".\" or \"..\" element)", key)
	}
	if !strings.HasSuffix(key, "/") && strings.HasSuffix(key, ".age") {
		dir, name := path.Split(key)
		return Location{Bucket: bucket, Dir: dir, Name: name}, nil
	}
	return Location{Bucket: bucket, Dir: trimmed + "/"}, nil
}

// IsArchive reports whether l names one archive rather than a store.
func (l Location) IsArchive() bool { return l.Name != "" }

func (l Location) String() string {
	if l.Bucket != "" {
		return "s3://" + l.Bucket + "/" + l.Dir + l.Name
	}
	if l.Name == "" {
		return l.Dir
	}
	return filepath.Join(l.Dir, l.Name)
}

// Store is the store l names, or the one holding the archive l names;
// client serves an S3 location.
func (l Location) Store(client S3API) (Store, error) {
	if l.Bucket == "" {
		return LocalStore{Dir: l.Dir}, nil
	}
	if client == nil {
		return nil, fmt.Errorf("%s: no S3 client", l)
	}
	return S3Store{Client: client, Bucket: l.Bucket, Prefix: l.Dir}, nil
}
