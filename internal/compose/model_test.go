package compose

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/seal"
)

const project = "monitoring"

// loadFile writes content as the compose file of a fresh stack directory
// and loads it against env.
func loadFile(t *testing.T, content string, env map[string]string) (*model, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := load(context.Background(), dir, project, []string{file}, env)
	if err != nil {
		t.Fatalf("load: %v\n%s", err, content)
	}
	return m, dir
}

// matches reports whether one of list holds every one of subs.
func matches(list []string, subs ...string) bool {
	return slices.ContainsFunc(list, func(s string) bool {
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				return false
			}
		}
		return true
	})
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		env     map[string]string
		enabled []string // nil: every service
		errs    [][]string
		warns   [][]string
		// noWarn are substrings no warning may hold.
		noWarn []string
	}{
		{
			name:    "value from .env",
			compose: "services:\n  app:\n    image: app\n    environment:\n      - URL=${URL}\n",
			env:     map[string]string{"URL": "http://x"},
		},
		{
			name:    "no value, no default",
			compose: "services:\n  app:\n    image: app\n    environment:\n      - URL=${NEEDED_URL}\n",
			errs:    [][]string{{"app", "NEEDED_URL"}},
		},
		{
			name:    "bare $NAME, no value",
			compose: "services:\n  app:\n    image: app\n    command: run --url $NEEDED_URL\n",
			errs:    [][]string{{"app", "NEEDED_URL"}},
		},
		{
			name:    "image tag",
			compose: "services:\n  grafana:\n    image: grafana:${GRAFANA_VERSION}\n",
			errs:    [][]string{{"grafana", "GRAFANA_VERSION"}},
		},
		{
			name:    "set to empty in .env counts as set",
			compose: "services:\n  app:\n    image: app\n    environment:\n      - URL=${URL}\n",
			env:     map[string]string{"URL": ""},
		},
		{
			name:    "empty default",
			compose: "services:\n  app:\n    image: app\n    environment:\n      - LEVEL=${LOG_LEVEL:-}\n      - REPOS=${GITHUB_REPOS-x}\n",
		},
		{
			name:    "default of a secret-looking name",
			compose: "services:\n  grafana:\n    image: grafana\n    environment:\n      - GF_SECURITY_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-admin}\n",
			warns:   [][]string{{"grafana", "GRAFANA_ADMIN_PASSWORD", "default"}},
		},
		{
			name: "secret-looking names",
			compose: "services:\n  app:\n    image: app\n    environment:\n      - A=${GITHUB_TOKEN:-}\n      - B=${client_secret-x}\n" +
				"      - C=${API_KEY-}\n      - D=${DB_PASSWD:-x}\n",
			warns: [][]string{{"app", "GITHUB_TOKEN"}, {"app", "client_secret"}, {"app", "API_KEY"}, {"app", "DB_PASSWD"}},
		},
		{
			name:    "secret-looking default given a value",
			compose: "services:\n  grafana:\n    image: grafana\n    environment:\n      - GF_SECURITY_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-admin}\n",
			env:     map[string]string{"GRAFANA_ADMIN_PASSWORD": "s3cret"},
			noWarn:  []string{"GRAFANA_ADMIN_PASSWORD"},
		},
		{
			name:    ".env key read by nobody",
			compose: "services:\n  app:\n    image: app\n    environment:\n      - URL=${URL}\n",
			env:     map[string]string{"URL": "u", "UNUSED_SETTING": "x"},
			warns:   [][]string{{".env key UNUSED_SETTING", "no service"}},
			noWarn:  []string{"URL"},
		},
		{
			name:    "read outside services counts as read",
			compose: "services:\n  app:\n    image: app\nvolumes:\n  data:\n    name: ${VOLUME_NAME}\n",
			env:     map[string]string{"VOLUME_NAME": "v"},
			noWarn:  []string{"VOLUME_NAME"},
		},
		{
			name: "secret literal, list form",
			compose: "services:\n  exporter:\n    image: e\n    environment:\n      - GITHUB_TOKEN=ghp_literal\n" +
				"      - PLAIN=value\n      - EMPTY_TOKEN=\n      - PASSTHROUGH_TOKEN\n",
			warns:  [][]string{{"exporter", "GITHUB_TOKEN", "literal"}},
			noWarn: []string{"PLAIN", "EMPTY_TOKEN", "PASSTHROUGH_TOKEN"},
		},
		{
			name: "secret literal, map form",
			compose: "services:\n  db:\n    image: db\n    environment:\n      POSTGRES_PASSWORD: hunter2\n" +
				"      SECRET_KEY_BASE: 12345\n      REF_PASSWORD: ${DB_PW}\n      NULL_TOKEN:\n      MODE: prod\n",
			env:    map[string]string{"DB_PW": "x"},
			warns:  [][]string{{"db", "POSTGRES_PASSWORD", "literal"}, {"db", "SECRET_KEY_BASE", "literal"}},
			noWarn: []string{"REF_PASSWORD", "NULL_TOKEN", "MODE"},
		},
		{
			// An escaped "$$" is not a reference: a password written with one is
			// still a literal, and warned about.
			name:    "secret literal with an escaped dollar",
			compose: "services:\n  db:\n    image: db\n    environment:\n      - DB_PASSWORD=pa$$word\n",
			warns:   [][]string{{"db", "DB_PASSWORD", "literal"}},
		},
		{
			name: "$$ escapes are not references",
			compose: "services:\n  node:\n    image: node\n    command:\n      - --collector.filesystem.mount-points-exclude=^/(sys|proc)($$|/)\n" +
				"      - sh -c 'echo $$HOME $${NOT_A_VAR} $$$$ESCAPED'\n",
		},
		{
			name:    "$$ then a reference",
			compose: "services:\n  app:\n    image: app\n    command: echo $$$NEEDED\n",
			errs:    [][]string{{"app", "NEEDED"}},
		},
		{
			// ${VAR:+word} and ${VAR+word} are "word if VAR is set, else empty":
			// an unset VAR is their normal case, not a missing value.
			name:    "alternate value operators",
			compose: "services:\n  app:\n    image: app\n    command: run ${DEBUG:+--debug} ${VERBOSE+-v}\n",
		},
		{
			name: "disabled services are not checked",
			compose: "services:\n  app:\n    image: app\n  github-actions-exporter:\n    image: e\n    environment:\n" +
				"      - GITHUB_TOKEN=${GITHUB_TOKEN}\n      - WEBHOOK_SECRET=literal\n      - X=${ORG_PASSWORD:-x}\n",
			enabled: []string{"app"},
		},
		{
			name:    "several services, sorted findings",
			compose: "services:\n  b:\n    image: b\n    command: ${B_NEEDED}\n  a:\n    image: a\n    command: ${A_NEEDED}\n",
			errs:    [][]string{{"service a", "A_NEEDED"}, {"service b", "B_NEEDED"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = map[string]string{}
			}
			m, _ := loadFile(t, tt.compose, env)
			enabled := tt.enabled
			if enabled == nil {
				enabled = m.services()
			}
			f := m.check(env, enabled)
			for _, want := range tt.errs {
				if !matches(f.errs, want...) {
					t.Errorf("errors %q; want one naming %q", f.errs, want)
				}
			}
			if len(f.errs) != len(tt.errs) {
				t.Errorf("errors %q; want %d", f.errs, len(tt.errs))
			}
			for _, want := range tt.warns {
				if !matches(f.warnings, want...) {
					t.Errorf("warnings %q; want one naming %q", f.warnings, want)
				}
			}
			if len(f.warnings) != len(tt.warns) {
				t.Errorf("warnings %q; want %d", f.warnings, len(tt.warns))
			}
			for _, w := range f.warnings {
				for _, no := range tt.noWarn {
					if strings.Contains(w, no) {
						t.Errorf("warning %q names %s", w, no)
					}
				}
			}
		})
	}
}

