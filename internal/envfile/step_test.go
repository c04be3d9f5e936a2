package envfile

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/seal"
	"github.com/monagent/monagent/internal/ssmparam"
	"github.com/monagent/monagent/rig/awssim/simtest"
	"github.com/monagent/monagent/rig/awssim/ssmsim"
)

const stackDir = "/opt/monitoring"

// recorder is a fake redactor: it remembers what it was told.
type recorder struct {
	mu    sync.Mutex
	added []string
}

func (r *recorder) Add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.added = append(r.added, s)
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.added, s)
}

// fakeParams is SSM get-or-create: Create on an existing name returns the
// stored value.
type fakeParams struct {
	stored map[string]string
	// appear is stored just before Create runs: another instance won the race.
	appear map[string]string
	// err is what GetMany fails with.
	err error
	// secrets, when set, is checked by Create: the value must be known first.
	secrets *recorder

	getCalls   [][]string
	creates    []string
	unredacted []string // values Create received before they were registered
}

func (p *fakeParams) GetMany(_ context.Context, names []string) (map[string]ssmparam.Parameter, []string, error) {
	p.getCalls = append(p.getCalls, slices.Clone(names))
	if p.err != nil {
		return nil, nil, p.err
	}
	found := map[string]ssmparam.Parameter{}
	var missing []string
	for _, n := range names {
		if v, ok := p.stored[n]; ok {
			found[n] = ssmparam.Parameter{Name: n, Value: v, Type: ssmtypes.ParameterTypeSecureString}
		} else {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

func (p *fakeParams) Create(_ context.Context, name, value string) (ssmparam.Parameter, error) {
	p.creates = append(p.creates, name)
	if p.secrets != nil && !p.secrets.has(value) {
		p.unredacted = append(p.unredacted, value)
	}
	if v, ok := p.appear[name]; ok {
		p.stored[name] = v
	}
	if v, ok := p.stored[name]; ok {
		return ssmparam.Parameter{Name: name, Value: v, Type: ssmtypes.ParameterTypeSecureString}, nil
	}
	p.stored[name] = value
	return ssmparam.Parameter{Name: name, Value: value, Type: ssmtypes.ParameterTypeSecureString}, nil
}

func lit(s string) *string { return &s }

var no = false

// vars is the seed's mapping.
func vars() map[string]config.EnvVar {
	return map[string]config.EnvVar{
		"GRAFANA_ADMIN_USER":     {Value: lit("admin")},
		"GRAFANA_ADMIN_PASSWORD": {Parameter: "/mon/grafana/admin-password"},
		"GITHUB_TOKEN":           {Parameter: "/mon/github/api-token", Optional: true, Services: []string{"github-actions-exporter"}},
		"METRICS_TOKEN": {Parameter: "/mon/prometheus/metrics-bearer-token", Generate: config.GenerateHex32,
			File: "prometheus/secrets/metrics-token", FileOwner: "65534:65534", Env: &no},
	}
}

type rig struct {
	t       *testing.T
	root    string
	vars    map[string]config.EnvVar
	params  *fakeParams
	secrets *recorder
}

func newRig(t *testing.T) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests chown secret files: run them as root (CI does)")
	}
	sec := &recorder{}
	return &rig{t: t, root: t.TempDir(), vars: vars(), secrets: sec,
		params: &fakeParams{stored: map[string]string{"/mon/grafana/admin-password": `pa"ss $word`}, secrets: sec}}
}

func (r *rig) step(memo map[string]string) *Step {
	s := New(Options{Root: r.root, Dir: stackDir, Vars: r.vars, Params: r.params, Secrets: r.secrets, Seal: testKey})
	s.Restore(memo)
	return s
}

var testKey = seal.NewKey([]byte("test key"))

// disabled is what the compose step leaves out, read from what was written.
func (r *rig) disabled() []string {
	return Disabled(filepath.Join(r.root, stackDir), r.vars, r.env())
}

func (r *rig) path(rel string) string { return filepath.Join(r.root, stackDir, rel) }

// converge is one run that applies: Check, Apply, Check to confirm. It
// returns the step, for its memo and warnings.
func (r *rig) converge(memo map[string]string) *Step {
	r.t.Helper()
	s := r.step(memo)
	ctx := context.Background()
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

func (r *rig) env() map[string]string {
	r.t.Helper()
	b, err := os.ReadFile(r.path(Name))
	if err != nil {
		r.t.Fatal(err)
	}
	return parse(r.t, b)
}

type fileInfo struct {
	mode     os.FileMode
	uid, gid uint32
	ino      uint64
	mtime    time.Time
}

func stat(t *testing.T, p string) fileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileInfo{fi.Mode(), st.Uid, st.Gid, st.Ino, fi.ModTime()}
}

func TestRender(t *testing.T) {
	r := newRig(t)
	r.params.stored["/mon/github/api-token"] = "ghp_secret"
	s := r.converge(nil)

	got := r.env()
	want := map[string]string{"GRAFANA_ADMIN_USER": "admin", "GRAFANA_ADMIN_PASSWORD": `pa"ss $word`, "GITHUB_TOKEN": "ghp_secret"}
	if len(got) != len(want) {
		t.Errorf(".env holds %v, want %v (METRICS_TOKEN has env: false)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf(".env %s = %q, want %q", k, got[k], v)
		}
	}
	if fi := stat(t, r.path(Name)); fi.mode != 0o600 || fi.uid != 0 || fi.gid != 0 {
		t.Errorf(".env mode %v owner %d:%d, want 0600 root", fi.mode, fi.uid, fi.gid)
	}
	token := r.params.stored["/mon/prometheus/metrics-bearer-token"]
	if b, err := os.ReadFile(r.path("prometheus/secrets/metrics-token")); err != nil || string(b) != token {
		t.Errorf("metrics-token = %q, %v; want the stored value %q", b, err, token)
	}
	if fi := stat(t, r.path("prometheus/secrets/metrics-token")); fi.mode != 0o600 || fi.uid != 65534 || fi.gid != 65534 {
		t.Errorf("metrics-token mode %v owner %d:%d, want 0600 65534:65534", fi.mode, fi.uid, fi.gid)
	}
	if d := r.disabled(); len(d) != 0 {
		t.Errorf("Disabled() = %v with every value present", d)
	}
	if w := s.Warning(); w != "" {
		t.Errorf("Warning() = %q", w)
	}
	// One batched read per run, of every parameter, once.
	if len(r.params.getCalls) != 1 || len(r.params.getCalls[0]) != 3 {
		t.Errorf("GetMany calls %v, want one with the 3 parameters", r.params.getCalls)
	}
	b, _ := os.ReadFile(r.path(Name))
	bare := sha256.Sum256(b)
	if m := s.Memo()["env_hmac"]; len(m) != 64 || m == hex.EncodeToString(bare[:]) {
		t.Errorf("memo env_hmac = %q: want a keyed digest, not the bare SHA-256 of .env", m)
	}
}

func TestMissingRequiredParameter(t *testing.T) {
	r := newRig(t)
	r.params.stored = map[string]string{}
	r.vars["LOKI_PASSWORD"] = config.EnvVar{Parameter: "/mon/loki/password"}
	s := r.step(nil)
	ctx := context.Background()
	_, err := s.Check(ctx)
	for name, err := range map[string]error{"Check": err, "Apply": s.Apply(ctx)} {
		if !retry.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent error", name, err)
			continue
		}
		for _, want := range []string{
			"env.GRAFANA_ADMIN_PASSWORD", "/mon/grafana/admin-password",
			"aws ssm put-parameter --name /mon/grafana/admin-password --type SecureString",
			"env.LOKI_PASSWORD", "/mon/loki/password", "aws ssm put-parameter --name /mon/loki/password",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", name, err, want)
			}
		}
	}
	if len(r.params.creates) != 0 {
		t.Errorf("created %v although the run fails", r.params.creates)
	}
	if _, err := os.Lstat(r.path(Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".env written although a required value is missing: %v", err)
	}
}

