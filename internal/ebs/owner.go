package ebs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
)

// Owner is a resolved uid and gid.
type Owner struct {
	UID, GID int
}

// LookupOwner resolves spec, "user", "user:group" or "uid:gid", against
// <root>/etc/passwd and <root>/etc/group. A user alone means its primary
// group. It does not use the C library so that --root is honoured.
func LookupOwner(root, spec string) (Owner, error) {
	user, group, hasGroup := strings.Cut(strings.TrimSpace(spec), ":")
	if user == "" || (hasGroup && group == "") {
		return Owner{}, fmt.Errorf("volume: owner %q: want user, user:group or uid:gid", spec)
	}
	var o Owner
	uid, err := strconv.Atoi(user)
	if err == nil && uid >= 0 {
		o.UID = uid
		if !hasGroup {
			ent, err := findEntry(filepath.Join(root, "etc", "passwd"), func(f []string) bool { return len(f) >= 4 && f[2] == user })
			if err != nil {
				return Owner{}, fmt.Errorf("volume: owner %q: no user with uid %d (give uid:gid): %w", spec, uid, err)
			}
			if o.GID, err = strconv.Atoi(ent[3]); err != nil {
				return Owner{}, fmt.Errorf("volume: owner %q: bad gid in passwd: %w", spec, err)
			}
		}
	} else {
		ent, err := findEntry(filepath.Join(root, "etc", "passwd"), func(f []string) bool { return len(f) >= 4 && f[0] == user })
		if err != nil {
			return Owner{}, fmt.Errorf("volume: owner %q: user %s: %w (create the user or change volume.owner)", spec, user, err)
		}
		if o.UID, err = strconv.Atoi(ent[2]); err != nil {
			return Owner{}, fmt.Errorf("volume: owner %q: bad uid in passwd: %w", spec, err)
		}
		if o.GID, err = strconv.Atoi(ent[3]); err != nil {
			return Owner{}, fmt.Errorf("volume: owner %q: bad gid in passwd: %w", spec, err)
		}
	}
	if !hasGroup {
		return o, nil
	}
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		o.GID = gid
		return o, nil
	}
	ent, err := findEntry(filepath.Join(root, "etc", "group"), func(f []string) bool { return len(f) >= 3 && f[0] == group })
	if err != nil {
		return Owner{}, fmt.Errorf("volume: owner %q: group %s: %w", spec, group, err)
	}
	if o.GID, err = strconv.Atoi(ent[2]); err != nil {
		return Owner{}, fmt.Errorf("volume: owner %q: bad gid in group: %w", spec, err)
	}
	return o, nil
}

var errNoEntry = errors.New("not found")

// findEntry returns the colon-separated fields of the first line of file
// that match.
func findEntry(file string, match func([]string) bool) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if fields := strings.Split(line, ":"); match(fields) {
			return fields, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w in %s", errNoEntry, file)
}

// owner resolves the configured owner; ok is false when none is set.
func (s *Step) owner() (o Owner, ok bool, err error) {
	if strings.TrimSpace(s.cfg.Owner) == "" {
		return Owner{}, false, nil
	}
	o, err = LookupOwner(s.root, s.cfg.Owner)
	return o, err == nil, err
}

// ownedBy reports whether path belongs to o.
func ownedBy(path string, o Owner) (bool, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return false, fmt.Errorf("volume: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("volume: no owner information for %s", path)
	}
	return int(st.Uid) == o.UID && int(st.Gid) == o.GID, nil
}

// ownerConverged reports whether the mount point has the configured owner
// (or none is configured).
func (s *Step) ownerConverged() (bool, error) {
	own, set, err := s.owner()
	if err != nil {
		// Apply reports it; here it is just drift.
		s.log.Info("mount point owner unknown", zap.Error(err))
		return false, nil
	}
	if !set {
		return true, nil
	}
	ok, err := ownedBy(s.mountDir(), own)
	if err == nil && !ok {
		s.log.Info("mount point owner differs", zap.String("owner", s.cfg.Owner))
	}
	return ok, err
}

// ensureOwner gives the mount point (the root of the mounted filesystem)
// to the configured owner. Only the directory itself: the services own
// what they write under it.
func (s *Step) ensureOwner() error {
	o, ok, err := s.owner()
	if err != nil || !ok {
		return err
	}
	dir := s.mountDir()
	if same, err := ownedBy(dir, o); err != nil || same {
		return err
	}
	if err := os.Lchown(dir, o.UID, o.GID); err != nil {
		return fmt.Errorf("volume: set owner of %s: %w", dir, err)
	}
	s.log.Info("mount point owner set", zap.String("mount_point", dir), zap.Int("uid", o.UID), zap.Int("gid", o.GID))
	return nil
}
