package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/monagent/monagent/internal/retry"
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

// A corrupt file is an error to Load (status changes nothing) and is moved
// aside by Open (a run carries on with an empty state).
func TestCorruptStateIsMovedAside(t *testing.T) {
	for name, content := range map[string]string{
		"torn":    `{"version":1,"steps":{"vol`,
		"garbage": "\x00\x01not json",
		"version": `{"version":0,"steps":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			s := &Store{Path: p, Now: func() time.Time { return time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) }}
			var ce *CorruptError
			if _, err := s.Load(); !errors.As(err, &ce) {
				t.Fatalf("Load: want *CorruptError, got %v", err)
			}
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("Load moved the file: %v", err)
			}
			st, rec, err := s.Open()
			if err != nil {
				t.Fatal(err)
			}
			if rec == nil || len(st.Steps) != 0 {
				t.Fatalf("Open: recovered %+v, steps %v", rec, st.Steps)
			}
			want := p + ".corrupt-20261123T100000.000000000Z"
			if rec.MovedTo != want {
				t.Fatalf("moved to %s, want %s", rec.MovedTo, want)
			}
			b, err := os.ReadFile(want)
			if err != nil || string(b) != content {
				t.Fatalf("the corrupt content was not kept: %q %v", b, err)
			}
			if fi, _ := os.Stat(want); fi.Mode().Perm() != 0o600 {
				t.Fatalf("moved file mode %v, want 0600", fi.Mode().Perm())
			}
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupt file still in place: %v", err)
			}
			if rec.Cause == nil {
				t.Fatal("Recovered does not say what was wrong")
			}
		})
	}
}

// A state file written by a newer monagent is not corrupt: it is left in
// place, and the run stops with a permanent error saying what to do.
func TestNewerVersionIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(p, []byte(`{"version":99,"steps":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := (&Store{Path: p}).Open()
	if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "newer monagent") {
		t.Fatalf("Open = %v; want a permanent error", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the file was moved: %v", err)
	}
}