func TestMissingOptionalParameter(t *testing.T) {
	r := newRig(t)
	r.vars["SLACK_WEBHOOK"] = config.EnvVar{Parameter: "/mon/slack/webhook", Optional: true,
		Services: []string{"alertmanager", "slack-relay"}}
	s := r.converge(nil)

	b, err := os.ReadFile(r.path(Name))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"GITHUB_TOKEN", "SLACK_WEBHOOK"} {
		if strings.Contains(string(b), k) {
			t.Errorf(".env mentions %s, whose parameter is absent:\n%s", k, b)
		}
	}
	if env := r.env(); env["GRAFANA_ADMIN_PASSWORD"] != `pa"ss $word` {
		t.Errorf("the other values are not written: %v", env)
	}
	if got, want := r.disabled(), []string{"alertmanager", "github-actions-exporter", "slack-relay"}; !slices.Equal(got, want) {
		t.Errorf("Disabled() = %v, want %v", got, want)
	}
	w := s.Warning()
	for _, want := range []string{
		"/mon/github/api-token", "github-actions-exporter is left out", "aws ssm put-parameter --name /mon/github/api-token",
		"/mon/slack/webhook", "alertmanager, slack-relay are left out", "aws ssm put-parameter --name /mon/slack/webhook",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("Warning() = %q; want it to say %q", w, want)
		}
	}

	// The token is then created: the next run writes it and enables its services.
	r.params.stored["/mon/github/api-token"] = "ghp_new"
	memo := s.Memo()
	s = r.step(memo)
	if ok, err := s.Check(context.Background()); err != nil || ok {
		t.Fatalf("Check once the token exists = %v, %v; want false", ok, err)
	}
	if err := s.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.env()["GITHUB_TOKEN"]; got != "ghp_new" {
		t.Errorf("GITHUB_TOKEN = %q, want ghp_new", got)
	}
	if got := r.disabled(); !slices.Equal(got, []string{"alertmanager", "slack-relay"}) {
		t.Errorf("Disabled() = %v", got)
	}
}

