package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The seed stack's datasources.yml, with the URLs of the services replaced
// by PROM, LOKI, TEMPO and PG.
const seedDatasources = `apiVersion: 1

datasources:
  - name: Prometheus
    type: prometheus
    uid: prometheus
    access: proxy
    url: PROM
    isDefault: true
    editable: false

  - name: Loki
    type: loki
    uid: loki
    access: proxy
    url: LOKI
    isDefault: false
    editable: false
    jsonData:
      maxLines: 1000

  - name: CloudWatch
    type: cloudwatch
    uid: cloudwatch
    access: proxy
    isDefault: false
    editable: false
    jsonData:
      authType: default
      defaultRegion: eu-west-1
      endpoint: CW

  - name: Tempo
    type: tempo
    uid: tempo
    access: proxy
    url: TEMPO
    isDefault: false
    editable: false
    jsonData:
      tracesToLogsV2:
        datasourceUid: loki

  - name: Steampipe
    type: postgres
    uid: steampipe
    access: proxy
    url: PG
    isDefault: false
    editable: false
    jsonData:
      database: steampipe
      sslmode: disable
    secureJsonData:
      user: steampipe
      password: ""
`

const seedProviders = `apiVersion: 1

providers:
  - name: "default"
    orgId: 1
    folder: ""
    type: file
    disableDeletion: false
    updateIntervalSeconds: 30
    options:
      path: DASHBOARDS
`

type env struct {
	dir, data, prov, dashboards string
	vars                        map[string]string
}

func (e *env) getenv(k string) string { return e.vars[k] }

// newEnv lays out provisioning and data directories like the seed's
// (datasource URLs from urls: PROM, LOKI, TEMPO, PG, CW).
func newEnv(t *testing.T, urls map[string]string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, data: filepath.Join(dir, "data"), prov: filepath.Join(dir, "provisioning"), dashboards: filepath.Join(dir, "dashboards")}
	for _, d := range []string{e.data, e.dashboards, filepath.Join(e.prov, "datasources"), filepath.Join(e.prov, "dashboards")} {
		os.MkdirAll(d, 0o755)
	}
	r := []string{}
	for _, k := range []string{"PROM", "LOKI", "TEMPO", "PG", "CW"} {
		v := urls[k]
		if v == "" {
			v = "http://127.0.0.1:1"
		}
		r = append(r, k, v)
	}
	os.WriteFile(filepath.Join(e.prov, "datasources", "datasources.yml"), []byte(strings.NewReplacer(r...).Replace(seedDatasources)), 0o644)
	os.WriteFile(filepath.Join(e.prov, "dashboards", "dashboards.yml"), []byte(strings.ReplaceAll(seedProviders, "DASHBOARDS", e.dashboards)), 0o644)
	for uid, title := range map[string]string{"loki-logs": "Loki Logs", "infrastructure-health": "Infrastructure Health"} {
		os.WriteFile(filepath.Join(e.dashboards, uid+".json"), []byte(`{"id":null,"uid":"`+uid+`","title":"`+title+`","tags":["seed"],"panels":[]}`), 0o644)
	}
	e.vars = map[string]string{
		"GF_SECURITY_ADMIN_USER": "admin", "GF_SECURITY_ADMIN_PASSWORD": "s3cret",
		"GF_PATHS_DATA": e.data, "GF_PATHS_PROVISIONING": e.prov, "GF_SERVER_HTTP_ADDR": "127.0.0.1", "GF_SERVER_HTTP_PORT": "0",
		// Absent unless a test writes it: the host's /etc/grafana/grafana.ini must not leak in.
		"GF_PATHS_CONFIG": filepath.Join(dir, "grafana.ini"),
	}
	return e
}

