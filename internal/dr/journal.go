package dr

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/monagent/monagent/internal/atomicfile"
)

// Journal is the record of a restore under way: written before the first
// part is swapped in, updated after each, removed after the last. Each
// swap is atomic, but the parts are swapped one after another; a restore
// killed between two would leave a host with some parts from the archive
// and the others from before, which no reconcile may start a stack on.
type Journal struct {
	Archive string    `json:"archive"`
	Started time.Time `json:"started"`
	Parts   []string  `json:"parts"`
	Done    []string  `json:"done"`
	path    string
}

// Interrupted reads the journal at path: nil when there is none, that is
// when no restore was cut short.
func Interrupted(path string) (*Journal, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore journal: %w", err)
	}
	j := &Journal{path: path}
	if err := json.Unmarshal(b, j); err != nil || j.Archive == "" {
		// Unreadable is still a restore cut short.
		return &Journal{path: path}, nil
	}
	return j, nil
}

// Error says what the host is left with and the fix.
func (j *Journal) Error() string {
	var what string
	switch {
	case j.Archive == "":
		what = "a restore was cut short (its journal is unreadable)"
	case len(j.Done) == len(j.Parts):
		what = fmt.Sprintf("a restore of %s started %s swapped in every part but did not finish", j.Archive, j.Started.UTC().Format(time.RFC3339))
	default:
		done := "none"
		if len(j.Done) > 0 {
			done = strings.Join(j.Done, ", ")
		}
		what = fmt.Sprintf("a restore of %s started %s was cut short: %d of %d parts swapped in (%s), %d not",
			j.Archive, j.Started.UTC().Format(time.RFC3339), len(j.Done), len(j.Parts), done, len(j.Parts)-len(j.Done))
	}
	return what + fmt.Sprintf(": the stack is not started on a host in that state; run `monagent restore --from ARCHIVE` again, or remove %s to accept the host as it is", j.path)
}

func startJournal(path, archive string, parts []string, now time.Time) (*Journal, error) {
	j := &Journal{Archive: archive, Started: now, Parts: parts, Done: []string{}, path: path}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("restore journal: %w", err)
	}
	return j, j.save()
}

func (j *Journal) done(part string) error {
	j.Done = append(j.Done, part)
	return j.save()
}

func (j *Journal) save() error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(j.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("restore journal: %w", err)
	}
	return nil
}

// finish removes the journal once the swaps are durable: a crash must not
// keep the removal and lose a rename.
func (j *Journal) finish() error {
	syscall.Sync()
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("every part is in place, but the restore journal is not removed: %w; remove %s, then run `monagent reconcile`", err, j.path)
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
