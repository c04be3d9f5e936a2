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

// SnapshotTimeout bounds Prometheus' snapshot call. A request older than
// that is finished, whatever became of the backup that made it.
const SnapshotTimeout = 30 * time.Minute

// nameWindow bounds how long after a request was noted Prometheus can have
// named its snapshot: it takes the time when its handler starts.
const nameWindow = 5 * time.Minute

type ledger struct {
	path    string
	entries []string
}

// openLedger reads the ledger; an unreadable one is empty, with a warning.
func openLedger(o Options) *ledger {
	l := &ledger{path: filepath.Join(o.path(o.Config.StackDataDir()), ledgerFile)}
	b, err := os.ReadFile(l.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			o.Log.Warn("the snapshot ledger is unreadable: snapshots of killed backups may be left", zap.String("ledger", l.path), zap.Error(err))
		}
		return l
	}
	for _, e := range strings.Split(string(b), "\n") {
		if e != "" {
			l.entries = append(l.entries, e)
		}
	}
	return l
}

func (l *ledger) add(e string) { l.entries = append(l.entries, e) }

func (l *ledger) drop(e string) {
	if i := slices.Index(l.entries, e); i >= 0 {
		l.entries = slices.Delete(l.entries, i, i+1)
	}
}

// save writes the ledger durably: a note lost in a crash is a snapshot
// left for ever.
func (l *ledger) save(o Options) {
	var err error
	if len(l.entries) == 0 {
		err = os.Remove(l.path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	} else {
		err = atomicfile.WriteFile(l.path, []byte(strings.Join(l.entries, "\n")+"\n"), 0o600)
	}
	if err != nil {
		o.Log.Warn("the snapshot ledger is not written: a snapshot may be left should this backup be killed", zap.String("ledger", l.path), zap.Error(err))
	}
}

// settle removes the snapshots of the entries that are finished, and takes
// those entries off: every "made" one, and a "requested" one when
// requestsDone (Prometheus made a later snapshot, and it makes one at a
// time) or when it is older than SnapshotTimeout. A request's snapshot is
// named by until, and is not except, this backup's own.
func (l *ledger) settle(o Options, requestsDone bool, until time.Time, except string) {
	var keep []string
	for _, e := range l.entries {
		if !settled(o, e, requestsDone, until, except) {
			keep = append(keep, e)
		}
	}
	l.entries = keep
}

// settled removes the snapshot of entry e; false keeps the entry for a
// later backup.
func settled(o Options, e string, requestsDone bool, until time.Time, except string) bool {
	var err error
	switch {
	case strings.HasPrefix(e, made):
		vol, name, _ := strings.Cut(strings.TrimPrefix(e, made), "/snapshots/")
		err = removeSnapshot(o, vol, name)
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
		if !requestsDone && o.now().Sub(from) < SnapshotTimeout {
			return false // Prometheus may still be making it
		}
		err = removeRequested(o, from, until, except)
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

// removeRequested removes the snapshots Prometheus named for a request
// noted at from: named at from or within nameWindow after it, by until,
// and not except.
func removeRequested(o Options, from, until time.Time, except string) error {
	data := o.path(o.Config.StackDataDir())
	vols, err := os.ReadDir(data)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vols {
		if !v.IsDir() || strings.HasPrefix(v.Name(), ".") {
			continue
		}
		dir := filepath.Join(data, v.Name(), "snapshots")
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			continue // none, or a link: Prometheus makes a directory
		}
		snaps, _ := os.ReadDir(dir)
		for _, s := range snaps {
			at, ok := snapshotTime(s.Name())
			if ok && !at.Before(from) && !at.After(from.Add(nameWindow)) && !at.After(until) && s.Name() != except {
				errs = append(errs, removeSnapshot(o, v.Name(), s.Name()))
			}
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
// the stack (a plain name, not a dot one) and a snapshot's name.
func checkPlace(vol, name string) error {
	if vol == "" || strings.ContainsAny(vol, `/\`) || strings.HasPrefix(vol, ".") {
		return fmt.Errorf("%w: %q is not a volume of the stack", errNotSnapshot, vol)
	}
	if _, ok := snapshotTime(name); !ok {
		return fmt.Errorf("%w: %q is not the name of a Prometheus snapshot", errNotSnapshot, name)
	}
	return nil
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
