package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// smallArchive is an archive of a few files, one of 200 KiB so that the
// payload spans several age chunks.
func smallArchive(t *testing.T, id *age.X25519Identity) []byte {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "big"), randomBytes(t, 200<<10), 0o644, 0)
	writeFile(t, filepath.Join(dir, "small"), []byte("small\n"), 0o600, 0)
	data, _ := pack(t, id, []Part{{"data", dir}})
	return data
}

// payloadStart is the offset of the payload after age's header: the line
// "--- <MAC>\n", then a 16-byte nonce.
func payloadStart(t *testing.T, data []byte) int {
	t.Helper()
	i := bytes.Index(data, []byte("\n--- "))
	if i < 0 {
		t.Fatal("no age header in the archive")
	}
	j := bytes.IndexByte(data[i+1:], '\n')
	return i + 1 + j + 1 + 16
}

// unpackErr unpacks data into a new directory and returns the error.
func unpackErr(t *testing.T, data []byte, id age.Identity) error {
	t.Helper()
	_, err := Unpack(context.Background(), bytes.NewReader(data), id, t.TempDir())
	return err
}

func TestUnpackTampered(t *testing.T) {
	id := newIdentity(t)
	data := smallArchive(t, id)
	if err := unpackErr(t, data, id); err != nil {
		t.Fatalf("the untouched archive: %v", err)
	}
	payload := payloadStart(t, data)
	const chunk = 64<<10 + 16
	if len(data) < payload+2*chunk {
		t.Fatalf("the archive is %d bytes: want more than two chunks", len(data))
	}
	stanza := bytes.Index(data, []byte("X25519")) + 10
	tests := []struct {
		name   string
		offset int
		want   string
	}{
		{"first byte of the header", 0, "header is damaged"},
		{"recipient stanza", stanza, "does not match"},
		{"header MAC", payload - 16 - 5, "header is damaged"},
		{"nonce", payload - 3, "tampered"},
		{"first payload byte", payload, "tampered"},
		{"first chunk's tag", payload + chunk - 1, "tampered"},
		{"second chunk", payload + chunk, "tampered"},
		{"middle", len(data) / 2, "tampered"},
		{"last byte", len(data) - 1, "tampered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := slices.Clone(data)
			bad[tt.offset] ^= 0x01
			if tt.offset == stanza {
				// Another base64 digit, so that the stanza still parses
				// (a flipped bit may make it no base64 at all) and names
				// another key share.
				bad[tt.offset] = 'A'
				if data[tt.offset] == 'A' {
					bad[tt.offset] = 'B'
				}
			}
			err := unpackErr(t, bad, id)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("byte %d of %d changed: %v; want an error with %q", tt.offset, len(data), err, tt.want)
			}
		})
	}
}

func TestUnpackTruncated(t *testing.T) {
	id := newIdentity(t)
	data := smallArchive(t, id)
	payload := payloadStart(t, data)
	const chunk = 64<<10 + 16
	for _, n := range []int{
		0, 20, payload - 16, payload, payload + 100,
		payload + chunk - 1, payload + chunk, payload + chunk + 1, payload + 2*chunk,
		len(data) - 17, len(data) - 16, len(data) - 1,
	} {
		err := unpackErr(t, data[:n], id)
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("the first %d bytes of %d: %v; want an error saying it is truncated", n, len(data), err)
		}
	}
	if err := unpackErr(t, append(slices.Clone(data), 0), id); err == nil {
		t.Error("a byte appended: no error")
	}
}

func TestUnpackWrongKey(t *testing.T) {
	id := newIdentity(t)
	data := smallArchive(t, id)
	other := newIdentity(t)
	err := unpackErr(t, data, other)
	if err == nil || !strings.Contains(err.Error(), "key does not match") || !strings.Contains(err.Error(), other.Recipient().String()) {
		t.Errorf("another key: %v; want an error saying the key does not match, with its public key", err)
	}
}

func TestUnpackRefusesNonEmptyDir(t *testing.T) {
	id := newIdentity(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "old"), nil, 0o600, 0)
	_, err := Unpack(context.Background(), bytes.NewReader(smallArchive(t, id)), id, dir)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Unpack into a non-empty directory: %v", err)
	}
}

