package doctor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/docker"
)

const stackCompose = `services:
  grafana:
    image: grafana/grafana
    environment:
      - GF_SECURITY_ADMIN_USER=${GRAFANA_ADMIN_USER}
      - GF_SECURITY_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-admin}
  github-actions-exporter:
    image: exporter
    environment:
      - GITHUB_TOKEN=${GITHUB_TOKEN}
`

func TestDotEnv(t *testing.T) {
	tests := []struct {
		name    string
		compose string // "" for none
		env     *string
		status  Status
		want    []string
	}{
		{"no compose file", "", nil, Fail, []string{"the compose file ROOT/opt/monitoring/docker-compose.yml does not exist", "--only bundle"}},
		{"no .env", stackCompose, nil, Fail, []string{"ROOT/opt/monitoring/.env does not exist: `monagent reconcile --only env`"}},
		{"every key, the token absent", stackCompose, ptr("GRAFANA_ADMIN_USER=admin\nGRAFANA_ADMIN_PASSWORD='pa ss'\n"), OK,
			[]string{"(2 keys) sets every variable docker-compose.yml needs (left out for an absent optional value: github-actions-exporter)"}},
		{"a key of the configuration missing", stackCompose, ptr("GRAFANA_ADMIN_USER=admin\n"), Fail,
			[]string{".env lacks GRAFANA_ADMIN_PASSWORD, which env.GRAFANA_ADMIN_PASSWORD puts there: `monagent reconcile --only env` rewrites it"}},
		{"a variable the compose file needs missing", strings.Replace(stackCompose, "${GRAFANA_ADMIN_PASSWORD:-admin}", "${GF_SERVER_URL}", 1),
			ptr("GRAFANA_ADMIN_USER=admin\nGRAFANA_ADMIN_PASSWORD=pw\n"), Fail,
			[]string{"service grafana reads ${GF_SERVER_URL}, which has no value in .env and no default in the compose file: add it to env in the configuration"}},
		{"an unread key", stackCompose, ptr("GRAFANA_ADMIN_USER=admin\nGRAFANA_ADMIN_PASSWORD=pw\nSTALE=old-secret\n"), Warn,
			[]string{".env key STALE is read by no service"}},
		{"unparsable", stackCompose, ptr("GRAFANA_ADMIN_PASSWORD='open\n"), Fail, []string{"does not parse as Compose reads it"}},
	}
	c := config.Defaults()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "opt/monitoring")
			if tt.compose != "" {
				write(t, filepath.Join(dir, "docker-compose.yml"), tt.compose)
			}
			if tt.env != nil {
				write(t, filepath.Join(dir, ".env"), *tt.env)
			}
			var secrets secretList
			got := DotEnv(context.Background(), root, c, &secrets)
			if got.Name != ".env" || got.Status != tt.status {
				t.Fatalf("%+v, want status %d", got, tt.status)
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "ROOT", root); !strings.Contains(got.Detail, w) {
					t.Errorf("%q lacks %q", got.Detail, w)
				}
			}
			if secrets.has("admin") {
				t.Error("the configuration's literal GRAFANA_ADMIN_USER was registered as a secret")
			}
			for _, v := range []string{"pa ss", "pw", "old-secret"} {
				if tt.env != nil && strings.Contains(*tt.env, v) && tt.status != Fail && !secrets.has(v) {
					t.Errorf("%q was not registered as a secret", v)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

// fakeRun answers `docker compose version --short`.
type fakeRun struct {
	out string
	err error
}

func (f fakeRun) Run(context.Context, command.Cmd) (command.Result, error) {
	return command.Result{Stdout: []byte(f.out)}, f.err
}

func TestComposePlugin(t *testing.T) {
	const content = "#!/bin/sh\n"
	sum := "sha of the content" // replaced below
	tests := []struct {
		name   string
		file   string // "" for none
		mode   os.FileMode
		run    fakeRun
		sha256 string
		status Status
		want   string
	}{
		{"missing", "", 0, fakeRun{}, "", Fail, "not installed: ROOT" + docker.PluginPath + " does not exist"},
		{"not executable", content, 0o644, fakeRun{}, "", Fail, "is not executable (mode -rw-r--r--)"},
		{"the CLI fails", content, 0o755, fakeRun{err: errors.New("unknown shorthand flag: 'd'")}, "", Fail, "`docker compose version` fails"},
		{"wrong version", content, 0o755, fakeRun{out: "v2.20.0\n"}, "", Fail,
			"`docker compose version` reports v2.20.0, want v5.6.0 (docker.compose_plugin.version)"},
		{"wrong checksum", content, 0o755, fakeRun{out: "5.6.0\n"}, "0000", Fail, "docker.compose_plugin.sha256 is 0000"},
		{"pinned", content, 0o755, fakeRun{out: "5.6.0\n"}, sum, OK, "v5.6.0 at ROOT" + docker.PluginPath + ", sha256 as pinned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, docker.PluginPath)
			if tt.file != "" {
				write(t, path, tt.file)
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			want := tt.sha256
			if want == sum {
				want, _ = docker.FileSHA256(path)
			}
			c := ComposePlugin(context.Background(), Plugin{Root: root, Run: tt.run,
				Config: config.ComposePlugin{Version: "v5.6.0", URL: "http://x/docker-compose", SHA256: want}})
			if w := strings.ReplaceAll(tt.want, "ROOT", root); c.Name != "compose plugin" || c.Status != tt.status || !strings.Contains(c.Detail, w) {
				t.Fatalf("%+v\nwant status %d with %q", c, tt.status, w)
			}
		})
	}
}

func TestStackDataNothingMounted(t *testing.T) {
	root := t.TempDir()
	c := StackData(context.Background(), root, config.Defaults(), nil)
	want := "nothing is mounted at " + root + "/data, so " + root + "/data/monitoring is on the root disk"
	if c.Status != Fail || !strings.Contains(c.Detail, want) {
		t.Fatalf("%+v, want a failure with %q", c, want)
	}
}

func TestSameFilesystem(t *testing.T) {
	dir := t.TempDir()
	if msg, err := sameFilesystem(filepath.Join(dir, "not-yet"), dir); msg != "" || err != nil {
		t.Errorf("a directory not made yet: %q %v", msg, err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if msg, err := sameFilesystem(sub, dir); msg != "" || err != nil {
		t.Errorf("a directory on the same filesystem: %q %v", msg, err)
	}
	if msg, err := sameFilesystem("/proc/self", dir); err != nil || !strings.Contains(msg, "not on the data volume mounted at "+dir) {
		t.Errorf("/proc: %q %v", msg, err)
	}
}
