package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"
)

// nobody owns some of the tree, to show owners survive; the tests run as
// root.
const nobody = 65534

func newIdentity(t testing.TB) *age.X25519Identity {
	t.Helper()
	s, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the backup tests run as root: they set owners (run scripts/test.sh, or go test as root)")
	}
}

// node is what a round trip must keep of a file.
type node struct {
	typ      string
	perm     Perm
	uid, gid int
	sha256   string // files
	link     string // symlinks
	mtime    int64  // seconds
}

// snapshot maps the slash paths below root to their nodes, under prefix.
func snapshot(t testing.TB, root, prefix string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{perm: permFromFS(fi.Mode()), uid: int(st.Uid), gid: int(st.Gid), mtime: fi.ModTime().Unix()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			n.typ, n.sha256 = TypeFile, hex.EncodeToString(sum[:])
		case fi.IsDir():
			n.typ = TypeDir
		case fi.Mode()&fs.ModeSymlink != 0:
			n.typ = TypeSymlink
			if n.link, err = os.Readlink(p); err != nil {
				return err
			}
			n.perm = 0 // a symlink's mode means nothing on Linux
		}
		rel, _ := filepath.Rel(root, p)
		name := prefix
		if rel != "." {
			name = strings.TrimPrefix(prefix+"/"+filepath.ToSlash(rel), "/")
		}
		if name != "" {
			out[name] = n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mkdir(t testing.TB, p string, perm fs.FileMode, uid int) {
	t.Helper()
	if err := os.Mkdir(p, perm); err != nil {
		t.Fatal(err)
	}
	chownMod(t, p, perm, uid)
}

func writeFile(t testing.TB, p string, data []byte, perm fs.FileMode, uid int) {
	t.Helper()
	if err := os.WriteFile(p, data, perm); err != nil {
		t.Fatal(err)
	}
	chownMod(t, p, perm, uid)
}

func chownMod(t testing.TB, p string, perm fs.FileMode, uid int) {
	t.Helper()
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // after the chown, which clears setuid
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, p string, uid int) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sampleTree builds the tree of a monitoring host's backup under dir and
// returns its parts, with distinct old mtimes so that a restore that
// dropped them would show.
func sampleTree(t testing.TB, dir string) []Part {
	t.Helper()
	prom := filepath.Join(dir, "prometheus")
	mkdir(t, prom, 0o755, nobody)
	mkdir(t, filepath.Join(prom, "chunks"), 0o750, nobody)
	writeFile(t, filepath.Join(prom, "chunks", "000001"), randomBytes(t, 5<<20), 0o644, nobody)
	mkdir(t, filepath.Join(prom, "chunks", "deep"), 0o700, 0)
	mkdir(t, filepath.Join(prom, "chunks", "deep", "er"), 0o755, nobody)
	writeFile(t, filepath.Join(prom, "chunks", "deep", "er", "index"), []byte("index\n"), 0o600, nobody)
	mkdir(t, filepath.Join(prom, "wal"), 0o700, nobody) // empty
	writeFile(t, filepath.Join(prom, "empty"), nil, 0o600, 0)
	writeFile(t, filepath.Join(prom, "run.sh"), []byte("#!/bin/sh\n"), 0o755, 0)
	writeFile(t, filepath.Join(prom, "suid"), []byte("x"), 0o4750, nobody)
	symlink(t, "chunks/000001", filepath.Join(prom, "latest"), nobody)
	symlink(t, "/nonexistent/target", filepath.Join(prom, "dangling"), 0)

	stack := filepath.Join(dir, "stack")
	mkdir(t, stack, 0o755, 0)
	writeFile(t, filepath.Join(stack, "docker-compose.yml"), []byte("services: {}\n"), 0o644, 0)

	// A part given through a symlink stores the directory it names.
	graf := filepath.Join(dir, "grafana-data")
	mkdir(t, graf, 0o2775, 472)
	writeFile(t, filepath.Join(graf, "grafana.db"), []byte("sqlite"), 0o640, 472)
	symlink(t, "grafana-data", filepath.Join(dir, "grafana"), 0)

	writeFile(t, filepath.Join(dir, "secrets.env"), []byte("GITHUB_TOKEN=x\n"), 0o600, 0)

	setTimes(t, dir)
	return []Part{
		{Name: "prometheus", Path: prom},
		{Name: "config/stack", Path: stack},
		{Name: "grafana", Path: filepath.Join(dir, "grafana")},
		{Name: "secrets", Path: filepath.Join(dir, "secrets.env")},
	}
}

// setTimes gives every file below dir its own mtime, deepest first.
func setTimes(t testing.TB, dir string) {
	t.Helper()
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2021, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	for i, p := range slices.Backward(paths) {
		ts := unix.NsecToTimespec(base.Add(time.Duration(i) * time.Hour).UnixNano())
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

// wantTree is what extracting parts must give.
func wantTree(t testing.TB, parts []Part) map[string]node {
	t.Helper()
	want := map[string]node{}
	for _, p := range parts {
		root, err := filepath.EvalSymlinks(p.Path)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(want, snapshot(t, root, p.Name))
	}
	return want
}

func pack(t testing.TB, id *age.X25519Identity, parts []Part) ([]byte, Manifest) {
	t.Helper()
	var buf bytes.Buffer
	m, err := Pack(context.Background(), &buf, id.Recipient(), parts, map[string]string{"host": "test"})
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return buf.Bytes(), m
}

func TestRoundTrip(t *testing.T) {
	requireRoot(t)
	id := newIdentity(t)
	parts := sampleTree(t, t.TempDir())
	meta := map[string]string{"host": "ip-10-0-1-10", "version": "1.2.3"}
	var buf bytes.Buffer
	packed, err := Pack(context.Background(), &buf, id.Recipient(), parts, meta)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	dst := t.TempDir()
	unpacked, err := Unpack(context.Background(), &buf, id, dst)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}

	got := snapshot(t, dst, "")
	want := wantTree(t, parts)
	// config, the parent of the part config/stack, is made by Pack.
	want["config"] = node{typ: TypeDir, perm: 0o700, mtime: got["config"].mtime}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if got[name] != want[name] {
			t.Errorf("%s: got %+v, want %+v", name, got[name], want[name])
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: extracted, not in the source", name)
		}
	}

	if !packed.Created.Equal(unpacked.Created) || time.Since(packed.Created) > time.Minute || packed.Created.Location() != time.UTC {
		t.Errorf("Created: packed %v, unpacked %v; want now, in UTC", packed.Created, unpacked.Created)
	}
	packed.Created, unpacked.Created = time.Time{}, time.Time{}
	if !reflect.DeepEqual(packed, unpacked) {
		t.Errorf("Unpack's manifest differs from Pack's:\n%+v\n%+v", unpacked, packed)
	}
	if !reflect.DeepEqual(unpacked.Meta, meta) || unpacked.Version != FormatVersion {
		t.Errorf("manifest: version %d, meta %v; want %d, %v", unpacked.Version, unpacked.Meta, FormatVersion, meta)
	}
	checkManifestEntries(t, unpacked, want)
}

// checkManifestEntries checks that the manifest lists every file as the
// tree holds it, and its parents first.
func checkManifestEntries(t *testing.T, m Manifest, want map[string]node) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range m.Entries {
		if dir := filepath.Dir(e.Name); dir != "." && !seen[dir] {
			t.Errorf("manifest: %s comes before its directory", e.Name)
		}
		seen[e.Name] = true
		w, ok := want[e.Name]
		if !ok {
			continue
		}
		if e.Type != w.typ || e.SHA256 != w.sha256 || e.Link != w.link || e.UID != w.uid {
			t.Errorf("manifest: %+v, the source is %+v", e, w)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("manifest: %d entries, want %d", len(seen), len(want))
	}
}

func TestPackRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "tree", "ctl.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	writeFile(t, file, []byte("x"), 0o600, 0)

	tests := []struct {
		name  string
		parts []Part
		want  string
	}{
		{"socket", []Part{{"tree", filepath.Join(dir, "tree")}}, sock + " is a socket"},
		{"named pipe", []Part{{"fifo", fifo}}, fifo + " is a named pipe"},
		{"missing path", []Part{{"x", filepath.Join(dir, "missing")}}, "no such file"},
		{"no parts", nil, "no parts"},
		{"absolute name", []Part{{"/etc", file}}, "absolute"},
		{"dot dot", []Part{{"a/../b", file}}, "not a clean"},
		{"trailing slash", []Part{{"a/", file}}, "not a clean"},
		{"manifest name", []Part{{ManifestName, file}}, "manifest"},
		{"same name", []Part{{"a", file}, {"a", file}}, "overlap"},
		{"nested", []Part{{"config", file}, {"config/stack", file}}, "overlap"},
		{"empty path", []Part{{"a", ""}}, "empty path"},
	}
	id := newIdentity(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Pack(context.Background(), &bytes.Buffer{}, id.Recipient(), tt.parts, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Pack: %v; want an error with %q", err, tt.want)
			}
		})
	}
}

