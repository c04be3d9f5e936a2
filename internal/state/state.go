// Package state persists what each step last did, so that a converged step
// is skipped on the next run. The file is replaced atomically. A file that
// cannot be read back is moved aside, never silently overwritten: the
// steps re-check the host, so losing the history costs only time.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/retry"
)

// Status of a step's last run.
type Status string

const (
	Succeeded   Status = "succeeded"
	Failed      Status = "failed"
	Interrupted Status = "interrupted"
)

// Record is one step's history.
type Record struct {
	Status      Status            `json:"status"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	Attempts    int               `json:"attempts"`
	Start       time.Time         `json:"start"`
	Duration    time.Duration     `json:"duration_ns"`
	LastError   string            `json:"last_error,omitempty"`
	LastSuccess time.Time         `json:"last_success,omitempty"`
	Skipped     bool              `json:"skipped,omitempty"`
	Warning     string            `json:"warning,omitempty"`
	Memo        map[string]string `json:"memo,omitempty"`
}

// State is the whole file.
type State struct {
	Version int       `json:"version"`
	LastRun time.Time `json:"last_run,omitempty"`
	Mode    string    `json:"mode,omitempty"`
	// InstanceID is the instance of the last run: a replaced instance
	// starts with a fresh root disk, so a different one is a restored disk.
	InstanceID string             `json:"instance_id,omitempty"`
	Steps      map[string]*Record `json:"steps"`
}

const version = 1

// Store reads and writes the state file at Path.
type Store struct {
	Path string
	// Now stamps the name of a file moved aside; nil means time.Now.
	Now func() time.Time
}

// CorruptError is a state file that cannot be read back.
type CorruptError struct {
	Path  string
	Cause error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s cannot be read back (%v); the next run moves it aside and checks every step against the host",
		e.Path, e.Cause)
}

func (e *CorruptError) Unwrap() error { return e.Cause }

// Empty is the state of a host monagent has never run on.
func Empty() *State { return &State{Version: version, Steps: map[string]*Record{}} }

// Load reads the state without changing anything. A missing file is an
// empty state; one that does not parse is a *CorruptError.
func (s *Store) Load() (*State, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Empty(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.Path, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, &CorruptError{Path: s.Path, Cause: err}
	}
	if st.Version > version {
		// Written by a newer monagent: not corrupt, and not ours to discard.
		return nil, retry.PermanentError(fmt.Errorf("state file %s has version %d, written by a newer monagent; this one reads version %d: "+
			"install that newer monagent again, or move the file aside (its step history is lost, the host is checked afresh)", s.Path, st.Version, version))
	}
	if st.Version != version {
		return nil, &CorruptError{Path: s.Path, Cause: fmt.Errorf("version %d, this monagent reads version %d", st.Version, version)}
	}
	if st.Steps == nil {
		st.Steps = map[string]*Record{}
	}
	return &st, nil
}

// Recovered says where Open moved a state file it could not read.
type Recovered struct {
	MovedTo string
	Cause   error
}

// Open is Load for a run: a corrupt file is moved aside to
// <path>.corrupt-<timestamp> (mode 0600) and an empty state returned,
// with a *Recovered that the caller logs.
func (s *Store) Open() (*State, *Recovered, error) {
	st, err := s.Load()
	var ce *CorruptError
	if !errors.As(err, &ce) {
		return st, nil, err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	aside := fmt.Sprintf("%s.corrupt-%s", s.Path, now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Chmod(s.Path, 0o600); err != nil {
		return nil, nil, fmt.Errorf("%w; and it cannot be moved aside: %w", ce, err)
	}
	if err := os.Rename(s.Path, aside); err != nil {
		return nil, nil, fmt.Errorf("%w; and it cannot be moved aside: %w", ce, err)
	}
	return Empty(), &Recovered{MovedTo: aside, Cause: ce.Cause}, nil
}

// Save writes st atomically (see package atomicfile), mode 0600, creating
// its directory mode 0700: the file is monagent's own.
func (s *Store) Save(st *State) error {
	st.Version = version
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(s.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := atomicfile.WriteFile(s.Path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
