// Package state persists what each step last did, so that a converged step
// is skipped on the next run. The file is replaced atomically; a torn or
// corrupt file is reported, never silently reset.
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
)

// Status of a step's last run.
type Status string

const (
	Succeeded   Status = "succeeded"
	Failed      Status = "failed"
	Interrupted Status = "interrupted"
	Running     Status = "running"
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
	Memo        map[string]string `json:"memo,omitempty"`
}

// State is the whole file.
type State struct {
	Version int                `json:"version"`
	LastRun time.Time          `json:"last_run,omitempty"`
	Steps   map[string]*Record `json:"steps"`
}

const version = 1

// Store reads and writes the state file at Path.
type Store struct {
	Path string
}

// Load reads the state. A missing file is an empty state.
func (s *Store) Load() (*State, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: version, Steps: map[string]*Record{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.Path, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt (%v); monagent will not guess what it held: "+
			"move it aside (mv %s %s.bad) and run again, every step is then checked against the host", s.Path, err, s.Path, s.Path)
	}
	if st.Version != version {
		return nil, fmt.Errorf("state file %s has version %d, this monagent reads version %d: "+
			"move it aside and run again", s.Path, st.Version, version)
	}
	if st.Steps == nil {
		st.Steps = map[string]*Record{}
	}
	return &st, nil
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
