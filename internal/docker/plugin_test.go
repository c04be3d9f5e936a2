package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/retry"
)

// proxy stands for an HTTP proxy. Go reads the proxy variables once per
// process, so TestMain sets them before any test runs; loopback URLs never
// go through a proxy, so the other tests are not affected.
var proxy struct {
	mu   sync.Mutex
	seen []string // absolute-form request URLs
}

const proxiedURL = "http://plugin.test/compose/v2.24.0/docker-compose-linux-x86_64"

func TestMain(m *testing.M) {
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.mu.Lock()
		proxy.seen = append(proxy.seen, r.URL.String())
		proxy.mu.Unlock()
		if r.URL.String() != proxiedURL {
			http.Error(w, "unexpected", http.StatusBadGateway)
			return
		}
		w.Write(pluginBody)
	}))
	for k, v := range map[string]string{"HTTP_PROXY": ps.URL, "http_proxy": ps.URL, "NO_PROXY": "", "no_proxy": "", "REQUEST_METHOD": ""} {
		os.Setenv(k, v)
	}
	code := m.Run()
	ps.Close()
	os.Exit(code)
}

var pluginBody = []byte("#!/bin/sh\n# a stand-in for the Compose plugin\n" + strings.Repeat("padding ", 4096) + "\n")

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// server serves the plugin, each request answered by the next handler; the
// last one answers every further request.
type server struct {
	*httptest.Server
	hits atomic.Int32
}

func serve(t *testing.T, handlers ...http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.hits.Add(1))
		handlers[min(n, len(handlers))-1](w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func ok(w http.ResponseWriter, _ *http.Request) { w.Write(pluginBody) }

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { http.Error(w, http.StatusText(code), code) }
}

