package envfile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/bcrypt"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/render"
	"github.com/monagent/monagent/internal/secretgen"
)

// The ACGS profile's stack directory, and its files rig: a host off AWS
// whose values come from the fake store by env key, with the host's secret
// store in the root.
const acgsDir = "/opt/acgs"

type filesRig struct {
	t       *testing.T
	root    string
	o       Options
	params  *fakeParams
	secrets *recorder
}

func newFilesRig(t *testing.T) *filesRig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests chown secret files: run them as root (CI does)")
	}
	root := t.TempDir()
	sec := &recorder{}
	params := &fakeParams{stored: map[string]string{}, secrets: sec}
	r := &filesRig{t: t, root: root, params: params, secrets: sec}
	r.o = Options{
		Root: root, Dir: acgsDir, Vars: map[string]config.EnvVar{}, Params: params, Secrets: sec, Seal: testKey,
		Kept:      &secretgen.Store{Dir: filepath.Join(root, "var/lib/monagent/secrets")},
		LocalFile: "/etc/acgs/operator.env", Hostname: "monitor-1", IP: "192.168.1.20",
	}
	return r
}

func (r *filesRig) path(rel string) string { return filepath.Join(r.root, acgsDir, rel) }

// source writes a template where the bundle step would have put it.
func (r *filesRig) source(rel, body string) {
	r.t.Helper()
	p := r.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *filesRig) step(memo map[string]string) *Step {
	s := New(r.o)
	s.Restore(memo)
	return s
}

// converge is one run that applies: Check, Apply, Check to confirm.
func (r *filesRig) converge(memo map[string]string) *Step {
	r.t.Helper()
	s := r.step(memo)
	ctx := context.Background()
	if _, err := s.Fingerprint(ctx); err != nil {
		r.t.Fatalf("Fingerprint: %v", err)
	}
	if _, err := s.Check(ctx); err != nil {
		r.t.Fatalf("Check: %v", err)
	}
	if err := s.Apply(ctx); err != nil {
		r.t.Fatalf("Apply: %v", err)
	}
	if ok, err := s.Check(ctx); err != nil || !ok {
		r.t.Fatalf("Check after Apply = %v, %v; want true", ok, err)
	}
	return s
}

// rerun is the next run on a converged host: Check passes, and Apply (the
// engine applies when the fingerprint changed) rewrites none of files.
func (r *filesRig) rerun(memo map[string]string, files ...string) {
	r.t.Helper()
	before := map[string]fileInfo{}
	for _, f := range files {
		before[f] = stat(r.t, f)
	}
	s := r.step(memo)
	ctx := context.Background()
	if ok, err := s.Check(ctx); err != nil || !ok {
		r.t.Fatalf("Check of a converged host = %v, %v; want true", ok, err)
	}
	if err := s.Apply(ctx); err != nil {
		r.t.Fatalf("Apply: %v", err)
	}
	for f, fi := range before {
		if got := stat(r.t, f); got != fi {
			r.t.Errorf("%s rewritten with nothing changed: %+v, was %+v", f, got, fi)
		}
	}
}

func assertFile(t *testing.T, p, want string, mode os.FileMode, uid, gid uint32) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if want != "" && string(b) != want {
		t.Errorf("%s = %q, want %q", filepath.Base(p), b, want)
	}
	if fi := stat(t, p); fi.mode.Perm() != mode || fi.uid != uid || fi.gid != gid {
		t.Errorf("%s: mode %v owner %d:%d, want %04o %d:%d", filepath.Base(p), fi.mode, fi.uid, fi.gid, mode, uid, gid)
	}
}

