package dr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/atomicfile"
)

// A Prometheus snapshot holds hard links to the TSDB's blocks: left
// behind, it keeps deleted blocks on the disk for ever. A backup killed,
// stopped or timed out after asking for one cannot remove it, and
// Prometheus goes on making it all the same. So every snapshot a backup
// asks for is first written in a ledger on the data volume, and taken off
// only once it is removed; each backup settles what earlier ones left.
const ledgerFile = ".monagent-snapshots"

// Ledger entries: "requested TIME" while Prometheus is asked (the name it
// gives is not known yet), then "made VOLUME/snapshots/NAME".
const (
	requested = "requested "
	made      = "made "
)

// SnapshotTimeout bounds the wait for Prometheus' snapshot call. Only the
// wait: Prometheus goes on making a snapshot its client gave up on.
const SnapshotTimeout = 30 * time.Minute

// nameWindow bounds how long after a request was noted Prometheus can have
// named its snapshot: it takes the time when its handler starts.
const nameWindow = 5 * time.Minute

type ledger struct {
	path    string
	entries []string
}

// openLedger reads the ledger. An unreadable one is an error: written
// over, it would lose the entries it holds.
func openLedger(o Options) (*ledger, error) {
	l := &ledger{path: filepath.Join(o.path(o.Config.StackDataDir()), ledgerFile)}
	b, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the snapshot ledger: %w", err)
	}
	for _, e := range strings.Split(string(b), "\n") {
		if e != "" {
			l.entries = append(l.entries, e)
		}
	}
	return l, nil
}

func (l *ledger) add(e string) { l.entries = append(l.entries, e) }

func (l *ledger) drop(e string) {
	if i := slices.Index(l.entries, e); i >= 0 {
		l.entries = slices.Delete(l.entries, i, i+1)
	}
}

// save writes the ledger durably: a note lost in a crash is a snapshot
// left for ever.
func (l *ledger) save() error {
	if len(l.entries) == 0 {
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the snapshot ledger: %w", err)
		}
		return nil
	}
	if err := atomicfile.WriteFile(l.path, []byte(strings.Join(l.entries, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("the snapshot ledger: %w", err)
	}
	return nil
}

// settle removes the snapshots of the entries that are finished, and takes
// those entries off: every "made" one; the "requested" ones only once
// requestsDone, when Prometheus has made a later snapshot (it makes one at
// a time), of volume vol. A request's snapshot is named by until, and is
// not except, this backup's own.
func (l *ledger) settle(o Options, requestsDone bool, vol string, until time.Time, except string) {
	var keep []string
	for _, e := range l.entries {
		if !settled(o, e, requestsDone, vol, until, except) {
			keep = append(keep, e)
		}
	}
	l.entries = keep
}

// settled removes the snapshot of entry e; false keeps the entry for a
// later backup.
func settled(o Options, e string, requestsDone bool, vol string, until time.Time, except string) bool {
	var err error
	switch {
	case strings.HasPrefix(e, made):
		v, name, _ := strings.Cut(strings.TrimPrefix(e, made), "/snapshots/")
		err = removeSnapshot(o, v, name)
		if errors.Is(err, errNotSnapshot) {
			o.Log.Warn("a snapshot ledger entry names no snapshot of the stack: dropped", zap.String("entry", e), zap.Error(err))
			return true
		}
	case strings.HasPrefix(e, requested):
		from, perr := time.Parse(time.RFC3339, strings.TrimPrefix(e, requested))
		if perr != nil {
			o.Log.Warn("an unreadable snapshot ledger entry: dropped", zap.String("entry", e), zap.Error(perr))
			return true
		}
		if !requestsDone {
			return false // Prometheus may still be making it
		}
		err = removeRequested(o, vol, from, until, except)
	default:
		o.Log.Warn("an unknown snapshot ledger entry: dropped", zap.String("entry", e))
		return true
	}
	if err != nil {
		o.Log.Warn("a snapshot left by an earlier backup is not removed yet", zap.String("entry", e), zap.Error(err))
		return false
	}
	return true
}

// removeRequested removes the snapshots of volume vol Prometheus named for
// a request noted at from: named at from or within nameWindow after it, by
// until, and not except.
func removeRequested(o Options, vol string, from, until time.Time, except string) error {
	dir := filepath.Join(o.path(o.Config.StackDataDir()), vol, "snapshots")
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return nil // none, or a link: Prometheus makes a directory
	}
	snaps, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range snaps {
		at, ok := snapshotTime(s.Name())
		if ok && !at.Before(from) && !at.After(from.Add(nameWindow)) && !at.After(until) && s.Name() != except {
			errs = append(errs, removeSnapshot(o, vol, s.Name()))
		}
	}
	return errors.Join(errs...)
}

// removeSnapshot deletes snapshot name of volume vol, through an os.Root on
// the data directory: the names come from a file on the data volume and
// from Prometheus, and a link in the volume (its container's to write)
// must not lead root's removal elsewhere.
func removeSnapshot(o Options, vol, name string) error {
	if err := checkPlace(vol, name); err != nil {
		return err
	}
	root, err := os.OpenRoot(o.path(o.Config.StackDataDir()))
	if err != nil {
		return err
	}
	defer root.Close()
	rel := filepath.Join(vol, "snapshots", name)
	if err := root.RemoveAll(rel); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", rel, err)
	}
	o.Log.Info("Prometheus snapshot removed", zap.String("snapshot", rel))
	return nil
}

var errNotSnapshot = errors.New("not a snapshot's place")

// checkPlace refuses what is not a snapshot's place: a named volume of
// the stack (a plain name, not a dot one) and one plain name in it.
func checkPlace(vol, name string) error {
	if !plainName(vol) || strings.HasPrefix(vol, ".") {
		return fmt.Errorf("%w: %q is not a volume of the stack", errNotSnapshot, vol)
	}
	if !plainName(name) {
		return fmt.Errorf("%w: %q is not the name of a snapshot", errNotSnapshot, name)
	}
	return nil
}

// plainName is one path element naming a file, not a directory's . or ..
// (nor a glob pattern).
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\*?[")
}

// snapshotTime is the time in the name Prometheus gives a snapshot,
// 20060102T150405Z-<hex>; ok is false for any other name.
func snapshotTime(name string) (time.Time, bool) {
	stamp, random, ok := strings.Cut(name, "-")
	if !ok || len(random) == 0 || len(random) > 32 || strings.Trim(random, "0123456789abcdef") != "" {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z0700", stamp)
	return t, err == nil && len(stamp) == len("20060102T150405Z")
}