// cut sends the headers of the whole body, half of it, and hangs up.
func cut(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Length", fmt.Sprint(len(pluginBody)))
	w.WriteHeader(http.StatusOK)
	w.Write(pluginBody[:len(pluginBody)/2])
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// short sends half the plugin, chunked and cleanly ended: without a
// length, nothing but the checksum tells it from the whole file.
func short(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
	w.Write(pluginBody[:len(pluginBody)/2])
	w.(http.Flusher).Flush()
}

func newStep(t *testing.T, root string, p config.ComposePlugin) *Step {
	t.Helper()
	if p.Version == "" {
		p.Version = "v2.24.0"
	}
	if p.DownloadTimeout.Duration == 0 {
		p.DownloadTimeout.Duration = 10 * time.Second
	}
	return New(Options{Root: root, Config: config.Docker{ComposePlugin: p}, Run: command.Exec{},
		Backoff: retry.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
}

// pluginDir lists the plugin's directory, temporary files included.
func pluginDir(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(filepath.Join(root, PluginPath)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func assertInstalled(t *testing.T, root string, want []byte) {
	t.Helper()
	p := filepath.Join(root, PluginPath)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("plugin not installed: %v", err)
	}
	if sum(b) != sum(want) {
		t.Errorf("plugin content has sha256 %s, want %s", sum(b), sum(want))
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 || !fi.Mode().IsRegular() {
		t.Errorf("plugin mode %v, want 0755", fi.Mode())
	}
	if names := pluginDir(t, root); len(names) != 1 || names[0] != "docker-compose" {
		t.Errorf("plugin directory holds %v, want docker-compose only", names)
	}
}

func TestPluginDownload(t *testing.T) {
	tests := []struct {
		name     string
		handlers []http.HandlerFunc
		hits     int32
	}{
		{"first try", []http.HandlerFunc{ok}, 1},
		{"503 then 200", []http.HandlerFunc{status(http.StatusServiceUnavailable), ok}, 2},
		{"500, 429 then 200", []http.HandlerFunc{status(http.StatusInternalServerError), status(http.StatusTooManyRequests), ok}, 3},
		{"cut mid-body, then whole", []http.HandlerFunc{cut, ok}, 2},
		{"408 then 200", []http.HandlerFunc{status(http.StatusRequestTimeout), ok}, 2},
		{"short without a length, then whole", []http.HandlerFunc{short, ok}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.handlers...)
			root := t.TempDir()
			s := newStep(t, root, config.ComposePlugin{URL: srv.URL + "/docker-compose", SHA256: sum(pluginBody)})
			if err := s.ensurePlugin(context.Background()); err != nil {
				t.Fatalf("ensurePlugin: %v", err)
			}
			assertInstalled(t, root, pluginBody)
			if n := srv.hits.Load(); n != tt.hits {
				t.Errorf("requests = %d, want %d", n, tt.hits)
			}
			// Installed with that checksum: never downloaded again.
			if err := newStep(t, root, config.ComposePlugin{URL: srv.URL + "/docker-compose", SHA256: sum(pluginBody)}).ensurePlugin(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := srv.hits.Load(); n != tt.hits {
				t.Errorf("an installed plugin was downloaded again: %d requests", n)
			}
		})
	}
}

func TestPluginPermanentFailures(t *testing.T) {
	other := []byte("not the plugin")
	tests := []struct {
		name    string
		handler http.HandlerFunc
		sha     string
		want    func(url string) []string
		// hits: a wrong checksum is final once the same file comes twice.
		hits int32
	}{
		{"checksum mismatch", ok, sum(other), func(url string) []string {
			return []string{url, sum(pluginBody), sum(other), "nothing was installed"}
		}, 2},
		{"404", status(http.StatusNotFound), sum(pluginBody), func(url string) []string { return []string{url, "404"} }, 1},
		{"403", status(http.StatusForbidden), sum(pluginBody), func(url string) []string { return []string{url, "403"} }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.handler)
			url := srv.URL + "/releases/docker-compose"
			for _, previous := range [][]byte{nil, []byte("#!/bin/sh\necho an older plugin\n")} {
				root := t.TempDir()
				p := filepath.Join(root, PluginPath)
				if previous != nil {
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, previous, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				hits := srv.hits.Load()
				err := newStep(t, root, config.ComposePlugin{URL: url, SHA256: tt.sha}).ensurePlugin(context.Background())
				if !retry.IsPermanent(err) {
					t.Fatalf("ensurePlugin: %v, want a permanent error", err)
				}
				for _, w := range tt.want(url) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if n := srv.hits.Load() - hits; n != tt.hits {
					t.Errorf("requests = %d, want %d: a permanent failure is not retried", n, tt.hits)
				}
				if previous == nil {
					if names := pluginDir(t, root); len(names) != 0 {
						t.Errorf("plugin directory holds %v after a failure, want nothing", names)
					}
				} else {
					if b, _ := os.ReadFile(p); string(b) != string(previous) {
						t.Errorf("the installed plugin was replaced: %q", b)
					}
					if names := pluginDir(t, root); len(names) != 1 {
						t.Errorf("plugin directory holds %v, want the old plugin only", names)
					}
				}
			}
		})
	}
}

func TestPluginDownloadTimesOut(t *testing.T) {
	srv := serve(t, status(http.StatusBadGateway))
	root := t.TempDir()
	start := time.Now()
	err := newStep(t, root, config.ComposePlugin{URL: srv.URL + "/x", SHA256: sum(pluginBody),
		DownloadTimeout: config.Duration{Duration: 300 * time.Millisecond}}).ensurePlugin(context.Background())
	// A download that keeps failing until the timeout says so, with the
	// last failure (the 502), not a bare context deadline.
	if !errors.Is(err, retry.ErrTimeout) || !strings.Contains(err.Error(), "502") {
		t.Errorf("error %v; want a timeout naming the last failure (502)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %v, want about the 300ms timeout", d)
	}
	if srv.hits.Load() < 2 {
		t.Errorf("requests = %d, want retries within the timeout", srv.hits.Load())
	}
	if names := pluginDir(t, root); len(names) != 0 {
		t.Errorf("plugin directory holds %v", names)
	}
}

// A plugin whose mode lost its execute bits is not installed.
func TestPluginNotExecutable(t *testing.T) {
	srv := serve(t, ok)
	root := t.TempDir()
	p := filepath.Join(root, PluginPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, pluginBody, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStep(t, root, config.ComposePlugin{URL: srv.URL + "/x", SHA256: sum(pluginBody)})
	if ok, err := s.pluginInstalled(context.Background()); err != nil || ok {
		t.Errorf("pluginInstalled of a 0644 file = %v, %v; want false", ok, err)
	}
	if err := s.ensurePlugin(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, root, pluginBody)
}

// With no checksum, the plugin is accepted by the version it reports and
// never downloaded.
func TestPluginWithoutChecksum(t *testing.T) {
	script := func(version string) []byte {
		return []byte("#!/bin/sh\n[ \"$1 $2\" = \"version --short\" ] || exit 3\necho " + version + "\n")
	}
	tests := []struct {
		name   string
		plugin []byte // nil: not installed
		ok     bool
	}{
		{"pinned version", script("v2.24.0"), true},
		{"pinned version without v", script("2.24.0"), true},
		{"another version", script("v2.23.3"), false},
		{"plugin fails", []byte("#!/bin/sh\nexit 1\n"), false},
		{"missing", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, ok)
			root := t.TempDir()
			if tt.plugin != nil {
				p := filepath.Join(root, PluginPath)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tt.plugin, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s := newStep(t, root, config.ComposePlugin{URL: srv.URL + "/x"})
			got, err := s.pluginInstalled(context.Background())
			if err != nil || got != tt.ok {
				t.Errorf("pluginInstalled = %v, %v; want %v", got, err, tt.ok)
			}
			err = s.ensurePlugin(context.Background())
			switch {
			case tt.ok && err != nil:
				t.Errorf("ensurePlugin: %v", err)
			case !tt.ok && (!retry.IsPermanent(err) || !strings.Contains(err.Error(), "docker.compose_plugin.sha256") ||
				!strings.Contains(err.Error(), "v2.24.0")):
				t.Errorf("ensurePlugin: %v; want a permanent error naming docker.compose_plugin.sha256 and the version", err)
			}
			if n := srv.hits.Load(); n != 0 {
				t.Errorf("downloaded without a checksum: %d requests", n)
			}
		})
	}
}

func TestPluginThroughProxy(t *testing.T) {
	root := t.TempDir()
	s := newStep(t, root, config.ComposePlugin{URL: proxiedURL, SHA256: sum(pluginBody)})
	if err := s.ensurePlugin(context.Background()); err != nil {
		t.Fatalf("ensurePlugin through the proxy: %v", err)
	}
	assertInstalled(t, root, pluginBody)
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if len(proxy.seen) != 1 || proxy.seen[0] != proxiedURL {
		t.Errorf("the proxy saw %v, want one GET of %s", proxy.seen, proxiedURL)
	}
}

func TestUserInGroup(t *testing.T) {
	const passwd = "root:x:0:0:root:/root:/bin/bash\nec2-user:x:1000:1000::/home/ec2-user:/bin/bash\nec2:x:1001:1001::/home/ec2:/bin/sh\n"
	tests := []struct {
		name          string
		user          string
		passwd, group string // "-": no such file
		want          bool
		errWant       []string
	}{
		{"no user configured", "", "-", "-", true, nil},
		{"member", "ec2-user", passwd, "docker:x:999:ec2-user\n", true, nil},
		{"one of several", "ec2-user", passwd, "wheel:x:10:ec2-user\ndocker:x:999:alice,ec2-user,bob\n", true, nil},
		{"not a member", "ec2-user", passwd, "docker:x:999:alice\n", false, nil},
		{"no members", "ec2-user", passwd, "docker:x:999:\n", false, nil},
		{"short line", "ec2-user", passwd, "docker:x:999\n", false, nil},
		{"prefix of a member", "ec2", passwd, "docker:x:999:ec2-user\n", false, nil},
		{"member of another group", "ec2-user", passwd, "ec2-user:x:1000:\nwheel:x:10:ec2-user\n", false, nil},
		{"no docker group", "ec2-user", passwd, "wheel:x:10:ec2-user\n", false, nil},
		{"no group file", "ec2-user", passwd, "-", false, nil},
		{"missing user", "deploy", passwd, "docker:x:999:deploy\n", false, []string{"docker.user", `"deploy"`, "create the user"}},
		{"user only in group", "ghost", passwd, "docker:x:999:ghost\n", false, []string{"docker.user", `"ghost"`}},
		{"no passwd file", "ec2-user", "-", "docker:x:999:ec2-user\n", false, []string{"docker.user", `"ec2-user"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range map[string]string{"passwd": tt.passwd, "group": tt.group} {
				if content == "-" {
					continue
				}
				if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s := New(Options{Root: root, Config: config.Docker{User: tt.user}})
			got, err := s.userInGroup()
			if tt.errWant != nil {
				if !retry.IsPermanent(err) {
					t.Fatalf("userInGroup = %v, %v; want a permanent error", got, err)
				}
				for _, w := range tt.errWant {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %s", err, w)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("userInGroup = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// fakeEngine answers a ping, or not.
type fakeEngine struct{ up bool }

func (e fakeEngine) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	if !e.up {
		return client.PingResult{}, errors.New("Cannot connect to the Docker daemon")
	}
	return client.PingResult{}, nil
}

// fakeRunner records the commands and runs none.
type fakeRunner struct{ argv [][]string }

func (r *fakeRunner) Run(_ context.Context, c command.Cmd) (command.Result, error) {
	r.argv = append(r.argv, c.Argv())
	return command.Result{}, nil
}

type noUnits struct{ calls int }

func (u *noUnits) Available() bool { return false }
func (u *noUnits) EnableAndStart(context.Context, string) error {
	u.calls++
	return nil
}

func TestApplyUnderRoot(t *testing.T) {
	srv := serve(t, ok)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("ec2-user:x:1000:1000::/home/ec2-user:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("docker:x:999:\n"), 0o644)
	cfg := config.Docker{User: "ec2-user", ComposePlugin: config.ComposePlugin{Version: "v2.24.0", URL: srv.URL + "/x",
		SHA256: sum(pluginBody), DownloadTimeout: config.Duration{Duration: 10 * time.Second}}}

	t.Run("engine down", func(t *testing.T) {
		run, units := &fakeRunner{}, &noUnits{}
		s := New(Options{Root: root, Config: cfg, Run: run, Engine: fakeEngine{}, Units: units})
		if ok, err := s.Check(context.Background()); err != nil || ok {
			t.Errorf("Check with the engine down = %v, %v", ok, err)
		}
		err := s.Apply(context.Background())
		if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "start dockerd") {
			t.Errorf("Apply under --root with the engine down: %v; want a permanent error saying to start dockerd", err)
		}
		if len(run.argv) != 0 || units.calls != 0 {
			t.Errorf("under --root: ran %v, started %d units", run.argv, units.calls)
		}
	})
	t.Run("engine up", func(t *testing.T) {
		run := &fakeRunner{}
		s := New(Options{Root: root, Config: cfg, Run: run, Engine: fakeEngine{up: true}, Units: &noUnits{}})
		if ok, err := s.Check(context.Background()); err != nil || ok {
			t.Errorf("Check without the plugin = %v, %v", ok, err)
		}
		if err := s.Apply(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := "usermod --root " + root + " -a -G docker ec2-user"
		if len(run.argv) != 1 || strings.Join(run.argv[0], " ") != want {
			t.Errorf("ran %q, want %q", run.argv, want)
		}
		assertInstalled(t, root, pluginBody)
	})
}
