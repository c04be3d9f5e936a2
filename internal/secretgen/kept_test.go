package secretgen

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no file
		mode    os.FileMode
		wantOK  bool
		want    []string // error mentions; nil: no error
	}{
		{name: "missing", content: nil},
		{name: "kept", content: ptr("AGE-SECRET-KEY-1QQQ"), mode: 0o600, wantOK: true},
		{name: "kept 0400", content: ptr("tok"), mode: 0o400, wantOK: true},
		{name: "0644", content: ptr("leaked-token"), mode: 0o644, want: []string{"looser than 0600", "chmod 600"}},
		{name: "0640", content: ptr("leaked-token"), mode: 0o640, want: []string{"chmod 600"}},
		{name: "empty", content: ptr(""), mode: 0o600, want: []string{"is empty", "remove it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fastStore(t)
			if err := s.ensureDir(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(s.Dir, "SMTP_PASSWORD")
			if tt.content != nil {
				writeFile(t, path, *tt.content, tt.mode)
			}
			got, ok, err := s.Lookup("SMTP_PASSWORD")
			if tt.want != nil {
				assertErr(t, err, append([]string{path}, tt.want...), *tt.content)
				var fe *FileError
				if !errors.As(err, &fe) || fe.Path != path {
					t.Errorf("error %v is not a *FileError for %s", err, path)
				}
				if ok || got.Reveal() != "" {
					t.Errorf("Lookup = %v with a value, along with its error", ok)
				}
				if fi, _ := os.Stat(path); fi.Mode().Perm() != tt.mode {
					t.Errorf("mode changed to %04o", fi.Mode().Perm())
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			want := ""
			if tt.content != nil {
				want = *tt.content
			}
			if got.Reveal() != want {
				t.Errorf("value %q, want %q", got.Reveal(), want)
			}
		})
	}
}

func TestLookupNoStore(t *testing.T) {
	s := fastStore(t) // Dir does not exist yet
	_, ok, err := s.Lookup("GRAFANA_ADMIN_PASSWORD")
	if err != nil || ok {
		t.Fatalf("Lookup in a missing store = %v, %v; want false, nil", ok, err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lookup made the store: %v", err)
	}
	for _, name := range []string{"", ".hidden", "../etc/passwd", "a/b"} {
		if _, _, err := s.Lookup(name); err == nil {
			t.Errorf("Lookup(%q) = nil error, want the name refused", name)
		}
	}
}

func TestKeep(t *testing.T) {
	s := fastStore(t)
	first, err := s.Keep("GITHUB_TOKEN", NewSecret("first-value"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Reveal() != "first-value" {
		t.Fatalf("Keep returned %q, want the value it kept", first.Reveal())
	}
	path := filepath.Join(s.Dir, "GITHUB_TOKEN")
	assertMode(t, s.Dir, 0o700)
	assertMode(t, path, 0o600)
	if got := string(snap(t, path).data); got != "first-value" {
		t.Fatalf("file holds %q, want the value alone", got)
	}
	before := freeze(t, path)

	tests := []struct {
		name  string
		value string
		want  string
		err   error
	}{
		{"same value", "first-value", "first-value", nil},
		{"another value", "second-value", "first-value", nil},
		{"empty value", "", "", ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Keep("GITHUB_TOKEN", NewSecret(tt.value))
			if !errors.Is(err, tt.err) {
				t.Fatalf("Keep = %v, want %v", err, tt.err)
			}
			if got.Reveal() != tt.want {
				t.Errorf("Keep returned %q, want %q", got.Reveal(), tt.want)
			}
			assertUntouched(t, path, before)
		})
	}
}

func TestKeepEmptyWritesNothing(t *testing.T) {
	s := fastStore(t)
	if _, err := s.Keep("TOKEN", NewSecret("")); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Keep of an empty value = %v, want ErrEmpty", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "TOKEN")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an empty value was kept: %v", err)
	}
}

func TestKeepRefusesWhatLookupRefuses(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"0644 file", "someone-elses", 0o644, "chmod 600"},
		{"empty file", "", 0o600, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fastStore(t)
			if err := s.ensureDir(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(s.Dir, "TOKEN")
			writeFile(t, path, tt.content, tt.mode)
			before := freeze(t, path)
			got, err := s.Keep("TOKEN", NewSecret("new-value"))
			assertErr(t, err, []string{path, tt.want}, tt.content)
			if got.Reveal() != "" {
				t.Errorf("Keep returned %q along with its error", got.Reveal())
			}
			assertUntouched(t, path, before)
		})
	}
}