// An optional value that only goes to a file leaves its services out when
// absent, exactly as one bound for .env does: the compose step reads the
// file's absence, the env step warns of it.
func TestMissingOptionalFileOnly(t *testing.T) {
	r := newRig(t)
	r.vars["ALERT_WEBHOOK"] = config.EnvVar{Parameter: "/mon/alert/webhook", Optional: true, Env: &no,
		File: "alertmanager/secrets/webhook", Services: []string{"alertmanager"}}
	s := r.converge(nil)
	if got, want := r.disabled(), []string{"alertmanager", "github-actions-exporter"}; !slices.Equal(got, want) {
		t.Errorf("disabled = %v, want %v", got, want)
	}
	if w := s.Warning(); !strings.Contains(w, "/mon/alert/webhook") || !strings.Contains(w, "alertmanager is left out") {
		t.Errorf("Warning() = %q; want it to name /mon/alert/webhook and alertmanager", w)
	}
	r.params.stored["/mon/alert/webhook"] = "https://hooks.example/x"
	r.converge(s.Memo())
	if got, want := r.disabled(), []string{"github-actions-exporter"}; !slices.Equal(got, want) {
		t.Errorf("disabled once the webhook exists = %v, want %v", got, want)
	}
	// Deleted again: its file goes, and with it the service.
	delete(r.params.stored, "/mon/alert/webhook")
	r.converge(s.Memo())
	if got, want := r.disabled(), []string{"alertmanager", "github-actions-exporter"}; !slices.Equal(got, want) {
		t.Errorf("disabled once the webhook is deleted = %v, want %v", got, want)
	}
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		kind  string
		valid func(string) bool
	}{
		{config.GenerateHex32, func(v string) bool {
			b, err := hex.DecodeString(v)
			return err == nil && len(b) == 32 && v == strings.ToLower(v)
		}},
		{config.GenerateBase64, func(v string) bool {
			b, err := base64.StdEncoding.DecodeString(v)
			return err == nil && len(b) == 32 && len(v) == 44
		}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			r := newRig(t)
			r.vars["API_SECRET"] = config.EnvVar{Parameter: "/mon/api/secret", Generate: tt.kind}
			s := r.converge(nil)
			v, ok := r.params.stored["/mon/api/secret"]
			if !ok || !tt.valid(v) {
				t.Fatalf("stored %q, not a %s value", v, tt.kind)
			}
			if got := r.env()["API_SECRET"]; got != v {
				t.Errorf(".env API_SECRET = %q, want the stored %q", got, v)
			}
			if !slices.Contains(r.params.creates, "/mon/api/secret") {
				t.Errorf("creates %v", r.params.creates)
			}

			// A new run reuses the stored value: no Create, nothing rewritten.
			creates := len(r.params.creates)
			before := stat(t, r.path(Name))
			r.converge(s.Memo())
			if len(r.params.creates) != creates {
				t.Errorf("second run created %v", r.params.creates[creates:])
			}
			if r.params.stored["/mon/api/secret"] != v || r.env()["API_SECRET"] != v {
				t.Errorf("the generated value changed on a second run")
			}
			if after := stat(t, r.path(Name)); after != before {
				t.Errorf(".env rewritten: %+v, was %+v", after, before)
			}
		})
	}
	t.Run("two steps generate different values", func(t *testing.T) {
		a, b := newRig(t), newRig(t)
		a.converge(nil)
		b.converge(nil)
		va, vb := a.params.stored["/mon/prometheus/metrics-bearer-token"], b.params.stored["/mon/prometheus/metrics-bearer-token"]
		if va == vb {
			t.Errorf("two hosts generated the same token %q", va)
		}
	})
}