// crafted is an entry of a hand-made archive, which Pack would not make.
type crafted struct {
	hdr  tar.Header
	body string
}

func file(name, body string) crafted {
	return crafted{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1e9, 0)}, body}
}

func dir(name string) crafted {
	return crafted{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: time.Unix(1e9, 0)}}
}

func link(name, target string) crafted {
	return crafted{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, ModTime: time.Unix(1e9, 0)}}
}

// entryFor is the manifest's entry for c, as Pack would list it.
func entryFor(c crafted) Entry {
	e := Entry{Name: strings.TrimSuffix(c.hdr.Name, "/"), Mode: Perm(c.hdr.Mode), UID: c.hdr.Uid, GID: c.hdr.Gid}
	switch c.hdr.Typeflag {
	case tar.TypeReg:
		sum := sha256.Sum256([]byte(c.body))
		e.Type, e.Size, e.SHA256 = TypeFile, int64(len(c.body)), hex.EncodeToString(sum[:])
	case tar.TypeDir:
		e.Type = TypeDir
	case tar.TypeSymlink:
		e.Type, e.Link = TypeSymlink, c.hdr.Linkname
	default:
		e.Type = "other"
	}
	return e
}

// craft encrypts a tar of entries to r. listed are the manifest's entries
// (nil: none, no manifest); after are entries written after it.
func craft(t *testing.T, r age.Recipient, entries []crafted, listed []crafted, after ...crafted) []byte {
	t.Helper()
	return craftTail(t, r, gzip.DefaultCompression, nil, nil, func(tw *tar.Writer) {
		write := func(c crafted) {
			h := c.hdr
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(c.body)); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range entries {
			write(c)
		}
		if listed != nil {
			write(file(ManifestName, manifestOf(t, listed)))
		}
		for _, c := range after {
			write(c)
		}
	})
}

// craftTail encrypts to r the tar that body writes, gzipped at level, with
// tarTail after the tar stream inside gzip and gzTail after gzip's end.
func craftTail(t *testing.T, r age.Recipient, level int, tarTail, gzTail []byte, body func(*tar.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	aw, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	zw, err := gzip.NewWriterLevel(aw, level)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	body(tw)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tarTail); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := aw.Write(gzTail); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestUnpackEnd shows that Unpack reads to the end of every layer: what
// follows the tar stream, and a truncation far past it, are found.
func TestUnpackEnd(t *testing.T) {
	id := newIdentity(t)
	entries := []crafted{file("f", "x")}
	body := func(tw *tar.Writer) {
		for _, c := range []crafted{entries[0], file(ManifestName, manifestOf(t, entries))} {
			h := c.hdr
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(c.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Zeros after the tar stream are a tar's record padding: allowed.
	// Stored, not compressed, they make the stream long after the tar's end.
	padded := craftTail(t, id.Recipient(), gzip.NoCompression, make([]byte, 300<<10), nil, body)
	const chunk = 64<<10 + 16
	cut := payloadStart(t, padded) + 3*chunk
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"zero padding", padded, ""},
		{"data after the tar stream", craftTail(t, id.Recipient(), gzip.DefaultCompression, []byte("evil"), nil, body), "data after the end of the tar stream"},
		{"data after the gzip stream", craftTail(t, id.Recipient(), gzip.DefaultCompression, nil, []byte("evil"), body), "data after the end of the compressed stream"},
		{"truncated long after the tar's end", padded[:cut], "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := unpackErr(t, tt.data, id)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Unpack: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Unpack: %v; want an error with %q", err, tt.want)
			}
		})
	}
}

