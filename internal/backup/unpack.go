package backup

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"
)

// maxManifest bounds the manifest read into memory: some hundred bytes an
// entry, so millions of entries.
const maxManifest = 256 << 20

// Unpack decrypts the archive r with id, extracts it into dir, an empty
// directory the caller made, and returns its manifest. It sets owners (as
// root), modes and mtimes, and writes nothing outside dir.
//
// Everything is checked: age's authentication of every chunk and of the
// stream's end, the tar stream, MANIFEST.json as the last entry, and every
// entry against it (type, size, SHA-256, link, mode, owner), none missing
// and none extra; names that are absolute, hold "..", repeat, or lie under
// a symlink or a file are refused. Errors say which entry failed and the
// likely cause; the caller adds the archive's name.
//
// On any error dir holds garbage and must be removed: age reports a
// truncated archive only at its end, after the entries were written.
func Unpack(ctx context.Context, r io.Reader, id age.Identity, dir string) (Manifest, error) {
	if id == nil {
		return Manifest{}, errors.New("decrypt: no key")
	}
	root, err := openEmpty(dir)
	if err != nil {
		return Manifest{}, err
	}
	defer root.Close()
	u := &unpacker{ctx: ctx, root: root, buf: make([]byte, copyBufSize), seen: map[string]string{}}
	return u.run(r, id)
}

// openEmpty opens dir as a root that no name can leave, and checks that it
// is empty: an entry must never meet a file it did not write.
func openEmpty(dir string) (*os.Root, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	f, err := root.Open(".")
	if err == nil {
		var names []string
		names, err = f.Readdirnames(1)
		f.Close()
		if err == nil && len(names) > 0 {
			err = fmt.Errorf("%s is not empty (it holds %s): extract into a new, empty directory", dir, names[0])
		} else if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// unpacker holds one Unpack's state.
type unpacker struct {
	ctx      context.Context
	root     *os.Root
	src      *errReader // the decrypted stream
	buf      []byte
	seen     map[string]string // name -> type of the entries extracted
	entries  []Entry           // in archive order
	dirs     []dirMeta         // directories, whose metadata is set last
	manifest *Manifest
}

type dirMeta struct {
	e     Entry
	mtime time.Time
}

func (u *unpacker) run(r io.Reader, id age.Identity) (Manifest, error) {
	plain, err := age.Decrypt(r, id)
	if err != nil {
		return Manifest{}, decryptError(err, id)
	}
	u.src = &errReader{r: plain}
	br := bufio.NewReaderSize(u.src, 64<<10)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return Manifest{}, u.fail(formatError("gzip", err))
	}
	zr.Multistream(false)
	if err := u.entriesFrom(tar.NewReader(zr)); err != nil {
		return Manifest{}, u.fail(err)
	}
	if err := u.end(zr, br); err != nil {
		return Manifest{}, u.fail(err)
	}
	if err := u.verify(); err != nil {
		return Manifest{}, err
	}
	if err := u.setDirs(); err != nil {
		return Manifest{}, err
	}
	return *u.manifest, nil
}

// entriesFrom extracts every entry and reads the manifest.
func (u *unpacker) entriesFrom(tr *tar.Reader) error {
	for {
		if err := u.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			err = nil // with GODEBUG=tarinsecurepath=0; extract refuses the name itself
		}
		if err != nil {
			return formatError("tar", err)
		}
		if u.manifest != nil {
			return fmt.Errorf("entry %s comes after %s, which must be the last entry (tampered or made wrongly)", hdr.Name, ManifestName)
		}
		if hdr.Name == ManifestName {
			if err := u.readManifest(hdr, tr); err != nil {
				return err
			}
			continue
		}
		if err := u.extract(hdr, tr); err != nil {
			return err
		}
	}
	if u.manifest == nil {
		return fmt.Errorf("no %s at the end of the archive (not a monagent backup, or tampered)", ManifestName)
	}
	return nil
}

// end checks that nothing follows the tar stream but its zero padding, and
// nothing the gzip stream; reading the decrypted stream to its end is what
// makes age authenticate the last chunk, so a truncation shows here.
func (u *unpacker) end(zr *gzip.Reader, br *bufio.Reader) error {
	for {
		n, err := zr.Read(u.buf)
		if slices.ContainsFunc(u.buf[:n], func(b byte) bool { return b != 0 }) {
			return errors.New("data after the end of the tar stream (tampered or made wrongly)")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return formatError("gzip", err)
		}
	}
	switch _, err := br.ReadByte(); {
	case err == nil:
		return errors.New("data after the end of the compressed stream (tampered or made wrongly)")
	case err != io.EOF:
		return err
	}
	return nil
}

