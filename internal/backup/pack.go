package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
)

// copyBufSize is the one buffer a Pack or an Unpack copies files through.
const copyBufSize = 256 << 10

// Pack writes an archive of parts to w, encrypted to r, and returns its
// manifest, which meta is copied into. It streams: nothing is buffered but
// a file's chunk at a time, and the manifest's entries.
//
// The caller keeps the files still (stops their writers, or packs a
// snapshot): a file that shrinks while Pack reads it is an error; one that
// grows is stored with the size it had when Pack opened it. A cancelled ctx
// stops Pack within one read; on any error what w received is not an
// archive and must be discarded.
func Pack(ctx context.Context, w io.Writer, r age.Recipient, parts []Part, meta map[string]string) (Manifest, error) {
	if err := checkParts(parts); err != nil {
		return Manifest{}, fmt.Errorf("pack: %w", err)
	}
	if r == nil {
		return Manifest{}, errors.New("pack: no recipient to encrypt to")
	}
	aw, err := age.Encrypt(w, r)
	if err != nil {
		return Manifest{}, fmt.Errorf("pack: encrypt: %w", err)
	}
	zw, err := gzip.NewWriterLevel(aw, gzipLevel)
	if err != nil {
		return Manifest{}, fmt.Errorf("pack: %w", err)
	}
	p := &packer{
		ctx:  ctx,
		tw:   tar.NewWriter(zw),
		buf:  make([]byte, copyBufSize),
		dirs: map[string]bool{},
		uid:  os.Getuid(),
		gid:  os.Getgid(),
		m:    Manifest{Version: FormatVersion, Created: time.Now().UTC().Round(0), Meta: maps.Clone(meta)},
	}
	for _, part := range parts {
		if err := p.part(part); err != nil {
			return Manifest{}, fmt.Errorf("pack: part %s: %w", part.Name, err)
		}
	}
	if err := p.manifest(); err != nil {
		return Manifest{}, fmt.Errorf("pack: %w", err)
	}
	// Each Close flushes into the next layer: tar's trailer, gzip's, then
	// age's last chunk, which marks the end of the stream.
	for _, c := range []io.Closer{p.tw, zw, aw} {
		if err := c.Close(); err != nil {
			return Manifest{}, fmt.Errorf("pack: finish the archive: %w", err)
		}
	}
	return p.m, nil
}

// gzipLevel trades size for time: Prometheus's chunks are compressed
// already, and the host's two cores also run the stack. On incompressible
// data BestSpeed packs about 350 MB/s, the default level about 65.
const gzipLevel = gzip.BestSpeed

// checkParts refuses bad names, and parts that overlap: one part inside
// another would be stored twice, and restored over itself.
func checkParts(parts []Part) error {
	if len(parts) == 0 {
		return fmt.Errorf("nothing to back up: no parts")
	}
	for i, p := range parts {
		if err := checkRel(p.Name); err != nil {
			return fmt.Errorf("part name %q: %w", p.Name, err)
		}
		if p.Path == "" {
			return fmt.Errorf("part %s: empty path", p.Name)
		}
		for _, q := range parts[:i] {
			if q.Name == p.Name || strings.HasPrefix(p.Name, q.Name+"/") || strings.HasPrefix(q.Name, p.Name+"/") {
				return fmt.Errorf("parts %s and %s overlap: give each a name of its own", q.Name, p.Name)
			}
		}
	}
	return nil
}

// packer holds one Pack's state.
type packer struct {
	ctx      context.Context
	tw       *tar.Writer
	buf      []byte
	dirs     map[string]bool // directory entries written
	uid, gid int
	m        Manifest
}

// part writes one part: the directories above its name, then its tree.
func (p *packer) part(part Part) error {
	root, err := filepath.EvalSymlinks(part.Path)
	if err != nil {
		return err
	}
	if err := p.parents(part.Name); err != nil {
		return err
	}
	return filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := p.ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, file)
		if err != nil {
			return err
		}
		name := part.Name
		if rel != "." {
			name += "/" + filepath.ToSlash(rel)
		}
		return p.add(name, file, d)
	})
}