func TestGenerateLosesRace(t *testing.T) {
	r := newRig(t)
	r.params.appear = map[string]string{"/mon/prometheus/metrics-bearer-token": "theirs"}
	r.converge(nil)
	if b, err := os.ReadFile(r.path("prometheus/secrets/metrics-token")); err != nil || string(b) != "theirs" {
		t.Errorf("metrics-token = %q, %v; want the value stored first, theirs", b, err)
	}
	if v := r.params.stored["/mon/prometheus/metrics-bearer-token"]; v != "theirs" {
		t.Errorf("stored value replaced: %q", v)
	}
}

func TestSecretFiles(t *testing.T) {
	r := newRig(t)
	r.vars["GRAFANA_ADMIN_PASSWORD"] = config.EnvVar{Parameter: "/mon/grafana/admin-password",
		File: "grafana/secrets/admin-password", FileOwner: "472:0"}
	r.vars["ALERT_KEY"] = config.EnvVar{Value: lit("literal-key"), File: "alertmanager/key", Env: &no}
	s := r.converge(nil)

	files := []struct {
		rel, value string
		uid, gid   uint32
	}{
		{"grafana/secrets/admin-password", `pa"ss $word`, 472, 0},
		{"alertmanager/key", "literal-key", 0, 0},
		{"prometheus/secrets/metrics-token", r.params.stored["/mon/prometheus/metrics-bearer-token"], 65534, 65534},
	}
	for _, f := range files {
		b, err := os.ReadFile(r.path(f.rel))
		if err != nil || string(b) != f.value {
			t.Errorf("%s = %q, %v; want %q", f.rel, b, err, f.value)
		}
		if fi := stat(t, r.path(f.rel)); fi.mode != 0o600 || fi.uid != f.uid || fi.gid != f.gid {
			t.Errorf("%s mode %v owner %d:%d, want 0600 %d:%d", f.rel, fi.mode, fi.uid, fi.gid, f.uid, f.gid)
		}
	}
	env := r.env()
	if env["GRAFANA_ADMIN_PASSWORD"] != `pa"ss $word` {
		t.Errorf("a file does not keep the value out of .env unless env: false: %v", env)
	}
	for _, k := range []string{"ALERT_KEY", "METRICS_TOKEN"} {
		if _, ok := env[k]; ok {
			t.Errorf(".env holds %s, which has env: false", k)
		}
	}

	// Nothing changed: nothing rewritten, same inode and mtime.
	before := map[string]fileInfo{Name: stat(t, r.path(Name))}
	for _, f := range files {
		before[f.rel] = stat(t, r.path(f.rel))
	}
	time.Sleep(10 * time.Millisecond)
	s2 := r.step(s.Memo())
	if ok, err := s2.Check(context.Background()); err != nil || !ok {
		t.Fatalf("second Check = %v, %v; want true", ok, err)
	}
	if err := s2.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	for rel, fi := range before {
		if got := stat(t, r.path(rel)); got != fi {
			t.Errorf("%s rewritten with nothing changed: %+v, was %+v", rel, got, fi)
		}
	}
	if s2.Memo()["env_sha256"] != s.Memo()["env_sha256"] {
		t.Errorf("memo changed with nothing changed")
	}
}

