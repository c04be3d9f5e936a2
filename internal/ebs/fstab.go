package ebs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/monagent/monagent/internal/atomicfile"
)

// FstabEntry is the one fstab line the step owns.
type FstabEntry struct {
	UUID       string
	MountPoint string // as seen from the host's root, e.g. /data
	FSType     string
	Options    string // already including nofail (FstabOptions)
}

// Line renders the entry. Device names change across reboots, UUIDs do
// not; fsck pass 2 because the volume is not the root filesystem.
func (e FstabEntry) Line() string {
	return fmt.Sprintf("UUID=%s %s %s %s 0 2", e.UUID, escapeFstab(e.MountPoint), e.FSType, e.Options)
}

// FstabLine is one parsed line of fstab.
type FstabLine struct {
	Source, MountPoint, FSType, Options string
}

// UUID is the filesystem UUID the line names (UUID=... or a by-uuid
// path), or "".
func (l FstabLine) UUID() string {
	switch {
	case strings.HasPrefix(l.Source, "UUID="):
		return strings.Trim(strings.TrimPrefix(l.Source, "UUID="), `"'`)
	case strings.HasPrefix(l.Source, "/dev/disk/by-uuid/"):
		return strings.TrimPrefix(l.Source, "/dev/disk/by-uuid/")
	}
	return ""
}

// parseFstabLine reads the fields of a line that is not blank or a comment.
func parseFstabLine(line string) (FstabLine, bool) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return FstabLine{}, false
	}
	f := strings.Fields(t)
	if len(f) < 2 {
		return FstabLine{}, false
	}
	l := FstabLine{Source: unescapeOctal(f[0]), MountPoint: path.Clean(unescapeOctal(f[1]))}
	if len(f) > 2 {
		l.FSType = f[2]
	}
	if len(f) > 3 {
		l.Options = f[3]
	}
	return l, true
}

// FstabFor returns the first line of the fstab at path that mounts
// mountPoint, and whether there is one.
func FstabFor(fstabPath, mountPoint string) (FstabLine, bool, error) {
	b, err := os.ReadFile(fstabPath)
	if err != nil {
		return FstabLine{}, false, fmt.Errorf("read %s: %w", fstabPath, err)
	}
	for _, raw := range strings.Split(string(b), "\n") {
		if l, ok := parseFstabLine(raw); ok && l.MountPoint == path.Clean(mountPoint) {
			return l, true, nil
		}
	}
	return FstabLine{}, false, nil
}

// owns reports whether an fstab line is about the entry's mount point or
// its filesystem (by UUID), whatever device spelling it uses.
func (e FstabEntry) owns(line string) bool {
	l, ok := parseFstabLine(line)
	if !ok {
		return false
	}
	if l.MountPoint == path.Clean(e.MountPoint) {
		return true
	}
	uuid := l.UUID()
	return uuid != "" && strings.EqualFold(uuid, e.UUID)
}

// RenderFstab returns old with exactly one line for the entry: the first
// line about its mount point or UUID is replaced in place (kept byte for
// byte when its fields are already right), other such lines are dropped, and
// every other line is kept byte for byte. It returns old itself when
// nothing changes.
func RenderFstab(old []byte, e FstabEntry) []byte {
	want := e.Line()
	text := string(old)
	var lines []string
	if text != "" {
		lines = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	}
	out := make([]string, 0, len(lines)+1)
	placed, changed := false, false
	for _, l := range lines {
		switch {
		case !e.owns(l):
			out = append(out, l)
		case placed:
			changed = true
		case sameFields(l, want):
			out, placed = append(out, l), true
		default:
			out, placed, changed = append(out, want), true, true
		}
	}
	if !placed {
		out, changed = append(out, want), true
	}
	if !changed {
		return old
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

func sameFields(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	if len(fa) != len(fb) {
		return false
	}
	for i := range fa {
		if fa[i] != fb[i] {
			return false
		}
	}
	return true
}

// FstabConverged reports whether the fstab at path already has exactly the
// entry's line and no other line for its mount point or UUID.
func FstabConverged(path string, e FstabEntry) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("volume: read fstab: %w", err)
	}
	return err == nil && bytes.Equal(RenderFstab(old, e), old), nil
}

// UpdateFstab writes the entry into the fstab at path, atomically, and
// reports whether the file changed. An unchanged file is not written.
func UpdateFstab(path string, e FstabEntry) (bool, error) {
	old, err := os.ReadFile(path)
	mode, opts := fs.FileMode(0o644), atomicfile.Options{}
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return false, fmt.Errorf("volume: %w", err)
		}
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			opts.Owner = &atomicfile.Owner{UID: int(st.Uid), GID: int(st.Gid)}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("volume: read fstab: %w", err)
	}
	data := RenderFstab(old, e)
	if err == nil && bytes.Equal(data, old) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("volume: write fstab: %w", err)
	}
	if err := opts.WriteFile(path, data, mode); err != nil {
		return false, fmt.Errorf("volume: write fstab: %w", err)
	}
	return true, nil
}

// escapeFstab escapes what would split an fstab field.
func escapeFstab(s string) string {
	r := strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`)
	return r.Replace(s)
}