// newApp builds the app the way run does, without listening.
func newApp(t *testing.T, e *env) *app {
	t.Helper()
	st := openStore(e.data)
	if _, err := st.init(e.vars["GF_SECURITY_ADMIN_USER"], e.vars["GF_SECURITY_ADMIN_PASSWORD"], time.Now()); err != nil {
		t.Fatal(err)
	}
	dss, err := loadDatasources(filepath.Join(e.prov, "datasources"), e.getenv)
	if err != nil {
		t.Fatal(err)
	}
	provs, err := loadProviders(filepath.Join(e.prov, "dashboards"), e.getenv)
	if err != nil {
		t.Fatal(err)
	}
	return &app{store: st, datasources: dss, providers: provs, client: &http.Client{Timeout: 5 * time.Second}, now: time.Now, logf: func(string, ...any) {}}
}

func call(t *testing.T, h http.Handler, method, path, user, pass string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func TestRefusesEmptyPassword(t *testing.T) {
	e := newEnv(t, nil)
	e.vars["GF_SECURITY_ADMIN_PASSWORD"] = ""
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"server"}, e.getenv, io.Discard, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "GF_SECURITY_ADMIN_PASSWORD is empty") {
		t.Errorf("stderr %q", errb.String())
	}
	if _, err := os.Stat(filepath.Join(e.data, "grafana.db")); err == nil {
		t.Error("database created although the start was refused")
	}
}

func TestRefusesTwoDefaultDatasources(t *testing.T) {
	e := newEnv(t, nil)
	p := filepath.Join(e.prov, "datasources", "datasources.yml")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "isDefault: false", "isDefault: true", 1)), 0o644)
	var errb bytes.Buffer
	if code := run(context.Background(), nil, e.getenv, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "Only one datasource per organization can be marked as default") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

func TestRunCreatesDatabaseAndServes(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, nil, e.getenv, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(e.data, "grafana.db")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "HTTP Server Listen") {
		t.Errorf("stdout %s", out.String())
	}
}

func TestHealthAndAuth(t *testing.T) {
	e := newEnv(t, nil)
	h := newApp(t, e).handler()
	code, body := call(t, h, "GET", "/api/health", "", "", nil)
	if code != 200 || !strings.Contains(string(body), `"database":"ok"`) {
		t.Errorf("/api/health %d %s", code, body)
	}
	if code, _ := call(t, h, "GET", "/api/datasources", "", "", nil); code != 401 {
		t.Errorf("no credentials: %d", code)
	}
	if code, body := call(t, h, "GET", "/api/datasources", "admin", "wrong", nil); code != 401 || !strings.Contains(string(body), "Invalid username or password") {
		t.Errorf("wrong password: %d %s", code, body)
	}
	if code, _ := call(t, h, "GET", "/api/search", "root", "s3cret", nil); code != 401 {
		t.Errorf("wrong user: %d", code)
	}
	if code, _ := call(t, h, "GET", "/api/datasources", "admin", "s3cret", nil); code != 200 {
		t.Errorf("right credentials: %d", code)
	}
}

func TestDatasources(t *testing.T) {
	e := newEnv(t, nil)
	h := newApp(t, e).handler()
	code, body := call(t, h, "GET", "/api/datasources", "admin", "s3cret", nil)
	var dss []datasource
	if code != 200 || json.Unmarshal(body, &dss) != nil || len(dss) != 5 {
		t.Fatalf("%d %s", code, body)
	}
	if dss[0].UID != "prometheus" || !dss[0].IsDefault || !dss[0].ReadOnly || dss[4].Type != "postgres" || dss[1].JSONData["maxLines"] != float64(1000) {
		t.Errorf("%+v", dss)
	}
	if strings.Contains(string(body), "secureJsonData") {
		t.Error("secure fields exposed")
	}
	if code, body := call(t, h, "GET", "/api/datasources/uid/loki", "admin", "s3cret", nil); code != 200 || !strings.Contains(string(body), `"name":"Loki"`) {
		t.Errorf("by uid: %d %s", code, body)
	}
	if code, _ := call(t, h, "GET", "/api/datasources/uid/nope", "admin", "s3cret", nil); code != 404 {
		t.Errorf("unknown uid: %d", code)
	}
}