// Drift on disk is noticed by Check and repaired by Apply.
func TestDriftRepaired(t *testing.T) {
	tests := []struct {
		name  string
		drift func(r *rig)
	}{
		{".env edited", func(r *rig) { os.WriteFile(r.path(Name), []byte("GRAFANA_ADMIN_USER=\"root\"\n"), 0o600) }},
		{".env removed", func(r *rig) { os.Remove(r.path(Name)) }},
		{".env mode", func(r *rig) { os.Chmod(r.path(Name), 0o644) }},
		{".env owner", func(r *rig) { os.Chown(r.path(Name), 1000, 1000) }},
		{"secret file edited", func(r *rig) { os.WriteFile(r.path("prometheus/secrets/metrics-token"), []byte("x"), 0o600) }},
		{"secret file owner", func(r *rig) { os.Chown(r.path("prometheus/secrets/metrics-token"), 0, 0) }},
		{"secret file mode", func(r *rig) { os.Chmod(r.path("prometheus/secrets/metrics-token"), 0o644) }},
		{"secret file removed", func(r *rig) { os.Remove(r.path("prometheus/secrets/metrics-token")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			memo := r.converge(nil).Memo()
			wantEnv, err := os.ReadFile(r.path(Name))
			if err != nil {
				t.Fatal(err)
			}
			token := r.params.stored["/mon/prometheus/metrics-bearer-token"]
			tt.drift(r)
			s := r.step(memo)
			if ok, err := s.Check(context.Background()); err != nil || ok {
				t.Fatalf("Check after drift = %v, %v; want false", ok, err)
			}
			r.converge(memo)
			if b, _ := os.ReadFile(r.path(Name)); string(b) != string(wantEnv) {
				t.Errorf(".env = %q, want %q", b, wantEnv)
			}
			if fi := stat(t, r.path(Name)); fi.mode != 0o600 || fi.uid != 0 {
				t.Errorf(".env mode %v uid %d", fi.mode, fi.uid)
			}
			if b, _ := os.ReadFile(r.path("prometheus/secrets/metrics-token")); string(b) != token {
				t.Errorf("metrics-token = %q, want %q", b, token)
			}
			if fi := stat(t, r.path("prometheus/secrets/metrics-token")); fi.mode != 0o600 || fi.uid != 65534 || fi.gid != 65534 {
				t.Errorf("metrics-token mode %v owner %d:%d", fi.mode, fi.uid, fi.gid)
			}
			if len(r.params.creates) != 1 {
				t.Errorf("token created %d times, want once", len(r.params.creates))
			}
		})
	}
}

func TestGeneratedSecretRegisteredBeforeStored(t *testing.T) {
	r := newRig(t)
	r.vars["API_SECRET"] = config.EnvVar{Parameter: "/mon/api/secret", Generate: config.GenerateBase64}
	r.converge(nil)
	if len(r.params.creates) != 2 {
		t.Fatalf("creates %v, want 2", r.params.creates)
	}
	if len(r.params.unredacted) != 0 {
		t.Errorf("Create got %d values the redactor did not know yet", len(r.params.unredacted))
	}
	for _, n := range []string{"/mon/api/secret", "/mon/prometheus/metrics-bearer-token"} {
		if v := r.params.stored[n]; !r.secrets.has(v) {
			t.Errorf("generated %s not registered", n)
		}
	}
}

// With the real parameter store as Params (as the agent wires it, one
// redactor for both), every value that reaches .env or a secret file is
// registered before the step writes it.
func TestEveryValueRegistered(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root")
	}
	svc, err := ssmsim.New(simtest.Identity(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sim := simtest.Serve(t, svc)
	api := ssm.NewFromConfig(sim.Config())
	ctx := context.Background()
	for name, p := range map[string]struct {
		value string
		typ   ssmtypes.ParameterType
	}{
		"/mon/grafana/admin-password": {"secure-grafana-pw", ssmtypes.ParameterTypeSecureString},
		// An operator created the token as a plain String.
		"/mon/github/api-token": {"ghp_plainStringToken", ssmtypes.ParameterTypeString},
	} {
		_, err := api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(p.value), Type: p.typ})
		if err != nil {
			t.Fatal(err)
		}
	}
	sec := &recorder{}
	r := &rig{t: t, root: t.TempDir(), vars: vars(), secrets: sec}
	s := New(Options{Root: r.root, Dir: stackDir, Vars: r.vars, Params: ssmparam.New(api, sec), Secrets: sec, Seal: testKey})
	if err := s.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	values := r.env()
	b, err := os.ReadFile(r.path("prometheus/secrets/metrics-token"))
	if err != nil {
		t.Fatal(err)
	}
	values["METRICS_TOKEN"] = string(b)
	for k, v := range values {
		if k == "GRAFANA_ADMIN_USER" {
			continue // a literal from the configuration, not a secret
		}
		// Every value the step reads from a parameter is registered, whatever
		// its SSM type: a String parameter bound for .env is a secret too.
		if !sec.has(v) {
			t.Errorf("%s: its value reached the stack directory without being registered with the redactor", k)
		}
	}
}