// A required variable left unset stops the load itself, naming it; and
// check, given a .env without it, says the service requires it.
func TestRequiredVariable(t *testing.T) {
	const file = "services:\n  loki:\n    image: loki\n    environment:\n      - S3_BUCKET=${LOKI_BUCKET:?set the bucket}\n      - R=${REGION?no region}\n"
	dir := t.TempDir()
	path := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"REGION": "eu"}, []string{"LOKI_BUCKET", "set the bucket"}},
		{map[string]string{"LOKI_BUCKET": ""}, []string{"LOKI_BUCKET"}}, // :? refuses empty too
		{map[string]string{"LOKI_BUCKET": "b"}, []string{"REGION", "no region"}},
	} {
		_, err := load(context.Background(), dir, project, []string{path}, tt.env)
		if err == nil {
			t.Errorf("load with %v succeeded", tt.env)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("load with %v: %v; want it to say %q", tt.env, err, w)
			}
		}
	}
	// REGION set but empty is fine for "?", which only refuses unset.
	m, err := load(context.Background(), dir, project, []string{path}, map[string]string{"LOKI_BUCKET": "b", "REGION": ""})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if f := m.check(map[string]string{"LOKI_BUCKET": "b", "REGION": ""}, m.services()); len(f.errs) != 0 {
		t.Errorf("errors %q", f.errs)
	}
	f := m.check(map[string]string{"LOKI_BUCKET": "b"}, m.services())
	if !matches(f.errs, "loki", "REGION", "requires") || len(f.errs) != 1 {
		t.Errorf("errors %q; want one saying loki requires REGION", f.errs)
	}
}

