package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped units parse cleanly with systemd's own verifier: a typo in a
// directive is only a warning to systemd, so any output fails the test.
func TestSystemdUnitsVerify(t *testing.T) {
	dir := t.TempDir()
	names := []string{"monagent.service", "monagent-reconcile.timer", "monagent-backup.service", "monagent-backup.timer"}
	shipped, _ := filepath.Glob("../../systemd/*")
	if len(shipped) != len(names) {
		t.Fatalf("systemd/ holds %v: verify every unit it ships", shipped)
	}
	var paths []string
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join("../../systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that ExecStart exists: point it at the built binary.
		unit := strings.ReplaceAll(string(b), "/usr/bin/monagent", bins.monagent)
		paths = append(paths, filepath.Join(dir, name))
		if err := os.WriteFile(paths[len(paths)-1], []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, name := range []string{"monagent.service", "monagent-backup.service"} {
		unit, _ := os.ReadFile(filepath.Join(dir, name))
		if !strings.Contains(string(unit), "\nKillMode=mixed\n") {
			t.Errorf("%s: a stop must reach monagent alone, which ends what it runs itself", name)
		}
		checkNoNamespaces(t, name, string(unit))
	}
	backup, _ := os.ReadFile(filepath.Join(dir, "monagent-backup.service"))
	if !strings.Contains(string(backup), " backup --config /etc/monagent/config.yaml\n") {
		t.Errorf("monagent-backup.service does not run monagent backup on the package's configuration:\n%s", backup)
	}
	unit, _ := os.ReadFile(filepath.Join(dir, "monagent.service"))
	// Exit 2 is bad configuration and 4 a permanent failure: systemd must
	// not restart into either forever.
	if !strings.Contains(string(unit), "\nRestartPreventExitStatus=2 4\n") || !strings.Contains(string(unit), "\nNotifyAccess=main\n") {
		t.Fatalf("unit lost its restart or notify policy:\n%s", unit)
	}
}

// checkNoNamespaces fails on anything that gives a unit a mount namespace
// of its own or hides devices: the mount must reach the host, and a backup
// or restore must see and swap the host's data (systemd.exec(5)).
func checkNoNamespaces(t *testing.T, name, unit string) {
	t.Helper()
	for _, line := range strings.Split(unit, "\n") {
		key, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch key {
		case "PrivateTmp", "PrivateMounts", "PrivateDevices", "ProtectSystem", "ProtectHome", "ReadOnlyPaths",
			"ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths",
			"MountFlags", "RootDirectory", "RootImage", "ProtectKernelModules", "ProtectKernelTunables",
			"ProtectControlGroups", "ProtectProc", "DevicePolicy", "DeviceAllow", "PrivateNetwork", "MountAPIVFS":
			t.Errorf("%s sets %s, which namespaces its mounts, hides devices or cuts it off from the host", name, line)
		}
	}
}