func TestEnvFileOutsideStackDir(t *testing.T) {
	r := newFilesRig(t)
	r.o.EnvFile = "/etc/acgs/acgs.env"
	r.o.Vars = map[string]config.EnvVar{
		"GRAFANA_ADMIN_USER":     {Value: lit("admin")},
		"GRAFANA_ADMIN_PASSWORD": {Parameter: "GRAFANA_ADMIN_PASSWORD"},
	}
	r.params.stored["GRAFANA_ADMIN_PASSWORD"] = "grafana-pw"
	s := r.converge(nil)
	p := filepath.Join(r.root, "etc/acgs/acgs.env")
	if s.Path() != p {
		t.Errorf("Path() = %s, want %s", s.Path(), p)
	}
	assertFile(t, p, "", 0o600, 0, 0)
	b, _ := os.ReadFile(p)
	if got := parse(t, b); got["GRAFANA_ADMIN_PASSWORD"] != "grafana-pw" || got["GRAFANA_ADMIN_USER"] != "admin" || len(got) != 2 {
		t.Errorf("env file holds %v", got)
	}
	if _, err := os.Lstat(r.path(Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s written in the stack directory too: %v", Name, err)
	}
	r.rerun(s.Memo(), p)

	// Drift in the file at its own path is noticed and repaired.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.step(s.Memo()).Check(context.Background()); err != nil || ok {
		t.Fatalf("Check with the env file 0644 = %v, %v; want false", ok, err)
	}
	r.converge(s.Memo())
	assertFile(t, p, "", 0o600, 0, 0)
}

const webTmpl = "basic_auth_users:\n  acgs_monitor: {{ bcrypt \"PROMETHEUS_PASSWORD\" }}\n"

var hashLine = regexp.MustCompile(`(?m)^  acgs_monitor: (\S+)$`)