func (u *unpacker) readManifest(hdr *tar.Header, tr *tar.Reader) error {
	if hdr.Typeflag != tar.TypeReg {
		return fmt.Errorf("%s is not a regular file (tampered or made wrongly)", ManifestName)
	}
	if hdr.Size > maxManifest {
		return fmt.Errorf("%s is %d bytes, more than the %d a manifest may be (tampered or made wrongly)", ManifestName, hdr.Size, maxManifest)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return formatError("tar", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w (tampered or made wrongly)", ManifestName, err)
	}
	if m.Version != FormatVersion {
		return fmt.Errorf("%s: format version %d; this monagent reads version %d (made by a newer monagent?)", ManifestName, m.Version, FormatVersion)
	}
	u.manifest = &m
	return nil
}

// extract writes one entry after checking that its name stays inside
// dir: clean, relative, new, and below a directory extracted before it.
// Since every parent is a directory this Unpack made, no write can go
// through a symlink; os.Root enforces the same underneath.
func (u *unpacker) extract(hdr *tar.Header, tr *tar.Reader) error {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if err := checkRel(name); err != nil {
		return fmt.Errorf("entry %q: %w: refused, it could write outside the directory (tampered or made wrongly)", hdr.Name, err)
	}
	if _, dup := u.seen[name]; dup {
		return fmt.Errorf("entry %s appears twice: refused, the second would replace the first (tampered or made wrongly)", name)
	}
	if err := u.checkParent(name); err != nil {
		return err
	}
	e := Entry{Name: name, Mode: Perm(hdr.Mode & 0o7777), UID: hdr.Uid, GID: hdr.Gid}
	if hdr.Linkname != "" && hdr.Typeflag != tar.TypeSymlink {
		return fmt.Errorf("entry %s: a link target on a %s (tampered or made wrongly)", name, typeName(hdr.Typeflag))
	}
	var err error
	switch hdr.Typeflag {
	case tar.TypeReg:
		e.Type = TypeFile
		err = u.file(&e, hdr.ModTime, tr)
	case tar.TypeDir:
		e.Type = TypeDir
		if err = u.root.Mkdir(name, 0o700); err == nil {
			u.dirs = append(u.dirs, dirMeta{e, hdr.ModTime})
		}
	case tar.TypeSymlink:
		e.Type, e.Link = TypeSymlink, hdr.Linkname
		err = u.symlink(e, hdr.ModTime)
	default:
		return fmt.Errorf("entry %s is a %s: an archive holds only files, directories and symlinks (tampered or made wrongly)", name, typeName(hdr.Typeflag))
	}
	if err != nil {
		return fmt.Errorf("entry %s: %w", name, err)
	}
	u.seen[name] = e.Type
	u.entries = append(u.entries, e)
	return nil
}

// checkParent requires name's directory to be an entry already extracted
// as a directory.
func (u *unpacker) checkParent(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	switch u.seen[dir] {
	case TypeDir:
		return nil
	case TypeSymlink:
		return fmt.Errorf("entry %s is under the symlink %s: refused, it could write outside the directory (tampered or made wrongly)", name, dir)
	case TypeFile:
		return fmt.Errorf("entry %s is under %s, a file (tampered or made wrongly)", name, dir)
	}
	return fmt.Errorf("entry %s comes before its directory %s, or the directory has no entry (tampered or made wrongly)", name, dir)
}

// file writes a regular file and sets its metadata. Chown comes before
// Chmod: a chown clears the setuid and setgid bits.
func (u *unpacker) file(e *Entry, mtime time.Time, r io.Reader) error {
	f, err := u.root.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, h), ctxReader{u.ctx, r}, u.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	e.Size, e.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return u.setMeta(*e, mtime)
}

func (u *unpacker) symlink(e Entry, mtime time.Time) error {
	if e.Link == "" || strings.ContainsRune(e.Link, 0) {
		return fmt.Errorf("symlink with an empty or NUL-holding target (tampered or made wrongly)")
	}
	if err := u.root.Symlink(e.Link, e.Name); err != nil {
		return err
	}
	if err := u.root.Lchown(e.Name, e.UID, e.GID); err != nil {
		return fmt.Errorf("set owner %d:%d (restoring runs as root): %w", e.UID, e.GID, err)
	}
	return u.lutimes(e.Name, mtime)
}

