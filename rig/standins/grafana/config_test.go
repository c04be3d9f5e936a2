package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The ACGS profile's hardened grafana.ini, as the example bundle ships it.
const acgsINI = `# grafana.ini
[security]
admin_user = acgs_admin
admin_password = $__env{GRAFANA_ADMIN_PASSWORD}
secret_key = $__env{GRAFANA_SECRET_KEY}
disable_gravatar = true
cookie_secure = true
cookie_samesite = strict

[auth.anonymous]
; a comment
enabled = false

[users]
allow_sign_up = false
`

// start runs the server until it has set itself up (the context is
// already cancelled, so it stops right after) and returns its exit code
// and stderr.
func start(t *testing.T, e *env, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var errb bytes.Buffer
	code := run(ctx, append([]string{"server"}, args...), e.getenv, io.Discard, &errb)
	return code, errb.String()
}

// adminIs reports whether the database's admin is user with password.
func adminIs(t *testing.T, e *env, user, password string) bool {
	t.Helper()
	s, err := openStore(e.data).read()
	if err != nil {
		t.Fatalf("read the database: %v", err)
	}
	return s.Admin.check(user, password)
}

// iniEnv is newEnv with the ACGS grafana.ini at GF_PATHS_CONFIG and no
// GF_SECURITY_* variables: the credentials come from the file.
func iniEnv(t *testing.T, ini string) *env {
	e := newEnv(t, nil)
	delete(e.vars, "GF_SECURITY_ADMIN_USER")
	delete(e.vars, "GF_SECURITY_ADMIN_PASSWORD")
	if err := os.WriteFile(e.vars["GF_PATHS_CONFIG"], []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestConfigFileCredentials(t *testing.T) {
	e := iniEnv(t, acgsINI)
	e.vars["GRAFANA_ADMIN_PASSWORD"] = "from-env-file"
	e.vars["GRAFANA_SECRET_KEY"] = "k"
	if code, stderr := start(t, e); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !adminIs(t, e, "acgs_admin", "from-env-file") {
		t.Error("the admin is not acgs_admin with $__env{GRAFANA_ADMIN_PASSWORD}")
	}
}

// GF_<SECTION>_<KEY> variables win over the file, as in Grafana.
func TestEnvOverridesConfigFile(t *testing.T) {
	e := iniEnv(t, acgsINI)
	e.vars["GRAFANA_ADMIN_PASSWORD"] = "from-env-file"
	e.vars["GF_SECURITY_ADMIN_USER"] = "root"
	e.vars["GF_SECURITY_ADMIN_PASSWORD"] = "from-gf-var"
	if code, stderr := start(t, e); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !adminIs(t, e, "root", "from-gf-var") {
		t.Error("GF_SECURITY_ADMIN_* did not override the file")
	}
}

func TestConfigFileEmptyPasswordRefused(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"unset":              {},
		"empty":              {"GRAFANA_ADMIN_PASSWORD": ""},
		"empty GF_ override": {"GRAFANA_ADMIN_PASSWORD": "", "GF_SECURITY_ADMIN_PASSWORD": ""},
	} {
		t.Run(name, func(t *testing.T) {
			e := iniEnv(t, acgsINI)
			for k, v := range vars {
				e.vars[k] = v
			}
			code, stderr := start(t, e)
			if code != 1 || !strings.Contains(stderr, "admin_password in "+e.vars["GF_PATHS_CONFIG"]+" resolves to nothing") {
				t.Errorf("exit %d, stderr %q", code, stderr)
			}
			if _, err := os.Stat(filepath.Join(e.data, "grafana.db")); err == nil {
				t.Error("database created although the start was refused")
			}
		})
	}
}

func TestConfigFileExpanders(t *testing.T) {
	e := iniEnv(t, "")
	pw := filepath.Join(e.dir, "admin_password")
	os.WriteFile(pw, []byte("  from-file\n"), 0o600)
	os.WriteFile(e.vars["GF_PATHS_CONFIG"], []byte("[security]\nadmin_user = \"${ADMIN}\"\nadmin_password = $__file{"+pw+"}\n[server]\nhttp_addr = 127.0.0.1\n"), 0o644)
	e.vars["ADMIN"] = "ops"
	if code, stderr := start(t, e); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !adminIs(t, e, "ops", "from-file") {
		t.Error("the admin is not ops with the trimmed file content")
	}

	// A $__file{} whose file is missing stops Grafana.
	e = iniEnv(t, "[security]\nadmin_password = $__file{/nonexistent/pw}\n")
	if code, stderr := start(t, e); code != 1 || !strings.Contains(stderr, "security.admin_password") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
}

// --config names a file that must exist; GF_PATHS_CONFIG's may be absent.
func TestConfigFlag(t *testing.T) {
	e := newEnv(t, nil)
	if code, stderr := start(t, e, "--config", filepath.Join(e.dir, "missing.ini")); code != 1 || !strings.Contains(stderr, "missing.ini") {
		t.Errorf("missing --config: exit %d, stderr %q", code, stderr)
	}
	ini := filepath.Join(e.dir, "other.ini")
	os.WriteFile(ini, []byte("[security]\nadmin_password = flagged\n"), 0o644)
	delete(e.vars, "GF_SECURITY_ADMIN_PASSWORD")
	if code, stderr := start(t, e, "--config="+ini); code != 0 || !adminIs(t, e, "admin", "flagged") {
		t.Errorf("--config: exit %d, stderr %q", code, stderr)
	}
}

func TestParseINI(t *testing.T) {
	got := map[string]string{}
	err := parseINI([]byte("top = 1\n[Auth.Anonymous]\n# c\n ; c\nenabled = true\n[security]\nsecret_key = `a#b`\nadmin_password = \"p;w\"\nempty =\n"), got)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".top": "1", "auth.anonymous.enabled": "true", "security.secret_key": "a#b", "security.admin_password": "p;w", "security.empty": ""}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if err := parseINI([]byte("[security\n"), map[string]string{}); err == nil {
		t.Error("unclosed section accepted")
	}
	if err := parseINI([]byte("[security]\njust words\n"), map[string]string{}); err == nil {
		t.Error("a line without = accepted")
	}
	if k := envKey("auth.anonymous.enabled"); k != "GF_AUTH_ANONYMOUS_ENABLED" {
		t.Errorf("envKey: %s", k)
	}
}