// generate: password makes a base64 value; a template turns it into the
// bcrypt hash Prometheus' web.yml wants, kept so that a rerun rewrites
// nothing.
func TestGeneratePasswordBcryptTemplate(t *testing.T) {
	r := newFilesRig(t)
	r.o.Vars = map[string]config.EnvVar{
		"PROMETHEUS_PASSWORD": {Parameter: "PROMETHEUS_PASSWORD", Generate: config.GeneratePassword},
	}
	r.o.Templates = []config.Template{{Source: "prometheus/web.yml.tmpl", Target: "prometheus/web.yml"}}
	r.source("prometheus/web.yml.tmpl", webTmpl)
	s := r.converge(nil)

	pw := r.params.stored["PROMETHEUS_PASSWORD"]
	if raw, err := base64.StdEncoding.Strict().DecodeString(pw); err != nil || len(raw) != 32 {
		t.Fatalf("generated password %q is not 32 bytes in base64 (%v)", pw, err)
	}
	if !r.secrets.has(pw) {
		t.Error("the generated password was not registered with the redactor")
	}
	if got := parse(t, mustRead(t, s.Path()))["PROMETHEUS_PASSWORD"]; got != pw {
		t.Errorf(".env PROMETHEUS_PASSWORD = %q, want the generated value", got)
	}
	web := r.path("prometheus/web.yml")
	assertFile(t, web, "", 0o644, 0, 0)
	m := hashLine.FindSubmatch(mustRead(t, web))
	if m == nil {
		t.Fatalf("web.yml = %q: no hash line", mustRead(t, web))
	}
	if err := bcrypt.CompareHashAndPassword(m[1], []byte(pw)); err != nil {
		t.Fatalf("the rendered hash does not verify the password: %v", err)
	}
	if strings.Contains(string(mustRead(t, web)), pw) {
		t.Error("web.yml, 0644, holds the password itself")
	}
	kept := filepath.Join(r.o.Kept.Dir, "PROMETHEUS_PASSWORD.bcrypt")
	if got := string(mustRead(t, kept)); got != string(m[1]) {
		t.Errorf("the kept hash %q is not the rendered one", got)
	}

	// Rerun: the kept hash, byte for byte; nothing rewritten.
	r.rerun(s.Memo(), web, kept, s.Path())
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const alertmanagerTmpl = `route:
  receiver: default
receivers:
  - name: default
{{- if has "SMTP_PASSWORD" }}
    email_configs:
      - to: ops@example.com
        auth_password: {{ value "SMTP_PASSWORD" }}
{{- end }}
  - name: host-{{ hostname }}
`

func TestTemplateModes(t *testing.T) {
	r := newFilesRig(t)
	r.o.Vars = map[string]config.EnvVar{
		"SMTP_PASSWORD": {Parameter: "SMTP_PASSWORD"},
	}
	r.params.stored["SMTP_PASSWORD"] = "smtp-s3cret"
	r.o.Templates = []config.Template{
		{Source: "alertmanager/alertmanager.yml.tmpl", Target: "alertmanager/alertmanager.yml", Secret: true, Owner: "65534:65534"},
		{Source: "prometheus/prometheus.yml.tmpl", Target: "prometheus/prometheus.yml"},
		{Source: "grafana/grafana.ini.tmpl", Target: "grafana/grafana.ini", Secret: true},
	}
	r.source("alertmanager/alertmanager.yml.tmpl", alertmanagerTmpl)
	r.source("prometheus/prometheus.yml.tmpl", "global:\n  external_labels: {host: {{ hostname }}}\n")
	r.source("grafana/grafana.ini.tmpl", "[smtp]\npassword = {{ value \"SMTP_PASSWORD\" }}\n")
	s := r.converge(nil)

	assertFile(t, r.path("alertmanager/alertmanager.yml"), `route:
  receiver: default
receivers:
  - name: default
    email_configs:
      - to: ops@example.com
        auth_password: smtp-s3cret
  - name: host-monitor-1
`, 0o600, 65534, 65534)
	assertFile(t, r.path("prometheus/prometheus.yml"), "global:\n  external_labels: {host: monitor-1}\n", 0o644, 0, 0)
	assertFile(t, r.path("grafana/grafana.ini"), "[smtp]\npassword = smtp-s3cret\n", 0o600, 0, 0)
	r.rerun(s.Memo(), r.path("alertmanager/alertmanager.yml"), r.path("prometheus/prometheus.yml"), r.path("grafana/grafana.ini"))

	// Drift: a rendered file edited, or its owner changed, is rendered again.
	for name, drift := range map[string]func(p string) error{
		"edited": func(p string) error { return os.WriteFile(p, []byte("receivers: []\n"), 0o600) },
		"owner":  func(p string) error { return os.Chown(p, 0, 0) },
		"mode":   func(p string) error { return os.Chmod(p, 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			p := r.path("alertmanager/alertmanager.yml")
			want := mustRead(t, p)
			if err := drift(p); err != nil {
				t.Fatal(err)
			}
			if ok, err := r.step(s.Memo()).Check(context.Background()); err != nil || ok {
				t.Fatalf("Check after drift = %v, %v; want false", ok, err)
			}
			r.converge(s.Memo())
			assertFile(t, p, string(want), 0o600, 65534, 65534)
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name   string
		tmpl   config.Template
		source *string // nil: no source file
		is     error
		want   []string
	}{
		{
			name:   "value in a template that is not secret",
			tmpl:   config.Template{Source: "alertmanager/alertmanager.yml.tmpl", Target: "alertmanager/alertmanager.yml"},
			source: lit(alertmanagerTmpl),
			is:     render.ErrSecretValue,
			want:   []string{"templates[0]", "alertmanager/alertmanager.yml.tmpl", `"SMTP_PASSWORD"`, "secret: true"},
		},
		{
			name:   "a key env does not declare",
			tmpl:   config.Template{Source: "a.tmpl", Target: "a", Secret: true},
			source: lit(`{{ value "NOT_A_KEY" }}`),
			want:   []string{"templates[0]", "a.tmpl", `"NOT_A_KEY": not a key of env`},
		},
		{
			name:   "parse error",
			tmpl:   config.Template{Source: "a.tmpl", Target: "a"},
			source: lit(`{{ if has "SMTP_PASSWORD" }}`),
			want:   []string{"templates[0]", "a.tmpl"},
		},
		{
			name: "source not in the bundle",
			tmpl: config.Template{Source: "missing.tmpl", Target: "missing"},
			want: []string{"templates[0]", "missing.tmpl", "bundle"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFilesRig(t)
			r.o.Vars = map[string]config.EnvVar{"SMTP_PASSWORD": {Parameter: "SMTP_PASSWORD"}}
			r.params.stored["SMTP_PASSWORD"] = "smtp-s3cret"
			r.o.Templates = []config.Template{tt.tmpl}
			if tt.source != nil {
				r.source(tt.tmpl.Source, *tt.source)
			}
			s := r.step(nil)
			ctx := context.Background()
			for name, err := range map[string]error{
				"Apply": s.Apply(ctx),
				"Check": func() error { _, err := s.Check(ctx); return err }(),
			} {
				if err == nil {
					t.Fatalf("%s: no error", name)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("%s error %v: errors.Is(%v) is false", name, err, tt.is)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s error %q does not mention %q", name, err, w)
					}
				}
				if strings.Contains(err.Error(), "smtp-s3cret") {
					t.Errorf("%s error %q quotes a value", name, err)
				}
			}
			if _, err := os.Lstat(r.path(tt.tmpl.Target)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the target was written: %v", err)
			}
		})
	}
}

// An optional key without a value: has is false, the guarded part is left
// out, and the warning names the key. Once the value exists, the next run
// renders it.
func TestOptionalKeyInTemplate(t *testing.T) {
	r := newFilesRig(t)
	r.o.Vars = map[string]config.EnvVar{
		"SMTP_PASSWORD": {Parameter: "SMTP_PASSWORD", Optional: true, Env: &no, File: "alertmanager/smtp-password"},
	}
	r.o.Templates = []config.Template{{Source: "alertmanager/alertmanager.yml.tmpl", Target: "alertmanager/alertmanager.yml", Secret: true}}
	r.source("alertmanager/alertmanager.yml.tmpl", alertmanagerTmpl)
	s := r.converge(nil)
	target := r.path("alertmanager/alertmanager.yml")
	assertFile(t, target, "route:\n  receiver: default\nreceivers:\n  - name: default\n  - name: host-monitor-1\n", 0o600, 0, 0)
	w := s.Warning()
	for _, want := range []string{"SMTP_PASSWORD", `has "SMTP_PASSWORD"`, "/etc/acgs/operator.env"} {
		if !strings.Contains(w, want) {
			t.Errorf("Warning() = %q, does not mention %q", w, want)
		}
	}
	if strings.Contains(w, "aws ssm") {
		t.Errorf("Warning() = %q points at SSM off AWS", w)
	}

	r.params.stored["SMTP_PASSWORD"] = "smtp-s3cret"
	if ok, err := r.step(s.Memo()).Check(context.Background()); err != nil || ok {
		t.Fatalf("Check once the value exists = %v, %v; want false", ok, err)
	}
	s = r.converge(s.Memo())
	if got := string(mustRead(t, target)); !strings.Contains(got, "auth_password: smtp-s3cret") {
		t.Errorf("alertmanager.yml = %q, want the receiver rendered", got)
	}
	if w := s.Warning(); w != "" {
		t.Errorf("Warning() = %q with the value present", w)
	}
}

func TestCertificate(t *testing.T) {
	r := newFilesRig(t)
	r.o.Certificates = map[string]config.Certificate{
		"prometheus": {KeyFile: "certs/prometheus.key", CertFile: "certs/prometheus.crt", Owner: "65534:65534",
			DNSNames: []string{"prometheus", "monitoring.example.internal"}, IPs: []string{"10.0.0.5"}},
	}
	ctx := context.Background()
	// Check on a fresh host issues nothing: the store is not even made.
	if ok, err := r.step(nil).Check(ctx); err != nil || ok {
		t.Fatalf("Check on a fresh host = %v, %v; want false", ok, err)
	}
	if _, err := os.Stat(r.o.Kept.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Check made the secret store: %v", err)
	}
	s := r.converge(nil)

	keyPath, certPath := r.path("certs/prometheus.key"), r.path("certs/prometheus.crt")
	assertFile(t, keyPath, "", 0o600, 65534, 65534)
	assertFile(t, certPath, "", 0o644, 0, 0)
	pair, err := tls.X509KeyPair(mustRead(t, certPath), mustRead(t, keyPath))
	if err != nil {
		t.Fatalf("key and certificate do not make a pair: %v", err)
	}
	block, _ := pem.Decode(mustRead(t, certPath))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(mustParse(t, pair.Certificate[0])) {
		t.Error("the pair's certificate is not the file's")
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "monitor-1", "192.168.1.20", "prometheus", "monitoring.example.internal", "10.0.0.5"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: h, Roots: roots}); err != nil {
			t.Errorf("a client trusting the certificate refuses it for %s: %v", h, err)
		}
	}
	if err := cert.VerifyHostname("grafana"); err == nil {
		t.Error("the certificate covers a name nobody asked for")
	}
	// The pair in the stack directory is the store's.
	if got := string(mustRead(t, filepath.Join(r.o.Kept.Dir, "prometheus.crt"))); got != string(mustRead(t, certPath)) {
		t.Error("the certificate in the stack directory is not the kept one")
	}
	r.rerun(s.Memo(), keyPath, certPath, filepath.Join(r.o.Kept.Dir, "prometheus.key"))

	// A new name for the host: the pair is reissued and rewritten.
	r.o.Hostname = "monitor-2"
	if ok, err := r.step(s.Memo()).Check(ctx); err != nil || ok {
		t.Fatalf("Check with a new host name = %v, %v; want false", ok, err)
	}
	r.converge(s.Memo())
	block, _ = pem.Decode(mustRead(t, certPath))
	if c, err := x509.ParseCertificate(block.Bytes); err != nil || c.VerifyHostname("monitor-2") != nil {
		t.Errorf("the reissued certificate does not cover monitor-2: %v", err)
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The certificate's hosts: the host's own names, then the configured
// ones, without an IP that does not parse.
func TestHosts(t *testing.T) {
	tests := []struct {
		name     string
		hostname string
		ip       string
		cert     config.Certificate
		dns      []string
		ips      []string
	}{
		{
			name: "host only", hostname: "monitor-1", ip: "192.168.1.20",
			dns: []string{"localhost", "monitor-1"}, ips: []string{"127.0.0.1", "::1", "192.168.1.20"},
		},
		{
			name: "no host name, no IP",
			dns:  []string{"localhost"}, ips: []string{"127.0.0.1", "::1"},
		},
		{
			name: "configured names, duplicates dropped", hostname: "monitor-1", ip: "not an ip",
			cert: config.Certificate{DNSNames: []string{"prometheus", "localhost", "monitor-1"}, IPs: []string{"10.0.0.5", "bad"}},
			dns:  []string{"localhost", "monitor-1", "prometheus"}, ips: []string{"127.0.0.1", "::1", "10.0.0.5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{Hostname: tt.hostname, IP: tt.ip})
			h := s.hosts(tt.cert)
			if strings.Join(h.DNSNames, ",") != strings.Join(tt.dns, ",") {
				t.Errorf("DNS names %v, want %v", h.DNSNames, tt.dns)
			}
			var ips []string
			for _, ip := range h.IPs {
				ips = append(ips, ip.String())
			}
			if strings.Join(ips, ",") != strings.Join(tt.ips, ",") {
				t.Errorf("IPs %v, want %v", ips, tt.ips)
			}
			for _, ip := range h.IPs {
				if net.IP.To16(ip) == nil {
					t.Errorf("a malformed IP %v", ip)
				}
			}
		})
	}
}

func TestGenerateAge(t *testing.T) {
	r := newFilesRig(t)
	r.o.Vars = map[string]config.EnvVar{
		"BACKUP_ENCRYPTION_KEY": {Parameter: "BACKUP_ENCRYPTION_KEY", Generate: config.GenerateAge, File: "backup/age.key", Env: &no},
	}
	s := r.converge(nil)
	v := r.params.stored["BACKUP_ENCRYPTION_KEY"]
	id, err := age.ParseX25519Identity(v)
	if err != nil {
		t.Fatalf("generated %q is not an age identity: %v", v, err)
	}
	if !strings.HasPrefix(id.Recipient().String(), "age1") {
		t.Errorf("recipient %s", id.Recipient())
	}
	assertFile(t, r.path("backup/age.key"), v, 0o600, 0, 0)
	if !r.secrets.has(v) {
		t.Error("the age identity was not registered with the redactor")
	}
	if _, ok := parse(t, mustRead(t, s.Path()))["BACKUP_ENCRYPTION_KEY"]; ok {
		t.Error(".env holds a key with env: false")
	}
	r.rerun(s.Memo(), r.path("backup/age.key"))
	if got := r.params.stored["BACKUP_ENCRYPTION_KEY"]; got != v {
		t.Error("the identity changed on a rerun")
	}
}

// The memo spares a converged rerun the bcrypt verification, but only for
// the very value and hash it verified: a password changed in the store,
// or a hash file replaced, is verified (and rehashed) again.
func TestBcryptMemo(t *testing.T) {
	r := newFilesRig(t)
	r.o.Vars = map[string]config.EnvVar{
		"PROMETHEUS_PASSWORD": {Parameter: "PROMETHEUS_PASSWORD", Generate: config.GeneratePassword},
	}
	r.o.Templates = []config.Template{{Source: "prometheus/web.yml.tmpl", Target: "prometheus/web.yml"}}
	r.source("prometheus/web.yml.tmpl", webTmpl)
	memo := r.converge(nil).Memo()
	if !strings.HasPrefix(memo["bcrypt_hmac"], "PROMETHEUS_PASSWORD=") {
		t.Fatalf("memo bcrypt_hmac = %q, want the verified pair's digest", memo["bcrypt_hmac"])
	}
	kept := filepath.Join(r.o.Kept.Dir, "PROMETHEUS_PASSWORD.bcrypt")
	if strings.Contains(memo["bcrypt_hmac"], string(mustRead(t, kept))) {
		t.Error("the memo holds the hash itself")
	}

	// A hash file replaced by one of another password: the memo's digest
	// no longer matches, bcrypt decides, and the step is not converged.
	other, err := bcrypt.GenerateFromPassword([]byte("not the password"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, other, 0o600); err != nil {
		t.Fatal(err)
	}
	// web.yml made to match it, as a rendering of the foreign hash would.
	web := r.path("prometheus/web.yml")
	old := hashLine.FindSubmatch(mustRead(t, web))[1]
	if err := os.WriteFile(web, bytes.Replace(mustRead(t, web), old, other, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.step(memo).Check(context.Background()); err != nil || ok {
		t.Fatalf("Check with a foreign hash = %v, %v; want false", ok, err)
	}
	memo = r.converge(memo).Memo()

	// The password changed where it is kept: not converged either.
	r.params.stored["PROMETHEUS_PASSWORD"] = "a-new-password-set-by-the-operator"
	if ok, err := r.step(memo).Check(context.Background()); err != nil || ok {
		t.Fatalf("Check after the password changed = %v, %v; want false", ok, err)
	}
	s := r.converge(memo)
	m := hashLine.FindSubmatch(mustRead(t, r.path("prometheus/web.yml")))
	if m == nil || bcrypt.CompareHashAndPassword(m[1], []byte("a-new-password-set-by-the-operator")) != nil {
		t.Error("web.yml's hash is not the new password's")
	}
	r.rerun(s.Memo(), kept)
}

// compose.env_file moved: the next run writes the new file and removes the
// old one, secrets and all.
func TestEnvFileMoved(t *testing.T) {
	r := newFilesRig(t)
	lit := "v"
	r.o.Vars = map[string]config.EnvVar{
		"PW":   {Parameter: "PW", Generate: config.GenerateBase64},
		"USER": {Value: &lit},
	}
	first := r.converge(nil)
	old := first.Path()
	if _, err := os.Stat(old); err != nil {
		t.Fatal(err)
	}
	r.o.EnvFile = "/etc/acgs/monitoring.env"
	s := r.converge(first.Memo())
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the old environment file %s is still there: %v", old, err)
	}
	if got := parse(t, mustRead(t, s.Path())); got["PW"] == "" || got["USER"] != "v" {
		t.Errorf("the moved environment file holds %v", got)
	}
	r.rerun(s.Memo(), s.Path())
}