func TestSSMOutage(t *testing.T) {
	throttled := fmt.Errorf("read SSM parameters: %w", &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"})
	refused := fmt.Errorf("read SSM parameters: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
	denied := fmt.Errorf("read SSM parameters: %w", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized"})
	tests := []struct {
		name    string
		err     error
		drift   func(r *rig)
		noMemo  bool
		warning bool
	}{
		{name: "throttled, .env unchanged", err: throttled, warning: true},
		{name: "unreachable, .env unchanged", err: refused, warning: true},
		{name: "unreachable, .env edited", err: refused, drift: func(r *rig) {
			os.WriteFile(r.path(Name), []byte("X=\"1\"\n"), 0o600)
		}},
		{name: "unreachable, .env removed", err: refused, drift: func(r *rig) { os.Remove(r.path(Name)) }},
		{name: "unreachable, never converged", err: refused, noMemo: true},
		{name: "access denied, .env unchanged", err: denied},
		// During an outage a missing secret file is not converged, whatever
		// the state of .env.
		{name: "unreachable, secret file removed", err: refused, drift: func(r *rig) {
			os.Remove(r.path("prometheus/secrets/metrics-token"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			memo := r.converge(nil).Memo()
			if tt.noMemo {
				memo = nil
			}
			if tt.drift != nil {
				tt.drift(r)
			}
			r.params.err = tt.err
			s := r.step(memo)
			ok, err := s.Check(context.Background())
			if tt.warning {
				if err != nil || !ok {
					t.Fatalf("Check = %v, %v; want true with a warning", ok, err)
				}
				if w := s.Warning(); !strings.Contains(w, "could not read SSM") || !strings.Contains(w, Name) {
					t.Errorf("Warning() = %q", w)
				}
				return
			}
			if err == nil || ok {
				t.Fatalf("Check = %v, %v; want an error", ok, err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error %v does not wrap the SSM error", err)
			}
			if err := s.Apply(context.Background()); err == nil {
				t.Errorf("Apply succeeded during the outage")
			}
		})
	}
}

func TestFingerprintHoldsNoValue(t *testing.T) {
	r := newRig(t)
	fp1, err := r.step(nil).Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.vars["GRAFANA_ADMIN_USER"] = config.EnvVar{Value: lit("another literal")}
	r.params.stored["/mon/grafana/admin-password"] = "changed"
	fp2, _ := r.step(nil).Fingerprint(context.Background())
	if fp1 != fp2 {
		t.Errorf("fingerprint depends on values: %s, %s", fp1, fp2)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(fp1) {
		t.Errorf("fingerprint %q is not a digest", fp1)
	}
	r.vars["GRAFANA_ADMIN_USER"] = config.EnvVar{Parameter: "/mon/grafana/admin-user"}
	if fp3, _ := r.step(nil).Fingerprint(context.Background()); fp3 == fp1 {
		t.Errorf("fingerprint ignores the mapping")
	}
	if len(r.params.getCalls) != 0 {
		t.Errorf("Fingerprint read SSM: %v", r.params.getCalls)
	}
}

// A secret file is read by its owner (Prometheus runs as 65534), so the
// directories the step makes for it must let that owner through whatever
// the umask of the shell monagent runs from.
func TestSecretFileReachableUnderUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	r := newRig(t)
	r.converge(nil)
	// The directories of a secret file let its owner (uid 65534) through
	// whatever the umask.
	for _, rel := range []string{"prometheus", "prometheus/secrets"} {
		fi, err := os.Stat(r.path(rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Errorf("%s mode %v under umask 077: uid 65534 cannot reach metrics-token", rel, fi.Mode())
		}
	}
}
