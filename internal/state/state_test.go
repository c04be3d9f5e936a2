package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	s := &Store{Path: filepath.Join(t.TempDir(), "var/lib/monagent/state.json")}
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Steps) != 0 {
		t.Fatalf("fresh state has steps: %v", st.Steps)
	}
	st.Steps["volume"] = &Record{Status: Succeeded, Fingerprint: "abc", Attempts: 2,
		Start: time.Unix(100, 0).UTC(), Duration: time.Second, Memo: map[string]string{"k": "v"}}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	r := got.Steps["volume"]
	if r == nil || r.Fingerprint != "abc" || r.Attempts != 2 || r.Memo["k"] != "v" || !r.Start.Equal(time.Unix(100, 0)) {
		t.Fatalf("round trip lost data: %+v", r)
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	for name, content := range map[string]string{
		"torn":    `{"version":1,"steps":{"vol`,
		"garbage": "\x00\x01not json",
		"version": `{"version":99,"steps":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := (&Store{Path: p}).Load()
			if err == nil {
				t.Fatal("corrupt state loaded without error")
			}
			if !strings.Contains(err.Error(), "move it aside") {
				t.Errorf("error does not say how to recover: %v", err)
			}
		})
	}
}