func TestRenderOverride(t *testing.T) {
	tests := []struct {
		names   []string
		hostDir string
	}{
		{nil, "/data/monitoring"},
		{[]string{"prometheus_data"}, "/data/monitoring"},
		{[]string{"grafana-data", "loki_data", "prometheus_data", "tempo.data"}, "/tmp/root dir/data/monitoring"},
	}
	for _, tt := range tests {
		b := renderOverride(tt.names, tt.hostDir, "/data/monitoring")
		var doc struct {
			Volumes map[string]struct {
				Driver     string            `yaml:"driver"`
				DriverOpts map[string]string `yaml:"driver_opts"`
			} `yaml:"volumes"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Errorf("override for %v is not YAML: %v\n%s", tt.names, err, b)
			continue
		}
		if len(doc.Volumes) != len(tt.names) {
			t.Errorf("override for %v has volumes %v", tt.names, doc.Volumes)
		}
		for _, n := range tt.names {
			v := doc.Volumes[n]
			want := map[string]string{"type": "none", "o": "bind", "device": filepath.Join(tt.hostDir, n)}
			if v.Driver != "local" || len(v.DriverOpts) != 3 || v.DriverOpts["type"] != want["type"] ||
				v.DriverOpts["o"] != want["o"] || v.DriverOpts["device"] != want["device"] {
				t.Errorf("volume %s = %+v, want driver local, driver_opts %v", n, v, want)
			}
		}
		if !strings.HasPrefix(string(b), "#") {
			t.Errorf("override does not say who wrote it:\n%s", b)
		}
	}
}

const volumesFile = `services:
  prometheus:
    image: prom/prometheus
    volumes:
      - prometheus_data:/prometheus
      - ./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro
      - ./prometheus/rules:/etc/prometheus/rules
      - /etc/hostname:/etc/hostname:ro
      - /var/run/docker.sock:/var/run/docker.sock
  grafana:
    image: grafana/grafana
    volumes:
      - type: volume
        source: grafana_data
        target: /var/lib/grafana
      - type: bind
        source: ./grafana/provisioning
        target: /etc/grafana/provisioning
      - type: tmpfs
        target: /tmp
      - ../outside:/outside
  plain:
    image: busybox
volumes:
  prometheus_data:
  grafana_data: {}
  local_explicit:
    driver: local
  external_one:
    external: true
  nfs_share:
    driver_opts:
      type: nfs
      o: addr=10.0.0.1
      device: ":/share"
  plugin_vol:
    driver: rexray/ebs
`

func TestNamedVolumes(t *testing.T) {
	m, _ := loadFile(t, volumesFile, map[string]string{})
	want := []string{"grafana_data", "local_explicit", "prometheus_data"}
	if got := m.namedVolumes(); !slices.Equal(got, want) {
		t.Errorf("namedVolumes() = %v, want %v", got, want)
	}
}

// The override, merged by Compose over the stack's file, binds each named
// volume to its directory on the data volume.
func TestOverrideMerged(t *testing.T) {
	_, dir := loadFile(t, volumesFile, map[string]string{})
	base, err := load(context.Background(), dir, project, []string{filepath.Join(dir, "docker-compose.yml")}, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(t.TempDir(), "data", project)
	over := filepath.Join(t.TempDir(), "override.yml")
	if err := os.WriteFile(over, renderOverride(base.namedVolumes(), hostDir, "/data/"+project), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := load(context.Background(), dir, project, []string{filepath.Join(dir, "docker-compose.yml"), over}, map[string]string{})
	if err != nil {
		t.Fatalf("load with the override: %v", err)
	}
	for _, n := range base.namedVolumes() {
		v := m.project.Volumes[n]
		if v.DriverOpts["device"] != filepath.Join(hostDir, n) || v.DriverOpts["o"] != "bind" || v.DriverOpts["type"] != "none" {
			t.Errorf("volume %s after the override: %+v", n, v)
		}
	}
	if v := m.project.Volumes["nfs_share"]; v.DriverOpts["device"] != ":/share" {
		t.Errorf("nfs_share changed by the override: %+v", v)
	}
	if got := m.namedVolumes(); len(got) != 0 {
		t.Errorf("after the override namedVolumes() = %v, want none left unbound", got)
	}
}

func TestBindSources(t *testing.T) {
	m, dir := loadFile(t, volumesFile, map[string]string{})
	tests := []struct {
		svc  string
		want []string
	}{
		{"prometheus", []string{filepath.Join(dir, "prometheus", "prometheus.yml"), filepath.Join(dir, "prometheus", "rules")}},
		{"grafana", []string{filepath.Join(dir, "grafana", "provisioning")}},
		{"plain", nil},
	}
	for _, tt := range tests {
		if got := m.bindSources(tt.svc, dir); !slices.Equal(got, tt.want) {
			t.Errorf("bindSources(%s) = %v, want %v", tt.svc, got, tt.want)
		}
	}
	// A sibling directory sharing the name's prefix is not inside.
	if got := m.bindSources("prometheus", dir+"/prom"); len(got) != 0 {
		t.Errorf("bindSources under %s/prom = %v, want none", dir, got)
	}
	if got := m.bindSources("grafana", filepath.Dir(dir)); !slices.Contains(got, filepath.Join(filepath.Dir(dir), "outside")) {
		t.Errorf("bindSources under the parent = %v, want ../outside in it", got)
	}
}

func TestEnabledServices(t *testing.T) {
	const file = "services:\n  prometheus:\n    image: p\n  github-actions-exporter:\n    image: g\n  alertmanager:\n    image: a\n" +
		"  steampipe:\n    image: s\n  relay:\n    image: r\n    depends_on: [alertmanager]\n" +
		"  relay-watch:\n    image: w\n    depends_on:\n      relay:\n        condition: service_started\n"
	no := false
	vars := map[string]config.EnvVar{
		"GITHUB_TOKEN":  {Parameter: "/p/gh", Optional: true, Services: []string{"github-actions-exporter"}},
		"SLACK_WEBHOOK": {Parameter: "/p/slack", Optional: true, Services: []string{"alertmanager", "not-in-the-file"}},
		// env: false: never in .env; its file says whether it is there.
		"FILE_ONLY":  {Parameter: "/p/f", Optional: true, Services: []string{"steampipe"}, File: "s/f", Env: &no},
		"REQUIRED":   {Parameter: "/p/r"},
		"USER_VALUE": {Value: new(string)},
	}
	all := []string{"alertmanager", "github-actions-exporter", "prometheus", "relay", "relay-watch", "steampipe"}
	tests := []struct {
		name         string
		env          map[string]string
		file         bool
		want, warned []string
	}{
		{"all present", map[string]string{"GITHUB_TOKEN": "t", "SLACK_WEBHOOK": "w"}, true, all, nil},
		{"token absent", map[string]string{"SLACK_WEBHOOK": "w"}, true,
			[]string{"alertmanager", "prometheus", "relay", "relay-watch", "steampipe"}, nil},
		{"webhook absent: its dependants go too", map[string]string{"GITHUB_TOKEN": "t"}, true,
			[]string{"github-actions-exporter", "prometheus", "steampipe"},
			[]string{"relay is left out too: it depends on alertmanager", "relay-watch is left out too: it depends on relay"}},
		{"file-only value absent", map[string]string{"GITHUB_TOKEN": "t", "SLACK_WEBHOOK": "w"}, false,
			[]string{"alertmanager", "github-actions-exporter", "prometheus", "relay", "relay-watch"}, nil},
		{"present but empty counts as present", map[string]string{"GITHUB_TOKEN": "", "SLACK_WEBHOOK": "w"}, true, all, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.file {
				if err := os.MkdirAll(filepath.Join(root, "s"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, "s/f"), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			m, _ := loadFile(t, file, tt.env)
			s := New(Options{Root: root, StackDir: "/", Vars: vars})
			s.env = tt.env
			enabled, disabled := s.enabledServices(m)
			if !slices.Equal(enabled, tt.want) {
				t.Errorf("enabled = %v, want %v", enabled, tt.want)
			}
			if got := slices.Sorted(slices.Values(append(enabled, disabled...))); !slices.Equal(got, all) {
				t.Errorf("enabled and disabled = %v, want every service once", got)
			}
			if w := s.Warning(); len(tt.warned) == 0 && w != "" {
				t.Errorf("Warning() = %q", w)
			}
			for _, want := range tt.warned {
				if !strings.Contains(s.Warning(), want) {
					t.Errorf("Warning() = %q; want it to say %q", s.Warning(), want)
				}
			}
		})
	}
}

func TestDigestPaths(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("prometheus/prometheus.yml", "scrape_interval: 15s\n")
	write("prometheus/rules/a.yml", "groups: []\n")
	write("grafana/grafana.ini", "x")
	// The textfile link: a bind source that is a symlink to a directory
	// outside the stack, whose files monagent rewrites every run.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "textfile")); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "prometheus/prometheus.yml"), filepath.Join(dir, "prometheus/rules"), filepath.Join(dir, "absent.yml"),
		filepath.Join(dir, "textfile")}
	digest := func() string {
		t.Helper()
		d, err := digestPaths(paths)
		if err != nil {
			t.Fatalf("digestPaths: %v", err)
		}
		return d
	}
	base := digest()
	if base != digest() {
		t.Fatal("digest not stable")
	}
	steps := []struct {
		name    string
		do      func()
		changes bool
	}{
		{"unmounted file changed", func() { write("grafana/grafana.ini", "y") }, false},
		{"mtime only", func() {
			p := filepath.Join(dir, "prometheus/prometheus.yml")
			fi, _ := os.Stat(p)
			os.Chtimes(p, fi.ModTime().Add(-time.Hour), fi.ModTime().Add(-time.Hour))
		}, false},
		{"mounted file changed", func() { write("prometheus/prometheus.yml", "scrape_interval: 30s\n") }, true},
		{"file in a mounted directory changed", func() { write("prometheus/rules/a.yml", "groups: [x]\n") }, true},
		{"file added to a mounted directory", func() { write("prometheus/rules/b.yml", "") }, true},
		{"file renamed in a mounted directory", func() {
			os.Rename(filepath.Join(dir, "prometheus/rules/b.yml"), filepath.Join(dir, "prometheus/rules/c.yml"))
		}, true},
		{"absent mount appears", func() { write("absent.yml", "") }, true},
		{"file behind the link changed", func() { os.WriteFile(filepath.Join(outside, "monagent.prom"), []byte("x 1\n"), 0o644) }, false},
		{"link retargeted", func() {
			os.Remove(filepath.Join(dir, "textfile"))
			os.Symlink(t.TempDir(), filepath.Join(dir, "textfile"))
		}, true},
		{"nothing", func() {}, false},
	}
	for _, st := range steps {
		st.do()
		got := digest()
		if (got != base) != st.changes {
			t.Errorf("%s: digest changed = %t, want %t", st.name, got != base, st.changes)
		}
		base = got
	}
}

// The step's fingerprint (no Docker needed) follows the inputs of `up`:
// .env, the enabled services and the files each service mounts.
func TestFingerprint(t *testing.T) {
	root := t.TempDir()
	stack := filepath.Join(root, "opt", "monitoring")
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(stack, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("docker-compose.yml", "services:\n  prometheus:\n    image: p\n    volumes:\n      - ./prometheus:/etc/prometheus\n      - prometheus_data:/prometheus\n"+
		"  github-actions-exporter:\n    image: g\n    environment:\n      - GITHUB_TOKEN=${GITHUB_TOKEN:-}\nvolumes:\n  prometheus_data:\n")
	write("prometheus/prometheus.yml", "a")
	write("README.md", "a")
	write(".env", "")
	step := func() *Step {
		return New(Options{Root: root, StackDir: "/opt/monitoring", DataDir: "/data/monitoring", Seal: seal.NewKey([]byte("k")),
			Config: config.Compose{Project: project, File: "docker-compose.yml"},
			Vars:   map[string]config.EnvVar{"GITHUB_TOKEN": {Parameter: "/p/gh", Optional: true, Services: []string{"github-actions-exporter"}}}})
	}
	fingerprint := func() (string, *Step) {
		t.Helper()
		s := step()
		fp, err := s.Fingerprint(context.Background())
		if err != nil {
			t.Fatalf("Fingerprint: %v", err)
		}
		return fp, s
	}
	fp, s := fingerprint()
	if !slices.Equal(s.enabled, []string{"prometheus"}) {
		t.Errorf("enabled = %v without GITHUB_TOKEN in .env", s.enabled)
	}
	// Fingerprint only reads: the override is written by Apply.
	if _, err := os.Lstat(s.OverridePath()); !os.IsNotExist(err) {
		t.Errorf("Fingerprint wrote the override: %v", err)
	}
	if want := filepath.Join(root, "data", "monitoring", "prometheus_data"); !strings.Contains(string(s.override), want) {
		t.Errorf("override does not bind prometheus_data to %s:\n%s", want, s.override)
	}
	if v := s.m.project.Volumes["prometheus_data"]; v.DriverOpts["device"] != filepath.Join(root, "data", "monitoring", "prometheus_data") {
		t.Errorf("loaded model does not carry the override: %+v", v)
	}

	steps := []struct {
		name    string
		do      func()
		changes bool
	}{
		{"nothing", func() {}, false},
		{"unmounted file", func() { write("README.md", "b") }, false},
		{"mounted file", func() { write("prometheus/prometheus.yml", "b") }, true},
		{".env value", func() { write(".env", "OTHER=\"1\"\n") }, true},
		{"optional value appears", func() { write(".env", "OTHER=\"1\"\nGITHUB_TOKEN=\"t\"\n") }, true},
	}
	for _, st := range steps {
		st.do()
		got, s := fingerprint()
		if (got != fp) != st.changes {
			t.Errorf("%s: fingerprint changed = %t, want %t", st.name, got != fp, st.changes)
		}
		fp = got
		if st.name == "optional value appears" && !slices.Contains(s.enabled, "github-actions-exporter") {
			t.Errorf("enabled = %v with GITHUB_TOKEN in .env", s.enabled)
		}
	}

	// Written, the override is private and, unchanged, not rewritten.
	if err := s.writeOverride(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.OverridePath())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s.OverridePath()); string(b) != string(s.override) || fi.Mode().Perm() != 0o600 {
		t.Errorf("override file mode %v:\n%s\nwant 0600:\n%s", fi.Mode(), b, s.override)
	}
	_, s2 := fingerprint()
	if err := s2.writeOverride(); err != nil {
		t.Fatal(err)
	}
	if fi2, err := os.Stat(s.OverridePath()); err != nil || !fi2.ModTime().Equal(fi.ModTime()) || !os.SameFile(fi, fi2) {
		t.Errorf("override rewritten although unchanged")
	}
}
