package doctor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Units are monagent's systemd units: the boot run and the timer that
// repairs drift (what the seed's SSM association did, section 10 "SSM
// Association Not Triggering").
var Units = []string{"monagent.service", "monagent-reconcile.timer"}

// BackupTimer runs `monagent backup` daily; the operator enables it once
// backup.location is set.
const BackupTimer = "monagent-backup.timer"

// unitDirs are systemd's system unit directories, in its order of
// precedence: install.sh writes to /etc, the packages to /usr/lib (/lib on
// Debian).
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
	"/usr/lib/systemd/system", "/lib/systemd/system"}

// Unit asks whether unit is installed and enabled under root, from the
// files alone: its unit file in one of systemd's directories, not masked,
// and a link to it in the .wants (or .requires) directory of every target
// its [Install] section names, which is what `systemctl enable` makes.
// The files answer under --root too, where no systemd of that root runs.
func Unit(root, unit string) Check {
	name := "unit " + unit
	path, err := findUnit(root, unit)
	if err != nil {
		return Failed(name, err.Error())
	}
	if target, _ := os.Readlink(path); target == "/dev/null" {
		return Failed(name, fmt.Sprintf("masked (%s links to /dev/null): systemctl unmask %s && systemctl enable %s", path, unit, unit))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Failed(name, fmt.Sprintf("%v: reinstall the monagent package", err))
	}
	wanted := installTargets(b)
	if len(wanted) == 0 {
		return Failed(name, fmt.Sprintf("%s has no [Install] WantedBy=, so it cannot be enabled: reinstall the monagent package", path))
	}
	for _, w := range wanted {
		if !linked(root, w, unit) {
			return Failed(name, fmt.Sprintf("installed at %s but not enabled: no link in %s: systemctl enable %s",
				path, filepath.Join(root, unitDirs[0], w), unit))
		}
	}
	return Pass(name, fmt.Sprintf("%s, enabled (%s)", path, strings.Join(wanted, ", ")))
}

// findUnit returns the unit file systemd would load.
func findUnit(root, unit string) (string, error) {
	for _, d := range unitDirs {
		p := filepath.Join(root, d, unit)
		_, err := os.Lstat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	where := strings.Join(unitDirs, ", ")
	if root != "/" && root != "" {
		where += " under " + root
	}
	return "", fmt.Errorf("not installed: no %s in %s: install the monagent package (or packaging/install.sh), then systemctl enable %s", unit, where, unit)
}

// installTargets are the .wants and .requires directories [Install]
// names: "multi-user.target.wants" for WantedBy=multi-user.target.
func installTargets(unitFile []byte) []string {
	var out []string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unitFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if section != "[Install]" || !ok {
			continue
		}
		suffix := map[string]string{"WantedBy": ".wants", "RequiredBy": ".requires"}[strings.TrimSpace(k)]
		if suffix == "" {
			continue
		}
		for _, t := range strings.Fields(v) {
			out = append(out, t+suffix)
		}
	}
	return out
}

// linked reports whether dir (a .wants or .requires directory) holds a
// link to unit in any unit directory.
func linked(root, dir, unit string) bool {
	for _, d := range unitDirs {
		if _, err := os.Lstat(filepath.Join(root, d, dir, unit)); err == nil {
			return true
		}
	}
	return false
}
