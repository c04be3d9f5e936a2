package secretgen

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestRandomGetOrCreate(t *testing.T) {
	s := newStore(t)
	first, err := s.Random("grafana_admin_password")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(first.Reveal())
	if err != nil || len(raw) != KeyBytes {
		t.Fatalf("value decodes to %d bytes (%v), want %d", len(raw), err, KeyBytes)
	}
	path := filepath.Join(s.Dir, "grafana_admin_password")
	assertMode(t, s.Dir, 0o700)
	assertMode(t, path, 0o600)
	if got := snap(t, path).data; string(got) != first.Reveal() {
		t.Errorf("file holds %d bytes, want exactly the %d-byte value", len(got), len(first.Reveal()))
	}
	before := freeze(t, path)
	for range 3 {
		again, err := s.Random("grafana_admin_password")
		if err != nil {
			t.Fatal(err)
		}
		if again.Reveal() != first.Reveal() {
			t.Fatal("rerun returned a new value: get-or-create rotated the secret")
		}
	}
	assertUntouched(t, path, before)
	other, err := s.Random("grafana_secret_key")
	if err != nil {
		t.Fatal(err)
	}
	if other.Reveal() == first.Reveal() {
		t.Error("two secrets share a value")
	}
}

func TestRandomInvalidFileIsAnErrorNotRegenerated(t *testing.T) {
	valid := base64.StdEncoding.EncodeToString(make([]byte, KeyBytes))
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "is empty"},
		{"trailing newline", valid + "\n", "holds 45 bytes"},
		{"short", "c2hvcnQ=", "holds 8 bytes"},
		{"not base64", strings.Repeat("!", keyLen), "not standard base64"},
		{"url alphabet", strings.Repeat("-", keyLen), "not standard base64"},
		{"33 bytes unpadded", strings.Repeat("A", keyLen), "decodes to 33 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if _, err := s.Random("init"); err != nil { // makes the directory
				t.Fatal(err)
			}
			path := filepath.Join(s.Dir, "backup_key")
			writeFile(t, path, tt.content, 0o600)
			before := freeze(t, path)
			got, err := s.Random("backup_key")
			assertErr(t, err, []string{path, tt.want, "remove it"}, tt.content)
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != path {
				t.Errorf("error %v is not a *FileError for %s", err, path)
			}
			if got.Reveal() != "" {
				t.Error("an invalid secret was returned along with the error")
			}
			assertUntouched(t, path, before)
		})
	}
}

func TestPermissions(t *testing.T) {
	tests := []struct {
		name  string
		file  string // relative to the store; "" is the store itself
		mode  os.FileMode
		fix   string // "" when the mode is accepted
		setup func(*Store) error
	}{
		{name: "0600 secret", file: "k", mode: 0o600},
		{name: "0400 secret is tighter", file: "k", mode: 0o400},
		{name: "0644 secret", file: "k", mode: 0o644, fix: "chmod 600"},
		{name: "0640 secret", file: "k", mode: 0o640, fix: "chmod 600"},
		{name: "0604 secret", file: "k", mode: 0o604, fix: "chmod 600"},
		{name: "0700 secret", file: "k", mode: 0o700, fix: "chmod 600"},
		{name: "0644 bcrypt hash", file: "p.bcrypt", mode: 0o644, fix: "chmod 600"},
		{name: "0644 TLS key", file: "t.key", mode: 0o644, fix: "chmod 600"},
		{name: "0644 certificate", file: "t.crt", mode: 0o644},
		{name: "0600 certificate", file: "t.crt", mode: 0o600},
		{name: "0664 certificate", file: "t.crt", mode: 0o664, fix: "chmod 644"},
		{name: "0700 directory", mode: 0o700},
		{name: "0755 directory", mode: 0o755, fix: "chmod 700"},
		{name: "0711 directory", mode: 0o711, fix: "chmod 700"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fastStore(t)
			if err := createAll(s); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(s.Dir, tt.file)
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			err := createAll(s)
			if tt.fix == "" {
				if err != nil {
					t.Fatalf("mode %04o refused: %v", tt.mode, err)
				}
				return
			}
			assertErr(t, err, []string{path, "looser", tt.fix + " " + path})
			if fi, _ := os.Stat(path); fi.Mode().Perm() != tt.mode {
				t.Errorf("mode changed to %04o: the error must leave the fix to the operator", fi.Mode().Perm())
			}
		})
	}
}

// createAll gets one secret of every kind.
func createAll(s *Store) error {
	if _, err := s.Random("k"); err != nil {
		return err
	}
	if _, err := s.Password("p"); err != nil {
		return err
	}
	_, err := s.TLS("t", Hosts{DNSNames: []string{"localhost"}})
	return err
}

func TestOwnerMustBeTheAgentsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	for _, file := range []string{"", "k", "p.bcrypt", "t.key", "t.crt"} {
		t.Run("/"+file, func(t *testing.T) {
			s := fastStore(t)
			if err := createAll(s); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(s.Dir, file)
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			assertErr(t, createAll(s), []string{path, "uid 65534", "chown 0:0 " + path})
		})
	}
}

func TestMissingDirectoryIsMadePrivate(t *testing.T) {
	base := t.TempDir()
	s := &Store{Dir: filepath.Join(base, "a", "b", "secrets")}
	if _, err := s.Random("k"); err != nil {
		t.Fatal(err)
	}
	assertMode(t, s.Dir, 0o700)
	// Parents are not secret: services may need to traverse them.
	assertMode(t, filepath.Join(base, "a"), 0o755)
}