func TestPackCancel(t *testing.T) {
	dir := t.TempDir()
	// A sparse 8 GiB file: reading it is fast, compressing all of it is
	// not (minutes).
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelAtChunk{cancel: cancel}
	_, err = Pack(ctx, w, newIdentity(t).Recipient(), []Part{{"big", big}}, nil)
	if w.cancelled.IsZero() {
		t.Fatalf("Pack: %v, and it never wrote the file's first chunk", err)
	}
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Fatalf("Pack: %v; want the context's cancellation", err)
	}
	if d := time.Since(w.cancelled); d > 2*time.Second {
		t.Errorf("Pack returned %v after the cancel", d)
	}
}

// cancelAtChunk cancels on the first write of a whole age chunk, after
// the header's small writes: Pack is then in the middle of the file. It
// fails the writes that follow, beyond a few, so that a Pack that does not
// stop fails the test at once.
type cancelAtChunk struct {
	cancel    func()
	cancelled time.Time
	after     int
}

func (c *cancelAtChunk) Write(b []byte) (int, error) {
	switch {
	case c.cancelled.IsZero() && len(b) >= 64<<10:
		c.cancel()
		c.cancelled = time.Now()
	case !c.cancelled.IsZero():
		if c.after++; c.after > 4 {
			return 0, errors.New("Pack went on writing after its context was cancelled")
		}
	}
	return len(b), nil
}

