package pkgmgr

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monagent/monagent/internal/command"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name      string
		osRelease string // "-": no file
		want      Family
		errWant   []string
	}{
		{"amazon linux 2023", "NAME=\"Amazon Linux\"\nVERSION=\"2023\"\nID=\"amzn\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"2023\"\nPLATFORM_ID=\"platform:al2023\"\n", Dnf, nil},
		{"rhel", "NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\n", Dnf, nil},
		{"rocky, rhel-like", "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", Dnf, nil},
		{"oracle, known only by ID_LIKE", "ID=\"ol\"\nID_LIKE=\"fedora\"\n", Dnf, nil},
		{"almalinux", "ID=almalinux\nID_LIKE='rhel centos fedora'\n", Dnf, nil},
		{"fedora", "ID=fedora\n", Dnf, nil},
		{"debian", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n", Apt, nil},
		{"ubuntu", "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n", Apt, nil},
		{"mint, ubuntu-like", "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", Apt, nil},
		{"raspbian, debian-like", "ID=raspbian\nID_LIKE=debian\n", Apt, nil},
		{"indented lines", "  ID=debian  \n", Apt, nil},
		{"unknown", "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.0\n", "", []string{`"alpine"`, "os-release", "apt", "dnf"}},
		{"unknown with ID_LIKE", "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n", "", []string{`"opensuse-leap suse opensuse"`}},
		{"ID only in other keys", "VERSION_ID=debian\nPLATFORM_ID=\"platform:al2023\"\nNAME=ubuntu\n", "", []string{"os-release"}},
		{"no ID", "NAME=Something\n", "", []string{`""`}},
		{"no file", "-", "", []string{"os-release", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.osRelease != "-" {
				if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, "etc", "os-release"), []byte(tt.osRelease), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			run := &command.Exec{}
			m, err := Detect(root, run)
			if tt.errWant != nil {
				if err == nil {
					t.Fatalf("Detect = %+v, want an error", m)
				}
				for _, w := range append(tt.errWant, filepath.Join(root, "etc", "os-release")) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Family != tt.want || m.Run != run {
				t.Errorf("Detect = %+v, want family %s with the runner", m, tt.want)
			}
		})
	}
}

func TestDockerPackage(t *testing.T) {
	for f, want := range map[Family]string{Apt: "docker.io", Dnf: "docker"} {
		if got := (&Manager{Family: f}).DockerPackage(); got != want {
			t.Errorf("%s: DockerPackage() = %q, want %q", f, got, want)
		}
	}
}

// standIns puts scripts on a PATH of their own: each logs its name, its
// arguments and DEBIAN_FRONTEND, one line, then runs its body. It returns
// a function that reads the log.
func standIns(t *testing.T, scripts map[string]string) func() []string {
	t.Helper()
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "log")
	for name, body := range scripts {
		s := "#!/bin/sh\nprintf '%s' \"" + name + "\" >> " + log + "\n" +
			"for a in \"$@\"; do printf ' %s' \"$a\" >> " + log + "; done\n" +
			"printf ' [DEBIAN_FRONTEND=%s]\\n' \"$DEBIAN_FRONTEND\" >> " + log + "\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	t.Setenv("DEBIAN_FRONTEND", "")
	return func() []string {
		t.Helper()
		b, err := os.ReadFile(log)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
}

func TestInstalled(t *testing.T) {
	tests := []struct {
		name    string
		family  Family
		scripts map[string]string
		want    bool
		err     bool
		argv    string
	}{
		{"apt installed", Apt, map[string]string{"dpkg-query": "printf installed"}, true, false,
			"dpkg-query -W -f ${db:Status-Status} docker.io [DEBIAN_FRONTEND=]"},
		{"apt removed, config files left", Apt, map[string]string{"dpkg-query": "printf config-files"}, false, false, ""},
		{"apt half installed", Apt, map[string]string{"dpkg-query": "printf half-installed"}, false, false, ""},
		{"apt unknown package", Apt, map[string]string{"dpkg-query": "echo 'dpkg-query: no packages found matching docker.io' >&2; exit 1"}, false, false, ""},
		{"apt without dpkg-query", Apt, map[string]string{}, false, true, ""},
		{"dnf installed", Dnf, map[string]string{"rpm": "echo docker-25.0.6-1.amzn2023.0.2.x86_64"}, true, false,
			"rpm -q docker [DEBIAN_FRONTEND=]"},
		{"dnf not installed", Dnf, map[string]string{"rpm": "echo 'package docker is not installed'; exit 1"}, false, false, ""},
		{"dnf without rpm", Dnf, map[string]string{}, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := standIns(t, tt.scripts)
			m := &Manager{Family: tt.family, Run: command.Exec{}}
			pkg := m.DockerPackage()
			got, err := m.Installed(context.Background(), pkg)
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), "is "+pkg+" installed") {
					t.Errorf("Installed = %v, %v; want an error naming %s", got, err, pkg)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Installed = %v, %v; want %v", got, err, tt.want)
			}
			if tt.argv != "" {
				if l := log(); len(l) != 1 || l[0] != tt.argv {
					t.Errorf("ran %q, want %q", l, tt.argv)
				}
			}
		})
	}
}

