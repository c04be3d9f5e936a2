package cfnsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateVersion is the format of the state file; bump it on an
// incompatible change so that an old file is refused, not misread.
const stateVersion = 1

type state struct {
	Version int      `json:"version"`
	Stacks  []*stack `json:"stacks"`
}

func encodeState(stacks []*stack) ([]byte, error) {
	b, err := json.MarshalIndent(state{Version: stateVersion, Stacks: stacks}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding CloudFormation state: %w", err)
	}
	return b, nil
}

// load reads the state file; a missing file is an empty simulator.
func load(path string) ([]*stack, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cfnsim: reading state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("cfnsim: state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("cfnsim: state file %s has version %d, want %d", path, st.Version, stateVersion)
	}
	return st.Stacks, nil
}

// writeFileAtomic replaces path with data so that a crash leaves the old
// file or the new one, never a torn one.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
