package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/retry"
)

const sourceDir = "/usr/share/monagent/examples/acgs"

// localRig is a host root with a bundle source directory in it; no S3,
// no SSM.
type localRig struct {
	t    *testing.T
	root string
	keep []string // Options.Keep
	cfg  config.Bundle
}

func newLocalRig(t *testing.T, files map[string]string) *localRig {
	t.Helper()
	r := &localRig{t: t, root: t.TempDir(), keep: []string{".env"},
		cfg: config.Bundle{Source: sourceDir, Dir: stackDir}}
	if err := os.MkdirAll(r.src("."), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, body := range files {
		r.put(rel, body)
	}
	return r
}

func (r *localRig) src(rel string) string {
	return filepath.Join(r.root, sourceDir, filepath.FromSlash(rel))
}

func (r *localRig) path(rel string) string {
	return filepath.Join(r.root, stackDir, filepath.FromSlash(rel))
}

// put writes a source file.
func (r *localRig) put(rel, body string) {
	r.t.Helper()
	p := r.src(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
		r.t.Fatal(err)
	}
}

// write writes a file in the stack directory.
func (r *localRig) write(rel, body string) {
	r.t.Helper()
	p := r.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// step is a new run's step: no S3 client and no parameters, so any call
// to them panics.
func (r *localRig) step(memo map[string]string) *Step {
	s := New(Options{Root: r.root, Config: r.cfg, Keep: r.keep})
	s.Restore(memo)
	return s
}

// converge is one run that applies: Fingerprint, Check, Apply, Check.
func (r *localRig) converge(memo map[string]string) map[string]string {
	r.t.Helper()
	return applyRun(r.t, r.step(memo))
}

var acgsBundle = map[string]string{
	"docker-compose.yml":                              "services:\n  prometheus:\n    image: prom/prometheus\n",
	"prometheus/prometheus.yml":                       "global:\n  scrape_interval: 15s\n",
	"prometheus/web.yml.tmpl":                         "basic_auth_users:\n  acgs: {{ bcrypt \"PROMETHEUS_PASSWORD\" }}\n",
	"alertmanager/alertmanager.yml.tmpl":              "route: {receiver: default}\n",
	"grafana/provisioning/datasources/prometheus.yml": "apiVersion: 1\n",
	"grafana/dashboards/empty.json":                   "",
}

func TestLocalSourceInstall(t *testing.T) {
	r := newLocalRig(t, acgsBundle)
	s := r.step(nil)
	ctx := context.Background()
	fp, err := s.Fingerprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fp, sourceDir) {
		t.Errorf("Fingerprint %q does not name the source", fp)
	}
	if ok, err := s.Check(ctx); err != nil || ok {
		t.Fatalf("Check on an empty host = %v, %v; want false, nil", ok, err)
	}
	if err := s.Apply(ctx); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for rel, want := range acgsBundle {
		if got := readFile(t, r.path(rel)); got != want {
			t.Errorf("%s = %q, want %q", rel, got, want)
		}
		fi, err := os.Stat(r.path(rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %04o, want 0644", rel, fi.Mode().Perm())
		}
	}
	if ok, err := s.Check(ctx); err != nil || !ok {
		t.Fatalf("Check after Apply = %v, %v; want true", ok, err)
	}
	// Nothing is left beside the stack directory (staging) or in the source.
	if entries, _ := os.ReadDir(filepath.Dir(r.path("."))); len(entries) != 1 {
		t.Errorf("beside the stack directory: %v", entries)
	}
	if got := readFile(t, r.src("docker-compose.yml")); got != acgsBundle["docker-compose.yml"] {
		t.Errorf("the source was changed: %q", got)
	}
}

func TestLocalSourceRerunChangesNothing(t *testing.T) {
	r := newLocalRig(t, acgsBundle)
	memo := r.converge(nil)
	before := map[string]fileID{}
	for rel := range acgsBundle {
		before[rel] = idOf(t, r.path(rel))
	}
	s := r.step(memo)
	ctx := context.Background()
	if ok, err := s.Check(ctx); err != nil || !ok {
		t.Fatalf("Check of a converged host = %v, %v; want true", ok, err)
	}
	// The engine applies anyway when the fingerprint changed: still nothing.
	if err := s.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	for rel, id := range before {
		if got := idOf(t, r.path(rel)); got != id {
			t.Errorf("%s rewritten: %+v, was %+v", rel, got, id)
		}
	}
	if got := s.Memo()["files"]; got != memo["files"] {
		t.Errorf("memo changed:\n%s\nwas\n%s", got, memo["files"])
	}
}

func TestLocalSourceChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *localRig)
		want   map[string]string // rel -> content; "" with gone
		gone   []string
	}{
		{
			name:   "a file changed",
			change: func(r *localRig) { r.put("prometheus/prometheus.yml", "global:\n  scrape_interval: 30s\n") },
			want:   map[string]string{"prometheus/prometheus.yml": "global:\n  scrape_interval: 30s\n"},
		},
		{
			name:   "a file changed, same size",
			change: func(r *localRig) { r.put("prometheus/prometheus.yml", "global:\n  scrape_interval: 16s\n") },
			want:   map[string]string{"prometheus/prometheus.yml": "global:\n  scrape_interval: 16s\n"},
		},
		{
			name: "a file removed",
			change: func(r *localRig) {
				if err := os.Remove(r.src("grafana/provisioning/datasources/prometheus.yml")); err != nil {
					r.t.Fatal(err)
				}
			},
			gone: []string{"grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning"},
		},
		{
			name:   "a file added in a new directory",
			change: func(r *localRig) { r.put("loki/deep/nested/config.yml", "auth_enabled: false\n") },
			want:   map[string]string{"loki/deep/nested/config.yml": "auth_enabled: false\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newLocalRig(t, acgsBundle)
			memo := r.converge(nil)
			before := map[string]fileID{}
			for rel := range acgsBundle {
				before[rel] = idOf(t, r.path(rel))
			}
			tt.change(r)
			s := r.step(memo)
			ctx := context.Background()
			if ok, err := s.Check(ctx); err != nil || ok {
				t.Fatalf("Check after a change in the source = %v, %v; want false", ok, err)
			}
			if err := s.Apply(ctx); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.Check(ctx); err != nil || !ok {
				t.Fatalf("Check after Apply = %v, %v; want true", ok, err)
			}
			for rel, want := range tt.want {
				if got := readFile(t, r.path(rel)); got != want {
					t.Errorf("%s = %q, want %q", rel, got, want)
				}
			}
			for _, rel := range tt.gone {
				if _, err := os.Lstat(r.path(rel)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still in the stack directory: %v", rel, err)
				}
			}
			for rel, id := range before {
				if _, ok := tt.want[rel]; ok || contains(tt.gone, rel) {
					continue
				}
				if got := idOf(t, r.path(rel)); got != id {
					t.Errorf("unchanged %s was rewritten", rel)
				}
			}
		})
	}
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o644) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestLocalSourceKeptPathsUntouched(t *testing.T) {
	files := map[string]string{
		"docker-compose.yml":         "services: {}\n",
		".env":                       "FROM_SOURCE=1\n",
		"certs/prometheus.key":       "source key",
		"grafana/data/grafana.db":    "source db",
		"prometheus/web.yml":         "source render",
		"prometheus/web.yml.tmpl":    "template",
		"certs/prometheus.key.notes": "a sibling is not kept",
	}
	r := newLocalRig(t, files)
	r.keep = []string{".env", "certs/prometheus.key", "prometheus/web.yml"}
	r.cfg.Keep = []string{"grafana/data"}
	local := map[string]string{
		".env":                    "LOCAL=1\n",
		"certs/prometheus.key":    "local key",
		"grafana/data/grafana.db": "local db",
		"prometheus/web.yml":      "rendered here",
	}
	for rel, body := range local {
		r.write(rel, body)
	}
	ids := map[string]fileID{}
	for rel := range local {
		ids[rel] = idOf(t, r.path(rel))
	}
	memo := r.converge(nil)
	check := func() {
		t.Helper()
		for rel, want := range local {
			if got := readFile(t, r.path(rel)); got != want {
				t.Errorf("kept %s = %q, want %q", rel, got, want)
			}
			if got := idOf(t, r.path(rel)); got != ids[rel] {
				t.Errorf("kept %s was rewritten", rel)
			}
		}
	}
	check()
	for _, rel := range []string{"prometheus/web.yml.tmpl", "certs/prometheus.key.notes"} {
		if got := readFile(t, r.path(rel)); got != files[rel] {
			t.Errorf("%s = %q, want it installed", rel, got)
		}
	}
	// The source drops them: still nothing kept is removed.
	for _, rel := range []string{".env", "certs/prometheus.key", "grafana/data/grafana.db"} {
		if err := os.Remove(r.src(rel)); err != nil {
			t.Fatal(err)
		}
	}
	r.converge(memo)
	check()
}

func TestLocalSourceRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, r *localRig)
		want  []string
	}{
		{
			name: "a symlink to a file",
			setup: func(t *testing.T, r *localRig) {
				if err := os.Symlink("/etc/shadow", r.src("prometheus/shadow.yml")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{sourceDir, "prometheus/shadow.yml", "not a regular file"},
		},
		{
			name: "a symlink to a directory",
			setup: func(t *testing.T, r *localRig) {
				if err := os.Symlink(t.TempDir(), r.src("conf")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{sourceDir, "conf", "not a regular file"},
		},
		{
			name: "a named pipe",
			setup: func(t *testing.T, r *localRig) {
				if err := mkfifo(r.src("pipe")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"pipe", "not a regular file"},
		},
		{
			name: "a missing source",
			setup: func(t *testing.T, r *localRig) {
				if err := os.RemoveAll(r.src(".")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"bundle.source", sourceDir, "not a directory"},
		},
		{
			name: "a file as the source",
			setup: func(t *testing.T, r *localRig) {
				if err := os.RemoveAll(r.src(".")); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(r.src("."), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"bundle.source", sourceDir, "not a directory"},
		},
		{
			name: "an empty source",
			setup: func(t *testing.T, r *localRig) {
				if err := os.RemoveAll(r.src(".")); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(r.src("empty/dirs/only"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"bundle.source", sourceDir, "holds no files"},
		},
		{
			name: "a file where a kept path needs a folder",
			setup: func(t *testing.T, r *localRig) {
				r.keep = append(r.keep, "certs/prometheus.key")
				r.put("certs", "a file")
			},
			want: []string{"certs", "kept path"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newLocalRig(t, map[string]string{"docker-compose.yml": "services: {}\n", "prometheus/prometheus.yml": "x"})
			tt.setup(t, r)
			err := r.step(nil).Apply(context.Background())
			if !retry.IsPermanent(err) {
				t.Fatalf("Apply = %v, want a permanent error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Lstat(r.path(".")); !errors.Is(err, os.ErrNotExist) {
				entries, _ := os.ReadDir(r.path("."))
				if len(entries) != 0 {
					t.Errorf("installed despite the error: %v", entries)
				}
			}
			// Check reports it too, rather than a converged host. (An
			// empty source lists nothing, as nothing was installed: the
			// engine applies on a host where the step never succeeded.)
			if ok, err := r.step(nil).Check(context.Background()); tt.name != "an empty source" && (ok || !retry.IsPermanent(err)) {
				t.Errorf("Check = %v, %v; want a permanent error", ok, err)
			}
		})
	}
}

// A refused source after a sync leaves the installed bundle as it is.
func TestLocalSourceRefusedAfterSync(t *testing.T) {
	r := newLocalRig(t, acgsBundle)
	memo := r.converge(nil)
	id := idOf(t, r.path("docker-compose.yml"))
	if err := os.Symlink("/etc/passwd", r.src("passwd")); err != nil {
		t.Fatal(err)
	}
	s := r.step(memo)
	if ok, err := s.Check(context.Background()); ok || !retry.IsPermanent(err) {
		t.Fatalf("Check = %v, %v; want a permanent error", ok, err)
	}
	if err := s.Apply(context.Background()); !retry.IsPermanent(err) {
		t.Fatalf("Apply = %v, want a permanent error", err)
	}
	if got := idOf(t, r.path("docker-compose.yml")); got != id {
		t.Error("the installed bundle was touched")
	}
	if _, err := os.Lstat(r.path("passwd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link was installed: %v", err)
	}
}

// The source may itself be a link to the release directory it stands
// for; only the links inside it are refused.
func TestLocalSourceIsALink(t *testing.T) {
	r := newLocalRig(t, nil)
	release := filepath.Join(filepath.Dir(r.src(".")), "acgs-1.2.0")
	if err := os.Remove(r.src(".")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(release, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("acgs-1.2.0", r.src(".")); err != nil {
		t.Fatal(err)
	}
	for rel, body := range acgsBundle {
		r.put(rel, body)
	}
	r.converge(nil)
	for rel, want := range acgsBundle {
		if got := readFile(t, r.path(rel)); got != want {
			t.Errorf("%s = %q, want %q", rel, got, want)
		}
	}
}
