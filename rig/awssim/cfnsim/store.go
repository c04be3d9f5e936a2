package cfnsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
