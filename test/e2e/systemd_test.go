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
	for _, name := range []string{"monagent.service", "monagent-reconcile.timer"} {
		b, err := os.ReadFile(filepath.Join("../../systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that ExecStart exists: point it at the built binary.
		unit := strings.ReplaceAll(string(b), "/usr/bin/monagent", bins.monagent)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("systemd-analyze", "verify",
		filepath.Join(dir, "monagent.service"), filepath.Join(dir, "monagent-reconcile.timer")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	unit, _ := os.ReadFile(filepath.Join(dir, "monagent.service"))
	// Exit 2 is bad configuration and 4 a permanent failure: systemd must
	// not restart into either forever.
	if !strings.Contains(string(unit), "\nRestartPreventExitStatus=2 4\n") || !strings.Contains(string(unit), "\nNotifyAccess=main\n") ||
		!strings.Contains(string(unit), "\nKillMode=mixed\n") {
		t.Fatalf("unit lost its restart or notify policy:\n%s", unit)
	}
	// Nothing that gives the unit a mount namespace of its own or hides
	// devices: the mount must reach the host (systemd.exec(5)).
	for _, line := range strings.Split(string(unit), "\n") {
		key, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch key {
		case "PrivateTmp", "PrivateMounts", "PrivateDevices", "ProtectSystem", "ProtectHome", "ReadOnlyPaths",
			"ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths",
			"MountFlags", "RootDirectory", "RootImage", "ProtectKernelModules", "ProtectKernelTunables",
			"ProtectControlGroups", "ProtectProc", "DevicePolicy", "DeviceAllow", "PrivateNetwork", "MountAPIVFS":
			t.Errorf("the unit sets %s, which namespaces its mounts, hides devices or cuts it off from the host", line)
		}
	}
}