func TestNotARegularFile(t *testing.T) {
	s := newStore(t)
	if _, err := s.Random("init"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir, "k")
	if err := os.Symlink("/etc/hostname", path); err != nil {
		t.Fatal(err)
	}
	_, err := s.Random("k")
	assertErr(t, err, []string{path, "not a regular file"})
}

func TestBadNames(t *testing.T) {
	for _, name := range []string{"", ".hidden", "..", "../escape", "a/b", "/abs"} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			if _, err := s.Random(name); err == nil {
				t.Error("Random accepted the name")
			}
			if _, err := s.Password(name); err == nil {
				t.Error("Password accepted the name")
			}
			if _, err := s.TLS(name, Hosts{DNSNames: []string{"x"}}); err == nil {
				t.Error("TLS accepted the name")
			}
			if _, err := os.Stat(s.Dir); err == nil {
				t.Error("the store was created for a refused name")
			}
		})
	}
}

func TestPasswordGetOrCreate(t *testing.T) {
	s := newStore(t)
	first, err := s.Password("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	pwPath, hashPath := filepath.Join(s.Dir, "prometheus"), filepath.Join(s.Dir, "prometheus.bcrypt")
	assertMode(t, pwPath, 0o600)
	assertMode(t, hashPath, 0o600)
	if err := bcrypt.CompareHashAndPassword([]byte(first.Hash), []byte(first.Password.Reveal())); err != nil {
		t.Fatalf("hash does not verify the password: %v", err)
	}
	if cost, _ := bcrypt.Cost([]byte(first.Hash)); cost < 10 {
		t.Errorf("bcrypt cost %d, want at least 10", cost)
	}
	if got := string(snap(t, hashPath).data); got != first.Hash {
		t.Errorf("hash file holds %q, want the hash alone", got)
	}
	pwBefore, hashBefore := freeze(t, pwPath), freeze(t, hashPath)
	again, err := s.Password("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Error("rerun returned another password or hash")
	}
	assertUntouched(t, pwPath, pwBefore)
	assertUntouched(t, hashPath, hashBefore)
}

func TestPasswordHashIsRecomputedFromThePassword(t *testing.T) {
	const pw = "ZmFrZS1wYXNzd29yZC1vZi0zMi1ieXRlcy1sZW5ndGg="
	cost := fastStore(t).cost()
	hash := func(p string, cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte(p), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	tests := []struct {
		name string
		hash *string // nil: no hash file
	}{
		{"missing", nil},
		{"empty", ptr("")},
		{"garbage", ptr("not a bcrypt hash")},
		{"another password's", ptr(hash("ZGlmZmVyZW50LXBhc3N3b3JkLW9mLTMyLWJ5dGVzLi4=", cost))},
		{"too cheap", ptr(hash(pw, cost-1))},
		{"with newline", ptr(hash(pw, cost) + "\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fastStore(t)
			if _, err := s.Random("init"); err != nil {
				t.Fatal(err)
			}
			pwPath, hashPath := filepath.Join(s.Dir, "web"), filepath.Join(s.Dir, "web.bcrypt")
			writeFile(t, pwPath, pw, 0o600)
			if tt.hash != nil {
				writeFile(t, hashPath, *tt.hash, 0o600)
			}
			pwBefore := freeze(t, pwPath)
			got, err := s.Password("web")
			if err != nil {
				t.Fatal(err)
			}
			if got.Password.Reveal() != pw {
				t.Fatal("the kept password was replaced: it is the source of truth")
			}
			assertUntouched(t, pwPath, pwBefore)
			if err := bcrypt.CompareHashAndPassword([]byte(got.Hash), []byte(pw)); err != nil {
				t.Errorf("returned hash does not verify: %v", err)
			}
			if c, _ := bcrypt.Cost([]byte(got.Hash)); c != cost {
				t.Errorf("cost %d, want %d", c, cost)
			}
			if kept := string(snap(t, hashPath).data); kept != got.Hash {
				t.Error("the recomputed hash was not kept")
			}
			assertMode(t, hashPath, 0o600)
		})
	}
}

func ptr(s string) *string { return &s }

func TestPasswordCorruptIsAnError(t *testing.T) {
	s := fastStore(t)
	if _, err := s.Password("web"); err != nil {
		t.Fatal(err)
	}
	pwPath, hashPath := filepath.Join(s.Dir, "web"), filepath.Join(s.Dir, "web.bcrypt")
	writeFile(t, pwPath, "hunter2", 0o600)
	hashBefore := freeze(t, hashPath)
	_, err := s.Password("web")
	assertErr(t, err, []string{pwPath, "holds 7 bytes", "remove it"}, "hunter2")
	assertUntouched(t, hashPath, hashBefore)
}

func TestPasswordCostlierHashIsKept(t *testing.T) {
	s := fastStore(t)
	first, err := s.Password("web")
	if err != nil {
		t.Fatal(err)
	}
	costlier, err := bcrypt.GenerateFromPassword([]byte(first.Password.Reveal()), s.cost()+1)
	if err != nil {
		t.Fatal(err)
	}
	hashPath := filepath.Join(s.Dir, "web.bcrypt")
	writeFile(t, hashPath, string(costlier), 0o600)
	before := freeze(t, hashPath)
	got, err := s.Password("web")
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != string(costlier) {
		t.Error("a verifying hash above the minimum cost was replaced")
	}
	assertUntouched(t, hashPath, before)
}