// lutimes sets a symlink's own mtime, which os.Root cannot: through its
// directory's descriptor, the root's own check having opened it.
func (u *unpacker) lutimes(name string, mtime time.Time) error {
	d, err := u.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(int(d.Fd()), path.Base(name), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

func (u *unpacker) setMeta(e Entry, mtime time.Time) error {
	if err := u.root.Chown(e.Name, e.UID, e.GID); err != nil {
		return fmt.Errorf("set owner %d:%d (restoring runs as root): %w", e.UID, e.GID, err)
	}
	if err := u.root.Chmod(e.Name, e.Mode.FileMode()); err != nil {
		return err
	}
	return u.root.Chtimes(e.Name, mtime, mtime)
}

// setDirs sets the directories' metadata, deepest first: writing in a
// directory changes its mtime, and a read-only one would refuse a
// non-root writer.
func (u *unpacker) setDirs() error {
	for _, d := range slices.Backward(u.dirs) {
		if err := u.setMeta(d.e, d.mtime); err != nil {
			return fmt.Errorf("entry %s: %w", d.e.Name, err)
		}
	}
	return nil
}

// verify compares the entries extracted with the manifest's.
func (u *unpacker) verify() error {
	want := make(map[string]Entry, len(u.manifest.Entries))
	for _, e := range u.manifest.Entries {
		if _, dup := want[e.Name]; dup {
			return fmt.Errorf("%s lists %s twice (tampered or made wrongly)", ManifestName, e.Name)
		}
		want[e.Name] = e
	}
	for _, got := range u.entries {
		w, ok := want[got.Name]
		if !ok {
			return fmt.Errorf("entry %s is in the archive but not in its manifest (tampered or made wrongly)", got.Name)
		}
		if diff := diffEntry(got, w); diff != "" {
			return fmt.Errorf("entry %s: %s (tampered or made wrongly)", got.Name, diff)
		}
		delete(want, got.Name)
	}
	for _, e := range u.manifest.Entries {
		if _, missing := want[e.Name]; missing {
			return fmt.Errorf("entry %s is in the manifest but missing from the archive (tampered or made wrongly)", e.Name)
		}
	}
	return nil
}

// diffEntry says how an extracted entry differs from the manifest's, or "".
func diffEntry(got, want Entry) string {
	switch {
	case got.Type != want.Type:
		return fmt.Sprintf("a %s, the manifest says a %s", got.Type, want.Type)
	case got.Size != want.Size:
		return fmt.Sprintf("size mismatch: %d bytes, the manifest says %d", got.Size, want.Size)
	case got.SHA256 != want.SHA256:
		return fmt.Sprintf("sha256 mismatch: %s, the manifest says %s", got.SHA256, want.SHA256)
	case got.Link != want.Link:
		return fmt.Sprintf("link target mismatch: %q, the manifest says %q", got.Link, want.Link)
	case got.Mode != want.Mode:
		return fmt.Sprintf("mode mismatch: %s, the manifest says %s", got.Mode, want.Mode)
	case got.UID != want.UID || got.GID != want.GID:
		return fmt.Sprintf("owner mismatch: %d:%d, the manifest says %d:%d", got.UID, got.GID, want.UID, want.GID)
	}
	return ""
}

// fail returns the error that explains err: the decrypted stream's, if it
// failed (gzip and tar only see its consequences), else err.
func (u *unpacker) fail(err error) error {
	if serr := u.src.err; serr != nil && serr != io.EOF {
		return payloadError(serr)
	}
	return err
}

// decryptError explains age.Decrypt's error.
func decryptError(err error, id age.Identity) error {
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		pub := ""
		if x, ok := id.(*age.X25519Identity); ok {
			pub = "; this key's public key is " + x.Recipient().String()
		}
		return fmt.Errorf("decrypt: the key does not match this archive: it was encrypted to another key, or its header was changed%s", pub)
	}
	return fmt.Errorf("decrypt: the archive's header is damaged or incomplete: changed (tampered or corrupted), truncated, or not an age archive: %w", err)
}

// payloadError explains an error of the decrypted stream.
func payloadError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("decrypt: the archive is truncated: it ends before its last chunk (an interrupted upload or copy?): %w", err)
	}
	return fmt.Errorf("decrypt: the archive is truncated, or was changed after it was made (tampered or corrupted): %w", err)
}

// formatError explains an error of gzip or tar over a stream that
// decrypted: age authenticated it, so it was made this way.
func formatError(layer string, err error) error {
	return fmt.Errorf("%s: %w (the archive decrypted, so it was made wrongly: not by monagent, or by a faulty one)", layer, err)
}

// typeName names a tar entry type for an error.
func typeName(t byte) string {
	switch t {
	case tar.TypeReg:
		return "regular file"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeDir:
		return "directory"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// errReader keeps the first error of r.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