func TestInterpolate(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("line1\nline2\n"), 0o644)
	getenv := func(k string) string { return map[string]string{"A": "1", "B": "2"}[k] }
	got, err := interpolate("$A ${B} $__env{A} $__file{"+f+"} $$A", getenv)
	if want := "1 2 1 line1\nline2 $A"; err != nil || got != want {
		t.Errorf("interpolate: %q, %v; want %q", got, err, want)
	}
	if _, err := interpolate("$__file{"+filepath.Join(dir, "missing")+"}", getenv); err == nil {
		t.Error("a missing $__file{} interpolated without error")
	}
}

// The ACGS profile's Prometheus: https with a self-signed certificate and
// basic auth. Its provisioned datasource must probe healthy with the CA
// and password given, and fail without either.
func TestDatasourceHealthTLSBasicAuth(t *testing.T) {
	var gotAuth []string
	prom := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		gotAuth = append(gotAuth, user+":"+pass)
		if !ok || user != "acgs_monitor" || pass != "pr0m" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[0,"2"]}}`)
	}))
	prom.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	prom.StartTLS()
	defer prom.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: prom.Certificate().Raw})
	e := newEnv(t, nil)
	caFile := filepath.Join(e.dir, "prometheus.crt")
	os.WriteFile(caFile, ca, 0o644)
	e.vars["PROMETHEUS_PASSWORD"] = "pr0m"
	e.vars["CA_PEM"] = string(ca)

	ds := func(uid, extra string) string {
		return `
  - name: ` + uid + `
    type: prometheus
    uid: ` + uid + `
    url: ` + prom.URL + `
` + extra
	}
	file := "apiVersion: 1\ndatasources:\n" +
		ds("ok", `    basicAuth: true
    basicAuthUser: acgs_monitor
    jsonData:
      tlsAuthWithCACert: true
    secureJsonData:
      basicAuthPassword: $PROMETHEUS_PASSWORD
      tlsCACert: $__file{`+caFile+`}