func manifestOf(t *testing.T, entries []crafted) string {
	t.Helper()
	m := Manifest{Version: FormatVersion, Created: time.Now().UTC()}
	for _, c := range entries {
		m.Entries = append(m.Entries, entryFor(c))
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnpackRefusesCrafted(t *testing.T) {
	requireRoot(t)
	id := newIdentity(t)
	// Each case extracts into parent/stage beside parent/outside, which
	// holds a sentinel: the crafted names aim at it.
	parent := t.TempDir()
	outside := filepath.Join(parent, "outside")
	sentinel := filepath.Join(outside, "sentinel")
	mkdir(t, outside, 0o755, 0)
	writeFile(t, sentinel, []byte("untouched\n"), 0o644, 0)

	good := []crafted{dir("a"), file("a/f", "content"), link("a/l", "f"), file("top", "x")}
	tests := []struct {
		name    string
		entries []crafted
		listed  []crafted // nil: no manifest
		after   []crafted
		want    string // "" for the control case, which must unpack
	}{
		{"control", good, good, nil, ""},
		{"content differs from the manifest", []crafted{file("f", "evil")}, []crafted{file("f", "good")}, nil, "entry f: sha256 mismatch"},
		{"size differs from the manifest", []crafted{file("f", "longer")}, []crafted{file("f", "short")}, nil, "entry f: size mismatch"},
		{"type differs from the manifest", []crafted{dir("f")}, []crafted{file("f", "")}, nil, "entry f: a dir, the manifest says a file"},
		{"link differs from the manifest", []crafted{link("l", "/etc/shadow")}, []crafted{link("l", "f")}, nil, "link target mismatch"},
		{"no manifest", good, nil, nil, "no MANIFEST.json"},
		{"manifest not last", good[:2], good, []crafted{file("late", "x")}, "entry late comes after MANIFEST.json"},
		{"extra entry", append(slices.Clone(good), file("extra", "x")), good, nil, "entry extra is in the archive but not in its manifest"},
		{"missing entry", good[:2], good, nil, "entry a/l is in the manifest but missing"},
		{"dot dot", []crafted{file("../outside/evil", "x")}, []crafted{file("../outside/evil", "x")}, nil, "not a clean relative path"},
		{"dot dot inside", []crafted{dir("a"), file("a/../../outside/evil", "x")}, []crafted{}, nil, "not a clean relative path"},
		{"absolute name", []crafted{file(filepath.Join(outside, "evil"), "x")}, []crafted{}, nil, "absolute name"},
		{"file under a symlink", []crafted{link("l", outside), file("l/evil", "x")}, []crafted{}, nil, "entry l/evil is under the symlink l"},
		{"dir under a symlink", []crafted{link("l", "../outside"), dir("l/d")}, []crafted{}, nil, "entry l/d is under the symlink l"},
		{"duplicate file", []crafted{file("f", "1"), file("f", "2")}, []crafted{file("f", "2")}, nil, "entry f appears twice"},
		{"file over a symlink", []crafted{link("f", sentinel), file("f", "evil")}, []crafted{}, nil, "entry f appears twice"},
		{"hard link", []crafted{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: sentinel}}}, []crafted{}, nil, "hard link"},
		{"device", []crafted{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}}, []crafted{}, nil, "character device"},
		{"entry before its directory", []crafted{file("d/f", "x"), dir("d")}, []crafted{}, nil, "entry d/f comes before its directory d"},
		{"entry under a file", []crafted{file("f", "x"), file("f/g", "x")}, []crafted{}, nil, "entry f/g is under f, a file"},
		{"the manifest's name for a directory", []crafted{dir(ManifestName)}, []crafted{}, nil, "the manifest's name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stage := filepath.Join(parent, "stage")
			if err := os.Mkdir(stage, 0o700); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(stage)
			data := craft(t, id.Recipient(), tt.entries, tt.listed, tt.after...)
			_, err := Unpack(context.Background(), bytes.NewReader(data), id, stage)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Unpack: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Unpack: %v; want an error with %q", err, tt.want)
			}
			checkOutside(t, parent, sentinel)
		})
	}
}

// checkOutside checks that parent holds only stage and outside, and
// outside only its untouched sentinel.
func checkOutside(t *testing.T, parent, sentinel string) {
	t.Helper()
	got := snapshot(t, parent, "")
	for name := range got {
		if name != "stage" && !strings.HasPrefix(name, "stage/") && name != "outside" && name != "outside/sentinel" {
			t.Errorf("%s was written outside the directory", name)
		}
	}
	b, err := os.ReadFile(sentinel)
	if err != nil || string(b) != "untouched\n" {
		t.Errorf("the sentinel beside the directory: %q, %v", b, err)
	}
}
