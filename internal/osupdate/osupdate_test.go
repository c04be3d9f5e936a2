package osupdate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monagent/monagent/internal/command"
)

// fakeManagers puts stand-ins for the package managers on PATH: a real
// upgrade of the test machine is not something a test may do. Each records
// its argv and DEBIAN_FRONTEND.
func fakeManagers(t *testing.T) (log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	for _, n := range []string{"dnf", "apt-get"} {
		script := "#!/bin/sh\necho \"$0 $* env=$DEBIAN_FRONTEND\" >>" + log + "\n"
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)           // nothing else: the real managers must never run
	t.Setenv("DEBIAN_FRONTEND", "") // only what the step sets counts
	return log
}

func TestStep(t *testing.T) {
	tests := []struct {
		name      string
		enabled   bool
		osRelease string
		want      []string // lines of argv, program base names
		wantErr   string
	}{
		{"off: nothing runs", false, "ID=amzn\n", nil, ""},
		{"dnf on Amazon Linux 2023", true, "NAME=\"Amazon Linux\"\nID=\"amzn\"\nID_LIKE=\"fedora\"\n", []string{"dnf -y update env="}, ""},
		{"dnf on Rocky, by ID_LIKE", true, "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", []string{"dnf -y update env="}, ""},
		{"apt on Debian, noninteractive, keeping config files", true, "ID=debian\n", []string{
			"apt-get -q update env=noninteractive",
			"apt-get -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade env=noninteractive"}, ""},
		{"unknown OS", true, "ID=arch\n", nil, `names "arch"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := fakeManagers(t)
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "etc", "os-release"), []byte(tt.osRelease), 0o644); err != nil {
				t.Fatal(err)
			}
			s := &Step{Enabled: tt.enabled, Root: root, Run: command.Exec{}}
			ctx := context.Background()
			err := s.Apply(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "packages.update: false") {
					t.Fatalf("err %v, want %q and the way out", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(log)
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if l != "" {
					got = append(got, filepath.Base(strings.Fields(l)[0])+strings.TrimPrefix(l, strings.Fields(l)[0]))
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("ran %q, want %q", got, tt.want)
			}
			if ok, _ := s.Check(ctx); !ok {
				t.Fatal("not converged after Apply")
			}
			// The memo carries "done" to the next run: no second upgrade.
			next := &Step{Enabled: tt.enabled}
			next.Restore(s.Memo())
			if ok, _ := next.Check(ctx); !ok {
				t.Fatal("next run would update again")
			}
		})
	}
}