func TestHash(t *testing.T) {
	const pw = "cHJvbWV0aGV1cy1iYXNpYy1hdXRoLXBhc3N3b3JkLi4="
	s := fastStore(t)
	hash, err := s.Hash("PROMETHEUS_PASSWORD", NewSecret(pw))
	if err != nil {
		t.Fatal(err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)); err != nil {
		t.Fatalf("hash does not verify the password: %v", err)
	}
	path := filepath.Join(s.Dir, "PROMETHEUS_PASSWORD.bcrypt")
	assertMode(t, path, 0o600)
	if got := string(snap(t, path).data); got != hash {
		t.Fatalf("hash file holds %q, want %q", got, hash)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "PROMETHEUS_PASSWORD")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Hash kept the password itself: %v", err)
	}
	if !s.HashMatches(hash, NewSecret(pw)) {
		t.Error("HashMatches(kept hash, its password) = false")
	}

	// A rerun with the same password: the kept hash, byte for byte.
	before := freeze(t, path)
	again, err := s.Hash("PROMETHEUS_PASSWORD", NewSecret(pw))
	if err != nil {
		t.Fatal(err)
	}
	if again != hash {
		t.Errorf("rerun returned another hash: %q, want %q", again, hash)
	}
	assertUntouched(t, path, before)

	// The password changed (an operator rotated it): the hash follows.
	const rotated = "cm90YXRlZC1wYXNzd29yZC1vZi0zMi1ieXRlcy4uLi4="
	changed, err := s.Hash("PROMETHEUS_PASSWORD", NewSecret(rotated))
	if err != nil {
		t.Fatal(err)
	}
	if changed == hash {
		t.Fatal("the hash of the old password was kept for a new one")
	}
	if err := bcrypt.CompareHashAndPassword([]byte(changed), []byte(rotated)); err != nil {
		t.Errorf("the new hash does not verify the new password: %v", err)
	}
	if got := string(snap(t, path).data); got != changed {
		t.Error("the recomputed hash was not kept")
	}
	if s.HashMatches(changed, NewSecret(pw)) {
		t.Error("HashMatches(new hash, old password) = true")
	}
}

func TestHashMatches(t *testing.T) {
	const pw = "the-password"
	s := fastStore(t)
	gen := func(p string, cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte(p), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	tests := []struct {
		name string
		hash string
		want bool
	}{
		{"its hash", gen(pw, s.cost()), true},
		{"costlier", gen(pw, s.cost()+1), true},
		{"cheaper than the store's cost", gen(pw, s.cost()-1), false},
		{"another password's", gen("other", s.cost()), false},
		{"empty", "", false},
		{"garbage", "$2a$not-a-hash", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.HashMatches(tt.hash, NewSecret(pw)); got != tt.want {
				t.Errorf("HashMatches = %v, want %v", got, tt.want)
			}
		})
	}
}

// ls lists the store's files, or nil when the store does not exist.
func ls(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestPeekTLS(t *testing.T) {
	hosts := monitoringHosts()
	tests := []struct {
		name   string
		issue  bool          // TLS before the peek
		after  time.Duration // clock move between the two
		hosts  Hosts
		wantOK bool
	}{
		{name: "missing", hosts: hosts},
		{name: "issued", issue: true, hosts: hosts, wantOK: true},
		{name: "fewer names", issue: true, hosts: Hosts{DNSNames: []string{"localhost"}}, wantOK: true},
		{name: "a host not covered", issue: true, hosts: Hosts{DNSNames: []string{"grafana.example.internal"}}},
		{name: "an IP not covered", issue: true, hosts: Hosts{IPs: []net.IP{net.ParseIP("10.9.9.9")}}},
		{name: "due for renewal", issue: true, after: Validity - RenewBefore, hosts: hosts},
		{name: "expired", issue: true, after: Validity + time.Hour, hosts: hosts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, now := clockStore(t)
			var issued KeyPair
			if tt.issue {
				var err error
				if issued, err = s.TLS("prometheus", hosts); err != nil {
					t.Fatal(err)
				}
			}
			before := map[string]snapshot{}
			for _, f := range ls(t, s.Dir) {
				before[f] = freeze(t, filepath.Join(s.Dir, f))
			}
			*now = t0().Add(tt.after)
			kp, ok, err := s.PeekTLS("prometheus", tt.hosts)
			if err != nil {
				t.Fatalf("PeekTLS: %v", err)
			}
			if ok != tt.wantOK {
				t.Errorf("ok = %v, want %v", ok, tt.wantOK)
			}
			if kp.Issued {
				t.Error("PeekTLS says it issued a pair")
			}
			if tt.issue && (kp.Cert == nil || !kp.Cert.Equal(issued.Cert) || kp.KeyPEM.Reveal() != issued.KeyPEM.Reveal()) {
				t.Error("PeekTLS did not return the kept pair")
			}
			// Never writes: no file appears, none is touched.
			after := ls(t, s.Dir)
			if len(after) != len(before) {
				t.Errorf("store holds %v after PeekTLS, %d files before", after, len(before))
			}
			for f, snap := range before {
				assertUntouched(t, filepath.Join(s.Dir, f), snap)
			}
			if !tt.issue {
				if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("PeekTLS made the store: %v", err)
				}
			}
		})
	}
}

func TestPeekTLSRefusesWhatTLSRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store, kp KeyPair)
		hosts Hosts
		want  string
	}{
		{name: "no hosts", hosts: Hosts{}, want: "no DNS name or IP"},
		{name: "half pair", hosts: monitoringHosts(), want: "is missing while", setup: func(t *testing.T, s *Store, kp KeyPair) {
			if err := os.Remove(kp.CertFile); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "key readable by others", hosts: monitoringHosts(), want: "chmod 600", setup: func(t *testing.T, s *Store, kp KeyPair) {
			if err := os.Chmod(kp.KeyFile, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := clockStore(t)
			kp, err := s.TLS("prometheus", monitoringHosts())
			if err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, s, kp)
			}
			_, ok, err := s.PeekTLS("prometheus", tt.hosts)
			assertErr(t, err, []string{tt.want})
			if ok {
				t.Error("ok = true along with an error")
			}
		})
	}
}
