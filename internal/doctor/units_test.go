package doctor

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const serviceUnit = `[Unit]
Description=monagent
[Service]
ExecStart=/usr/bin/monagent reconcile
# WantedBy=ignored.target in a comment
[Install]
WantedBy=multi-user.target
`

func TestInstallTargets(t *testing.T) {
	tests := []struct {
		unit string
		want []string
	}{
		{serviceUnit, []string{"multi-user.target.wants"}},
		{"[Install]\nWantedBy=timers.target other.target\nRequiredBy=x.target\n", []string{"timers.target.wants", "other.target.wants", "x.target.requires"}},
		{"[Service]\nWantedBy=not-install.target\n", nil},
	}
	for _, tt := range tests {
		if got := installTargets([]byte(tt.unit)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.unit, got, tt.want)
		}
	}
}

func TestUnit(t *testing.T) {
	const unit = "monagent.service"
	tests := []struct {
		name   string
		setup  func(t *testing.T, root string)
		status Status
		want   string
	}{
		{"not installed", func(*testing.T, string) {}, Fail, "not installed: no monagent.service in /etc/systemd/system"},
		{"installed, not enabled", func(t *testing.T, root string) {
			write(t, filepath.Join(root, "usr/lib/systemd/system", unit), serviceUnit)
		}, Fail, "not enabled: no link in ROOT/etc/systemd/system/multi-user.target.wants: systemctl enable monagent.service"},
		{"enabled from /usr/lib", func(t *testing.T, root string) {
			write(t, filepath.Join(root, "usr/lib/systemd/system", unit), serviceUnit)
			link(t, "/usr/lib/systemd/system/"+unit, filepath.Join(root, "etc/systemd/system/multi-user.target.wants", unit))
		}, OK, "ROOT/usr/lib/systemd/system/monagent.service, enabled (multi-user.target.wants)"},
		{"enabled from /etc", func(t *testing.T, root string) {
			write(t, filepath.Join(root, "etc/systemd/system", unit), serviceUnit)
			link(t, "/etc/systemd/system/"+unit, filepath.Join(root, "etc/systemd/system/multi-user.target.wants", unit))
		}, OK, "enabled"},
		{"masked", func(t *testing.T, root string) {
			write(t, filepath.Join(root, "usr/lib/systemd/system", unit), serviceUnit)
			link(t, "/dev/null", filepath.Join(root, "etc/systemd/system", unit))
		}, Fail, "masked (ROOT/etc/systemd/system/monagent.service links to /dev/null): systemctl unmask monagent.service"},
		{"no [Install]", func(t *testing.T, root string) {
			write(t, filepath.Join(root, "lib/systemd/system", unit), "[Service]\nExecStart=/bin/true\n")
		}, Fail, "has no [Install] WantedBy="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.setup(t, root)
			c := Unit(root, unit)
			want := strings.ReplaceAll(tt.want, "ROOT", root)
			if c.Name != "unit "+unit || c.Status != tt.status || !strings.Contains(c.Detail, want) {
				t.Fatalf("%+v\nwant status %d with %q", c, tt.status, want)
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, target, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}