// parents writes a directory entry for each parent of a part's name not
// written yet ("config" for "config/stack"), so that every entry of an
// archive comes after its directory's: Unpack relies on it.
func (p *packer) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." || p.dirs[dir] {
		return nil
	}
	if err := p.parents(dir); err != nil {
		return err
	}
	e := Entry{Name: dir, Type: TypeDir, Mode: 0o700, UID: p.uid, GID: p.gid}
	return p.write(e, p.m.Created.Truncate(time.Second))
}

// add writes one file, directory or symlink found by the walk.
func (p *packer) add(name, file string, d fs.DirEntry) error {
	switch t := d.Type(); {
	case t.IsRegular():
		return p.file(name, file)
	case t.IsDir():
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e, mtime := entryOf(name, TypeDir, fi)
		return p.write(e, mtime)
	case t&fs.ModeSymlink != 0:
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e, mtime := entryOf(name, TypeSymlink, fi)
		if e.Link, err = os.Readlink(file); err != nil {
			return err
		}
		return p.write(e, mtime)
	default:
		return fmt.Errorf("%s is a %s: only regular files, directories and symlinks can be backed up (move it out of the part, or back up a directory that does not hold it)", file, kind(t))
	}
}

// file writes a regular file. The header comes from the opened file, not
// from the walk, so that a file replaced in between is stored as opened.
func (p *packer) file(name, file string) error {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s became a %s while being backed up", file, kind(fi.Mode().Type()))
	}
	e, mtime := entryOf(name, TypeFile, fi)
	e.Size = fi.Size()
	sum, err := p.writeSum(e, mtime, f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	e.SHA256 = sum
	p.m.Entries = append(p.m.Entries, e)
	return nil
}

// write writes an entry without content, and lists it.
func (p *packer) write(e Entry, mtime time.Time) error {
	if _, err := p.writeSum(e, mtime, nil); err != nil {
		return err
	}
	p.m.Entries = append(p.m.Entries, e)
	if e.Type == TypeDir {
		p.dirs[e.Name] = true
	}
	return nil
}

// writeSum writes e's header and e.Size bytes of content from r, and
// returns their SHA-256.
func (p *packer) writeSum(e Entry, mtime time.Time, r io.Reader) (string, error) {
	hdr := &tar.Header{
		Name:    e.Name,
		Mode:    int64(e.Mode),
		Uid:     e.UID,
		Gid:     e.GID,
		ModTime: mtime,
	}
	switch e.Type {
	case TypeFile:
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.Size
	case TypeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.Name+"/"
	case TypeSymlink:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return "", err
	}
	if r == nil {
		return "", nil
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(p.tw, h), ctxReader{p.ctx, io.LimitReader(r, e.Size)}, p.buf)
	if err != nil {
		return "", err
	}
	if n < e.Size {
		return "", fmt.Errorf("shrank from %d to %d bytes while being read: stop the program writing it, or back up a snapshot", e.Size, n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// manifest writes MANIFEST.json, the last entry.
func (p *packer) manifest() error {
	b, err := json.MarshalIndent(p.m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	hdr := &tar.Header{
		Typeflag: tar.TypeReg, Name: ManifestName, Size: int64(len(b)),
		Mode: 0o600, Uid: p.uid, Gid: p.gid, ModTime: p.m.Created.Truncate(time.Second),
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = p.tw.Write(b)
	return err
}

// entryOf is the entry of a file, and its mtime as tar keeps it: to the
// second, truncated so that it never moves forward.
func entryOf(name, typ string, fi fs.FileInfo) (Entry, time.Time) {
	e := Entry{Name: name, Type: typ, Mode: permFromFS(fi.Mode())}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.UID, e.GID = int(st.Uid), int(st.Gid)
	}
	return e, fi.ModTime().Truncate(time.Second)
}

// kind names a file type for an error.
func kind(t fs.FileMode) string {
	switch {
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "device"
	case t.IsDir():
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "file of an unsupported type"
}

// ctxReader stops a long copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