func TestArchiveName(t *testing.T) {
	at := time.Date(2026, 11, 23, 7, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		host, want string
	}{
		{"ip-10-0-1-10", "monagent-backup-ip-10-0-1-10-20261123T060000Z.tar.gz.age"},
		{"mon.example.com", "monagent-backup-mon.example.com-20261123T060000Z.tar.gz.age"},
		{"a b/c_d", "monagent-backup-a-b-c-d-20261123T060000Z.tar.gz.age"},
		{"../..", "monagent-backup-..-..-20261123T060000Z.tar.gz.age"},
		{"", "monagent-backup-unknown-20261123T060000Z.tar.gz.age"},
		{"héllo", "monagent-backup-h-llo-20261123T060000Z.tar.gz.age"},
	}
	for _, tt := range tests {
		got := ArchiveName(tt.host, at)
		if got != tt.want {
			t.Errorf("ArchiveName(%q) = %q, want %q", tt.host, got, tt.want)
		}
		host, when, ok := ParseArchiveName(got)
		if !ok || !when.Equal(at) || strings.Contains(host, "/") {
			t.Errorf("ParseArchiveName(%q) = %q, %v, %v", got, host, when, ok)
		}
	}
	// One host's names sort by time.
	var names []string
	for _, d := range []time.Duration{0, time.Second, time.Hour, 24 * time.Hour, 400 * 24 * time.Hour} {
		names = append(names, ArchiveName("h", at.Add(d)))
	}
	if !slices.IsSorted(names) {
		t.Errorf("names do not sort by time: %v", names)
	}
	for _, bad := range []string{"", "x.tar.gz.age", "monagent-backup-h-20261123T060000Z.tar.gz", ".monagent-backup-h-20261123T060000Z.tar.gz.age.tmp-1",
		"monagent-backup-h-20261323T060000Z.tar.gz.age", "monagent-backup--20261123T060000Z.tar.gz.age", "monagent-backup-a/b-20261123T060000Z.tar.gz.age"} {
		if _, _, ok := ParseArchiveName(bad); ok {
			t.Errorf("ParseArchiveName(%q) accepted it", bad)
		}
	}
}

// typo changes key's character i for another valid one.
func typo(key string, i int) string {
	c := byte('Q')
	if key[i] == c {
		c = 'P'
	}
	return key[:i] + string(c) + key[i+1:]
}

func TestParseIdentity(t *testing.T) {
	key, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "AGE-SECRET-KEY-1") || len(key) != 74 {
		t.Fatalf("NewIdentity = a %d-character %.16s... key", len(key), key)
	}
	id, err := ParseIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	pub := id.Recipient().String()
	good := []string{key, key + "\n", "# created: 2026-01-01T00:00:00Z\n# public key: " + pub + "\n" + key + "\n"}
	for _, s := range good {
		got, err := ParseIdentity(s)
		if err != nil || got.String() != key {
			t.Errorf("ParseIdentity(a key file) = %v; want the key", err)
		}
	}
	secret := key[16:]
	bad := []struct{ in, want string }{
		{"", "empty"},
		{"# only a comment\n", "empty"},
		{key + "\n" + key, "2 key lines"},
		{pub, "public key"},
		{"hunter2", "not an age secret key"},
		{key[:60], "malformed"},
		{typo(key, 40), "malformed"}, // a bad checksum
		{key[:40] + "!" + key[41:], "malformed"},
		{strings.ToLower(key), "not an age secret key"},
	}
	for _, tt := range bad {
		_, err := ParseIdentity(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseIdentity(...) = %v; want an error with %q", err, tt.want)
			continue
		}
		for i := 0; i+8 <= len(secret); i++ {
			if strings.Contains(err.Error(), secret[i:i+8]) {
				t.Errorf("ParseIdentity's error holds key material: %v", err)
				break
			}
		}
	}

	r, err := ParseRecipient(pub)
	if err != nil || r.String() != pub {
		t.Errorf("ParseRecipient(pub) = %v, %v", r, err)
	}
	if _, err := ParseRecipient(key); err == nil || strings.Contains(err.Error(), secret[:8]) {
		t.Errorf("ParseRecipient(secret key) = %v; want an error without the key", err)
	}
}
