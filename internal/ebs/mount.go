package ebs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/retry"
)

// The mounts of our mount namespace and of the host's init; mounts under
// a --root prefix are real mounts too, so these are never prefixed.
const (
	mountInfoPath     = "/proc/self/mountinfo"
	initMountInfoPath = "/proc/1/mountinfo"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Major, Minor uint32
	MountPoint   string
	FSType       string
	Source       string
}

// HostMountNamespace fails, permanently, when this process does not share
// the mount namespace of init (PID 1): a mount made here would then be
// private to the process and vanish with it, while the host has nothing at
// the mount point. systemd gives a unit such a namespace for PrivateTmp=,
// ProtectSystem=, PrivateDevices= and their kind. When neither test below
// can be made, nothing is refused.
func HostMountNamespace() error {
	same, known := sameMountNamespace()
	if !known || same {
		return nil
	}
	return retry.PermanentError(errors.New(
		"volume: monagent runs in a mount namespace of its own, not the host's: " +
			"a mount made here would never reach the host. Run it in the host's namespace: its systemd unit must not set " +
			"PrivateTmp=, PrivateMounts=, PrivateDevices=, ProtectSystem=, ProtectHome=, ReadOnlyPaths=, InaccessiblePaths=, " +
			"TemporaryFileSystem= or MountFlags=; by hand, nsenter -t 1 -m monagent ..."))
}

// sameMountNamespace compares our namespace with init's: the namespace
// files when they can be read, else the mount ids, which are unique across
// namespaces (two views of one namespace share them, a chroot included;
// another namespace has none in common).
func sameMountNamespace() (same, known bool) {
	mine, err1 := os.Stat("/proc/self/ns/mnt")
	host, err2 := os.Stat("/proc/1/ns/mnt")
	if err1 == nil && err2 == nil {
		return os.SameFile(mine, host), true
	}
	a, err1 := mountIDs(mountInfoPath)
	b, err2 := mountIDs(initMountInfoPath)
	if err1 != nil || err2 != nil || len(a) == 0 || len(b) == 0 {
		return false, false
	}
	for id := range a {
		if b[id] {
			return true, true
		}
	}
	return false, true
}

// mountIDs are the mount ids a mountinfo file lists.
func mountIDs(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok {
			ids[id] = true
		}
	}
	return ids, nil
}

// MountAt returns the topmost mount at dir, or nil when nothing is mounted
// there.
func MountAt(dir string) (*Mount, error) {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else {
		return nil, fmt.Errorf("volume: resolve %s: %w", dir, err)
	}
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	defer f.Close()
	var top *Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		m, ok := parseMountInfo(sc.Text())
		if ok && m.MountPoint == dir {
			top = &m // later lines are mounted on top of earlier ones
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("volume: read %s: %w", mountInfoPath, err)
	}
	return top, nil
}

// parseMountInfo reads "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3
// /dev/root rw,errors=continue" (proc(5)).
func parseMountInfo(line string) (Mount, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return Mount{}, false
	}
	f, g := strings.Fields(pre), strings.Fields(post)
	if len(f) < 5 || len(g) < 2 {
		return Mount{}, false
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return Mount{}, false
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return Mount{}, false
	}
	return Mount{
		Major: uint32(ma), Minor: uint32(mi),
		MountPoint: unescapeOctal(f[4]),
		FSType:     g[0],
		Source:     unescapeOctal(g[1]),
	}, true
}

// unescapeOctal undoes the \ooo escapes the kernel (mountinfo) and fstab
// use for space, tab, newline and backslash.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// deviceNumber returns the major and minor number of block device dev.
func deviceNumber(dev string) (uint32, uint32, error) {
	fi, err := os.Stat(dev)
	if err != nil {
		return 0, 0, fmt.Errorf("volume: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode()&fs.ModeDevice == 0 {
		return 0, 0, fmt.Errorf("volume: %s is not a device", dev)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
}

// mounted reports whether the mount point is mounted from dev. A mount
// from another device is reported as an error naming both.
func (s *Step) mounted(volID, dev string) (bool, error) {
	maj, min, err := deviceNumber(dev)
	if err != nil {
		return false, err
	}
	m, err := MountAt(s.mountDir())
	if err != nil || m == nil {
		return false, err
	}
	if m.Major == maj && m.Minor == min {
		return true, nil
	}
	return false, retry.PermanentError(fmt.Errorf(
		"volume: %s is already mounted from %s (%d:%d), not from %s's device %s (%d:%d); unmount it (umount %s) or choose another volume.mount_point",
		s.cfg.MountPoint, m.Source, m.Major, m.Minor, volID, dev, maj, min, s.mountDir()))
}

// ensureMounted mounts dev at the mount point unless it is mounted there.
func (s *Step) ensureMounted(ctx context.Context, volID, dev string) error {
	if ok, err := s.mounted(volID, dev); err != nil || ok {
		return err
	}
	dir := s.mountDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("volume: create mount point: %w", err)
	}
	// Files under an empty mount point would be hidden, not lost; say so.
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		s.log.Warn("mount point is not empty; its files are hidden while the volume is mounted",
			zap.String("mount_point", dir), zap.Int("entries", len(ents)))
	}
	if err := ctx.Err(); err != nil {
		return err // an uninterruptible mount must not start once stopped
	}
	cmd := command.Cmd{Name: "mount", Args: []string{"-t", s.cfg.FSType, "-o", MountOptions(s.cfg.MountOptions), dev, dir},
		Timeout: mountTimeout, Uninterruptible: true}
	if _, err := s.run.Run(ctx, cmd); err != nil {
		err = fmt.Errorf("volume: mount %s (%s) at %s: %w", volID, dev, dir, err)
		if corrupt(err) {
			// A damaged filesystem stays damaged however often the mount is
			// tried, and monagent never formats one that holds a signature.
			return retry.PermanentError(fmt.Errorf("%w; the filesystem needs repair, which monagent never does by itself: "+
				"%s, then run monagent reconcile", err, repairHint(s.cfg.FSType, dev)))
		}
		return err
	}
	ok, err := s.mounted(volID, dev)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("volume: mount reported success but %s is not mounted from %s", dir, dev)
	}
	s.log.Info("volume mounted", zap.String("volume_id", volID), zap.String("device", dev), zap.String("mount_point", dir))
	return nil
}

// MountOptions are the options given to mount(8): the configured ones
// without nofail, which only means something to fstab and systemd.
func MountOptions(opts string) string {
	var out []string
	for _, o := range splitOptions(opts) {
		if o != "nofail" {
			out = append(out, o)
		}
	}
	if len(out) == 0 {
		return "defaults"
	}
	return strings.Join(out, ",")
}

// FstabOptions are the configured options with nofail added: a missing
// volume must not drop the next boot into emergency mode.
func FstabOptions(opts string) string {
	out := splitOptions(opts)
	if len(out) == 0 {
		out = []string{"defaults"}
	}
	for _, o := range out {
		if o == "nofail" {
			return strings.Join(out, ",")
		}
	}
	return strings.Join(append(out, "nofail"), ",")
}

func splitOptions(opts string) []string {
	var out []string
	for _, o := range strings.Split(opts, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// corrupt reports whether a mount failed on a damaged filesystem: the
// kernel's EUCLEAN, "Structure needs cleaning".
func corrupt(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "structure needs cleaning")
}

func repairHint(fsType, dev string) string {
	if fsType == "xfs" {
		return fmt.Sprintf("look with xfs_repair -n %s, repair with xfs_repair %s", dev, dev)
	}
	return fmt.Sprintf("look with e2fsck -n %s, repair with e2fsck -f %s", dev, dev)
}