`) +
		// The PEM from a variable, multi-line: interpolated after parsing.
		ds("ca-from-env", `    basicAuth: true
    basicAuthUser: acgs_monitor
    jsonData:
      tlsAuthWithCACert: true
    secureJsonData:
      basicAuthPassword: ${PROMETHEUS_PASSWORD}
      tlsCACert: $CA_PEM
`) +
		ds("wrong-password", `    basicAuth: true
    basicAuthUser: acgs_monitor
    jsonData:
      tlsAuthWithCACert: true
    secureJsonData:
      basicAuthPassword: nope
      tlsCACert: $__file{`+caFile+`}
`) +
		ds("no-basic-auth", `    jsonData:
      tlsAuthWithCACert: true
    secureJsonData:
      tlsCACert: $__file{`+caFile+`}
`) +
		ds("no-ca", `    basicAuth: true
    basicAuthUser: acgs_monitor
    secureJsonData:
      basicAuthPassword: $PROMETHEUS_PASSWORD
`) +
		ds("bad-ca", `    basicAuth: true
    basicAuthUser: acgs_monitor
    jsonData:
      tlsAuthWithCACert: true
    secureJsonData:
      basicAuthPassword: $PROMETHEUS_PASSWORD
      tlsCACert: not a certificate
`) +
		ds("skip-verify", `    basicAuth: true
    basicAuthUser: acgs_monitor
    jsonData:
      tlsSkipVerify: true
    secureJsonData:
      basicAuthPassword: $PROMETHEUS_PASSWORD
`) +
		ds("wrong-server-name", `    basicAuth: true
    basicAuthUser: acgs_monitor
    jsonData:
      tlsAuthWithCACert: true
      serverName: prometheus.invalid
    secureJsonData:
      basicAuthPassword: $PROMETHEUS_PASSWORD
      tlsCACert: $__file{`+caFile+`}
`)
	os.WriteFile(filepath.Join(e.prov, "datasources", "datasources.yml"), []byte(file), 0o644)
	h := newApp(t, e).handler()

	for uid, want := range map[string]struct {
		code int
		msg  string
	}{
		"ok":                {200, "Successfully queried"},
		"ca-from-env":       {200, "Successfully queried"},
		"skip-verify":       {200, "Successfully queried"},
		"wrong-password":    {400, "401"},
		"no-basic-auth":     {400, "401"},
		"no-ca":             {400, "certificate"},
		"bad-ca":            {400, "tlsCACert"},
		"wrong-server-name": {400, "prometheus.invalid"},
	} {
		code, body := call(t, h, "GET", "/api/datasources/uid/"+uid+"/health", "admin", "s3cret", nil)
		var res struct{ Status, Message string }
		json.Unmarshal(body, &res)
		if code != want.code || !strings.Contains(res.Message, want.msg) {
			t.Errorf("%s: HTTP %d %s, want %d with %q", uid, code, body, want.code, want.msg)
		}
	}
	if !strings.Contains(strings.Join(gotAuth, " "), "acgs_monitor:pr0m") {
		t.Errorf("Prometheus never saw the password; it saw %q", gotAuth)
	}

	// The password stays out of the API's answers.
	if _, body := call(t, h, "GET", "/api/datasources/uid/ok", "admin", "s3cret", nil); bytes.Contains(body, []byte("pr0m")) || !bytes.Contains(body, []byte(`"basicAuthUser":"acgs_monitor"`)) {
		t.Errorf("GET datasource: %s", body)
	}
}

// A $__file{} in a datasource whose file is missing fails provisioning.
func TestDatasourceMissingFile(t *testing.T) {
	e := newEnv(t, nil)
	os.WriteFile(filepath.Join(e.prov, "datasources", "datasources.yml"), []byte("apiVersion: 1\ndatasources:\n  - name: P\n    type: prometheus\n    secureJsonData:\n      tlsCACert: $__file{/nonexistent.crt}\n"), 0o644)
	code, stderr := start(t, e)
	if code != 1 || !strings.Contains(stderr, "Datasource provisioning error") || !strings.Contains(stderr, "/nonexistent.crt") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