func TestInstall(t *testing.T) {
	const aptInstall = "apt-get -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install"
	tests := []struct {
		name    string
		family  Family
		scripts map[string]string
		pkgs    []string
		want    []string
		errWant string
	}{
		{"apt", Apt, map[string]string{"apt-get": ""}, []string{"docker.io"},
			[]string{"apt-get -q update [DEBIAN_FRONTEND=noninteractive]", aptInstall + " docker.io [DEBIAN_FRONTEND=noninteractive]"}, ""},
		{"apt, several", Apt, map[string]string{"apt-get": ""}, []string{"docker.io", "xfsprogs"},
			[]string{"apt-get -q update [DEBIAN_FRONTEND=noninteractive]", aptInstall + " docker.io xfsprogs [DEBIAN_FRONTEND=noninteractive]"}, ""},
		{"apt, update fails", Apt, map[string]string{"apt-get": "echo 'E: mirror down' >&2; exit 100"}, []string{"docker.io"},
			[]string{"apt-get -q update [DEBIAN_FRONTEND=noninteractive]"}, "mirror down"},
		{"apt, install fails", Apt, map[string]string{"apt-get": "[ \"$2\" = update ] || { echo 'E: Unable to locate package' >&2; exit 100; }"}, []string{"docker.io"},
			[]string{"apt-get -q update [DEBIAN_FRONTEND=noninteractive]", aptInstall + " docker.io [DEBIAN_FRONTEND=noninteractive]"}, "Unable to locate package"},
		{"dnf", Dnf, map[string]string{"dnf": ""}, []string{"docker"},
			[]string{"dnf -y install docker [DEBIAN_FRONTEND=]"}, ""},
		{"dnf fails", Dnf, map[string]string{"dnf": "echo 'Error: Unable to find a match: docker' >&2; exit 1"}, []string{"docker"},
			[]string{"dnf -y install docker [DEBIAN_FRONTEND=]"}, "Unable to find a match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := standIns(t, tt.scripts)
			m := &Manager{Family: tt.family, Run: command.Exec{}}
			err := m.Install(context.Background(), tt.pkgs...)
			switch {
			case tt.errWant == "" && err != nil:
				t.Errorf("Install: %v", err)
			case tt.errWant != "" && (err == nil || !strings.Contains(err.Error(), tt.errWant) ||
				!strings.Contains(err.Error(), "install "+strings.Join(tt.pkgs, " "))):
				t.Errorf("Install: %v; want an error naming the packages and saying %q", err, tt.errWant)
			}
			if got := log(); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("ran\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestUpgrade(t *testing.T) {
	tests := []struct {
		family  Family
		scripts map[string]string
		want    []string
	}{
		{Apt, map[string]string{"apt-get": ""}, []string{"apt-get -q update [DEBIAN_FRONTEND=noninteractive]",
			"apt-get -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade [DEBIAN_FRONTEND=noninteractive]"}},
		{Dnf, map[string]string{"dnf": ""}, []string{"dnf -y update [DEBIAN_FRONTEND=]"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.family), func(t *testing.T) {
			log := standIns(t, tt.scripts)
			if err := (&Manager{Family: tt.family, Run: command.Exec{}}).Upgrade(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := log(); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("ran %q, want %q", got, tt.want)
			}
		})
	}
}
