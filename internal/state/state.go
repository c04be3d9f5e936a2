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

	// afterTemp runs between writing the temp file and renaming it; tests
	// use it to crash the process at the worst moment.
	afterTemp func()
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

// Save writes st atomically: temp file, fsync, rename, fsync of the
// directory. The file is mode 0600.
func (s *Store) Save(st *State) error {
	st.Version = version
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return WriteFileAtomic(s.Path, append(b, '\n'), 0o600, s.afterTemp)
}

// WriteFileAtomic replaces path with data so that a reader, or a crash at
// any moment, sees either the old content or the new, never a mix. hook, if
// not nil, runs after the temp file is durable and before the rename.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode, hook func()) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := writeSync(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if hook != nil {
		hook()
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(dir)
}

func writeSync(f *os.File, data []byte, mode fs.FileMode) error {
	defer f.Close()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
