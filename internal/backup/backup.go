// Package backup builds, verifies and reads monagent's backup archives, and
// keeps them in a store with a retention count.
//
// An archive is a tar stream, compressed with gzip, encrypted with age
// (https://age-encryption.org) to one X25519 recipient. It replaces a
// tar czf | openssl enc -aes-256-cbc -k "$KEY" backup, whose key came from
// a passphrase by one round of MD5 and whose ciphertext was not
// authenticated. An operator opens an archive without monagent:
//
//	age -d -i key.txt monagent-backup-host-20261123T060000Z.tar.gz.age | tar -xzp --numeric-owner
//
// Inside, each Part is a top-level name ("prometheus", "config/stack",
// "secrets") holding a copy of a host file or directory: regular files,
// directories and symlinks (stored as symlinks), with numeric owners, modes
// and mtimes (to the second). Hard links are stored as separate files. The
// last tar entry is MANIFEST.json: the format version, the creation time,
// free-form metadata (host, monagent version, ...), and every entry's name,
// type, mode, owner, size, SHA-256 and symlink target.
//
// The API:
//
//	Pack(ctx, w, recipient, parts, meta) (Manifest, error)  // stream an archive to w
//	Unpack(ctx, r, identity, dir) (Manifest, error)         // verify and extract into an empty dir
//	NewIdentity() / ParseIdentity(s)                        // the X25519 key
//	ArchiveName(host, t) / ParseArchiveName(name)           // monagent-backup-<host>-<UTC time>.tar.gz.age
//	Store: LocalStore, S3Store; Prune(ctx, s, host, keep); Latest(ctx, s, host)
//	Save(ctx, s, name, ...) / Restore(ctx, s, name, ...)    // Pack into a store, Unpack from one
//	ParseLocation(s)                                        // an absolute path or s3://bucket/prefix/, for a store or one archive
//
// Pack streams: its memory does not grow with the archive's size, only with
// its number of entries (the manifest). Unpack checks everything it reads:
// age authenticates every 64 KiB chunk and the end of the stream (a byte
// changed anywhere, or a truncation, is an error), and the tar inside must
// match its manifest exactly. Age authenticates the data, not its author:
// whoever knows the recipient (the public key) can make an archive that
// decrypts, so Unpack also refuses what such an archive could use to write
// outside dir (absolute names, "..", entries under symlinks, duplicates,
// hard links, devices).
//
// Unpack writes as it reads, and age can only report a truncation at the end
// of the stream: on any error, dir holds garbage, partly extracted and not
// verified, and the caller must remove it. Only a nil error means dir holds
// the archive's whole, verified content.
package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Part is one thing to back up.
type Part struct {
	// Name is where the part goes inside the archive: a clean slash path
	// such as "prometheus" or "config/stack". Parts may not overlap.
	Name string
	// Path is a host file or directory, included recursively. A symlink
	// here is followed (a part names data, however the host lays it out);
	// symlinks below it are stored as symlinks.
	Path string
}

// FormatVersion is the manifest's version; Unpack reads only this one.
const FormatVersion = 1

// ManifestName is the name of the archive's last entry.
const ManifestName = "MANIFEST.json"

// Manifest describes an archive.
type Manifest struct {
	Version int               `json:"version"`
	Created time.Time         `json:"created"` // UTC
	Meta    map[string]string `json:"meta,omitempty"`
	Entries []Entry           `json:"entries"` // in archive order, the manifest itself excluded
}

// Entry types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Entry is one file, directory or symlink of an archive.
type Entry struct {
	Name   string `json:"name"` // slash path, without a trailing slash
	Type   string `json:"type"` // TypeFile, TypeDir or TypeSymlink
	Mode   Perm   `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size"`             // files only
	SHA256 string `json:"sha256,omitempty"` // files only, hex
	Link   string `json:"link,omitempty"`   // symlinks only: the target, as stored
}

// Perm is a Unix mode's permission bits with setuid, setgid and sticky
// (07777), written in octal in the manifest for the operator who reads it.
type Perm uint32

// permFromFS is m's Unix permission bits.
func permFromFS(m fs.FileMode) Perm {
	p := Perm(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// FileMode is p as an fs.FileMode, for os.Chmod.
func (p Perm) FileMode() fs.FileMode {
	m := fs.FileMode(p & 0o777)
	if p&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if p&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if p&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func (p Perm) String() string { return fmt.Sprintf("%04o", uint32(p)) }

// MarshalJSON writes p as an octal string such as "0755".
func (p Perm) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// UnmarshalJSON reads an octal string.
func (p *Perm) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("mode: want an octal string such as \"0755\": %w", err)
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("mode %q: want octal permission bits, at most 07777", s)
	}
	*p = Perm(v)
	return nil
}

// Archive names: the time is UTC to the second, so that the names of one
// host sort by time.
const (
	namePrefix = "monagent-backup-"
	nameSuffix = ".tar.gz.age"
	timeLayout = "20060102T150405Z"
)

var (
	archiveNameRE = regexp.MustCompile(`^monagent-backup-([A-Za-z0-9.-]+)-([0-9]{8}T[0-9]{6}Z)\.tar\.gz\.age$`)
	hostUnsafeRE  = regexp.MustCompile(`[^A-Za-z0-9.-]+`)
)

// ArchiveName is the name of host's archive made at t, such as
// monagent-backup-ip-10-0-1-10-20261123T060000Z.tar.gz.age. Characters of
// host outside [A-Za-z0-9.-] become "-"; an empty host becomes "unknown".
func ArchiveName(host string, t time.Time) string {
	return namePrefix + nameHost(host) + "-" + t.UTC().Format(timeLayout) + nameSuffix
}

// nameHost is host as archive names carry it.
func nameHost(host string) string {
	h := strings.Trim(hostUnsafeRE.ReplaceAllString(host, "-"), "-")
	if h == "" {
		return "unknown"
	}
	return h
}

// ParseArchiveName returns the host and time an archive name holds; ok is
// false for any other name (a temporary file, an operator's notes).
func ParseArchiveName(name string) (host string, t time.Time, ok bool) {
	m := archiveNameRE.FindStringSubmatch(name)
	if m == nil {
		return "", time.Time{}, false
	}
	t, err := time.Parse(timeLayout, m[2])
	if err != nil {
		return "", time.Time{}, false
	}
	return m[1], t, true
}

// checkRel refuses a name that is not a clean relative slash path: the
// names of parts and of a tar's entries, which must stay inside the
// archive's tree and the directory it is extracted into.
func checkRel(name string) error {
	switch {
	case name == "" || name == ".":
		return errors.New("empty name")
	case strings.HasPrefix(name, "/"):
		return errors.New("absolute name")
	case path.Clean(name) != name || hasDotDot(name):
		return errors.New(`not a clean relative path ("..", ".", doubled or trailing slashes)`)
	case strings.ContainsRune(name, 0):
		return errors.New("NUL byte in the name")
	case name == ManifestName:
		return errors.New("the manifest's name")
	}
	return nil
}

func hasDotDot(name string) bool {
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}