func TestDatasourceHealth(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/query":
			io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[0,"2"]}}`)
		case "/loki/api/v1/labels":
			io.WriteString(w, `{"status":"success","data":[]}`)
		case "/api/echo":
			io.WriteString(w, "echo")
		default:
			http.NotFound(w, r)
		}
	}))
	defer up.Close()
	pg, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	go func() {
		for {
			c, err := pg.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	e := newEnv(t, map[string]string{"PROM": up.URL, "LOKI": up.URL, "TEMPO": up.URL, "PG": pg.Addr().String(), "CW": "https://127.0.0.1:1"})
	h := newApp(t, e).handler()
	for uid, want := range map[string]int{"prometheus": 200, "loki": 200, "tempo": 200, "steampipe": 200, "cloudwatch": 400} {
		code, body := call(t, h, "GET", "/api/datasources/uid/"+uid+"/health", "admin", "s3cret", nil)
		var res struct{ Status, Message string }
		json.Unmarshal(body, &res)
		wantStatus := map[int]string{200: "OK", 400: "ERROR"}[want]
		if code != want || res.Status != wantStatus || res.Message == "" {
			t.Errorf("%s: %d %s, want %d %s", uid, code, body, want, wantStatus)
		}
	}

	// Everything down: every check fails with Grafana's 400.
	down := newEnv(t, nil)
	h = newApp(t, down).handler()
	for _, uid := range []string{"prometheus", "loki", "tempo", "steampipe"} {
		if code, body := call(t, h, "GET", "/api/datasources/uid/"+uid+"/health", "admin", "s3cret", nil); code != 400 || !strings.Contains(string(body), `"status":"ERROR"`) {
			t.Errorf("%s down: %d %s", uid, code, body)
		}
	}
}

func search(t *testing.T, h http.Handler, q string) []hit {
	t.Helper()
	code, body := call(t, h, "GET", "/api/search"+q, "admin", "s3cret", nil)
	var hits []hit
	if code != 200 || json.Unmarshal(body, &hits) != nil {
		t.Fatalf("search %s: %d %s", q, code, body)
	}
	return hits
}

func TestSearchAndSave(t *testing.T) {
	e := newEnv(t, nil)
	h := newApp(t, e).handler()
	hits := search(t, h, "")
	if len(hits) != 2 || hits[0].Title != "Infrastructure Health" || hits[1].UID != "loki-logs" || hits[0].Type != "dash-db" || hits[1].URL != "/d/loki-logs/loki-logs" {
		t.Fatalf("provisioned: %+v", hits)
	}

	dash := map[string]any{"dashboard": map[string]any{"id": nil, "uid": "rig-test", "title": "Rig Test", "tags": []string{"rig"}}, "overwrite": false}
	code, body := call(t, h, "POST", "/api/dashboards/db", "admin", "s3cret", dash)
	if code != 200 || !strings.Contains(string(body), `"status":"success"`) || !strings.Contains(string(body), `"version":1`) {
		t.Fatalf("save: %d %s", code, body)
	}
	if hits := search(t, h, "?query=rig"); len(hits) != 1 || hits[0].UID != "rig-test" || hits[0].Tags[0] != "rig" {
		t.Errorf("search after save: %+v", hits)
	}
	if hits := search(t, h, "?tag=seed"); len(hits) != 2 {
		t.Errorf("tag search: %+v", hits)
	}
	// Saving again without overwrite and without the version: 412, like Grafana.
	if code, body := call(t, h, "POST", "/api/dashboards/db", "admin", "s3cret", dash); code != 412 || !strings.Contains(string(body), "version-mismatch") {
		t.Errorf("resave: %d %s", code, body)
	}
	dash["overwrite"] = true
	if code, body := call(t, h, "POST", "/api/dashboards/db", "admin", "s3cret", dash); code != 200 || !strings.Contains(string(body), `"version":2`) {
		t.Errorf("overwrite: %d %s", code, body)
	}
	// A provisioned dashboard cannot be saved; a title is required.
	if code, body := call(t, h, "POST", "/api/dashboards/db", "admin", "s3cret", map[string]any{"dashboard": map[string]any{"uid": "loki-logs", "title": "Mine"}, "overwrite": true}); code != 400 || !strings.Contains(string(body), "Cannot save provisioned dashboard") {
		t.Errorf("provisioned: %d %s", code, body)
	}
	if code, _ := call(t, h, "POST", "/api/dashboards/db", "admin", "s3cret", map[string]any{"dashboard": map[string]any{"title": ""}}); code != 400 {
		t.Errorf("empty title: %d", code)
	}
	if code, body := call(t, h, "POST", "/api/dashboards/db", "admin", "s3cret", map[string]any{"dashboard": map[string]any{"title": "Loki Logs"}}); code != 412 || !strings.Contains(string(body), "name-exists") {
		t.Errorf("same title: %d %s", code, body)
	}
	if code, _ := call(t, h, "POST", "/api/dashboards/db", "", "", dash); code != 401 {
		t.Errorf("unauthenticated save: %d", code)
	}
	code, body = call(t, h, "GET", "/api/dashboards/uid/rig-test", "admin", "s3cret", nil)
	if code != 200 || !strings.Contains(string(body), `"title":"Rig Test"`) || !strings.Contains(string(body), `"provisioned":false`) {
		t.Errorf("get: %d %s", code, body)
	}

	// A new process on the same data directory (a container recreated on
	// the same volume) still lists the saved dashboard.
	h2 := newApp(t, e).handler()
	if hits := search(t, h2, ""); len(hits) != 3 {
		t.Errorf("after restart: %+v", hits)
	}
	// A removed file takes its provisioned dashboard along.
	os.Remove(filepath.Join(e.dashboards, "loki-logs.json"))
	if hits := search(t, h2, "?type=dash-db"); len(hits) != 2 {
		t.Errorf("after removing a file: %+v", hits)
	}
	if code, _ := call(t, h2, "DELETE", "/api/dashboards/uid/rig-test", "admin", "s3cret", nil); code != 200 {
		t.Errorf("delete: %d", code)
	}
	if code, _ := call(t, h2, "DELETE", "/api/dashboards/uid/infrastructure-health", "admin", "s3cret", nil); code != 400 {
		t.Errorf("delete provisioned: %d", code)
	}
}

// Like Grafana, the admin password is set on first start only.
func TestAdminPasswordKeptAcrossRestarts(t *testing.T) {
	e := newEnv(t, nil)
	newApp(t, e)
	e.vars["GF_SECURITY_ADMIN_PASSWORD"] = "changed"
	h := newApp(t, e).handler()
	if code, _ := call(t, h, "GET", "/api/search", "admin", "changed", nil); code != 401 {
		t.Errorf("new env password accepted: %d", code)
	}
	if code, _ := call(t, h, "GET", "/api/search", "admin", "s3cret", nil); code != 200 {
		t.Errorf("stored password refused: %d", code)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"cli", "admin", "reset-admin-password", "newpw"}, e.getenv, &out, &out); code != 0 {
		t.Fatalf("reset: %d %s", code, out.String())
	}
	if code, _ := call(t, h, "GET", "/api/search", "admin", "newpw", nil); code != 200 {
		t.Errorf("reset password refused: %d", code)
	}
}

func TestUnwritableDataDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere: use a path below a file instead.
		e := newEnv(t, nil)
		f := filepath.Join(e.dir, "file")
		os.WriteFile(f, nil, 0o644)
		e.vars["GF_PATHS_DATA"] = filepath.Join(f, "data")
		var errb bytes.Buffer
		if code := run(context.Background(), nil, e.getenv, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "is not writable") {
			t.Errorf("exit %d, stderr %q", code, errb.String())
		}
		return
	}
	e := newEnv(t, nil)
	os.Chmod(e.data, 0o555)
	defer os.Chmod(e.data, 0o755)
	var errb bytes.Buffer
	if code := run(context.Background(), nil, e.getenv, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "is not writable") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

func TestSlugifyAndExpandEnv(t *testing.T) {
	if got := slugify("Next.js Application Metrics"); got != "next-js-application-metrics" {
		t.Errorf("slugify: %q", got)
	}
	got := expandEnv("a $X ${Y} $$Z", func(k string) string { return map[string]string{"X": "1", "Y": "2"}[k] })
	if got != "a 1 2 $Z" {
		t.Errorf("expandEnv: %q", got)
	}
}
