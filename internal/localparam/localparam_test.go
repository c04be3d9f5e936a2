package localparam

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/monagent/monagent/internal/secretgen"
)

// recorder is a fake redactor: it remembers what it was told.
type recorder struct{ added []string }

func (r *recorder) Add(s string) { r.added = append(r.added, s) }

type rig struct {
	t       *testing.T
	store   *Store
	kept    *secretgen.Store
	secrets *recorder
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	kept := &secretgen.Store{Dir: filepath.Join(dir, "secrets")}
	sec := &recorder{}
	return &rig{t: t, kept: kept, secrets: sec,
		store: &Store{File: filepath.Join(dir, "operator.env"), Kept: kept, Secrets: sec}}
}

// operator writes the operator's file with mode.
func (r *rig) operator(content string, mode os.FileMode) {
	r.t.Helper()
	if err := os.WriteFile(r.store.File, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(r.store.File, mode); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) keep(name, value string) {
	r.t.Helper()
	if _, err := r.kept.Keep(name, secretgen.NewSecret(value)); err != nil {
		r.t.Fatal(err)
	}
}

func TestGetMany(t *testing.T) {
	tests := []struct {
		name     string
		operator *string // nil: no operator file
		kept     map[string]string
		names    []string
		want     map[string]string
		missing  []string
	}{
		{
			name:    "nothing anywhere",
			names:   []string{"SMTP_PASSWORD"},
			want:    map[string]string{},
			missing: []string{"SMTP_PASSWORD"},
		},
		{
			name:  "kept only",
			kept:  map[string]string{"GRAFANA_ADMIN_PASSWORD": "generated"},
			names: []string{"GRAFANA_ADMIN_PASSWORD"},
			want:  map[string]string{"GRAFANA_ADMIN_PASSWORD": "generated"},
		},
		{
			name:     "operator file, dotenv syntax",
			operator: ptr("# the operator's values\nSMTP_PASSWORD=plain\nSLACK_WEBHOOK=\"https://hooks.slack.com/services/T/B/X\"\nQUOTED='with spaces # and hash'\nexport EXPORTED=yes\nESCAPED=\"say \\\"hi\\\"\"\nCOMMENTED=value # a comment\n\n"),
			names:    []string{"COMMENTED", "ESCAPED", "EXPORTED", "QUOTED", "SLACK_WEBHOOK", "SMTP_PASSWORD"},
			want: map[string]string{
				"SMTP_PASSWORD": "plain",
				"SLACK_WEBHOOK": "https://hooks.slack.com/services/T/B/X",
				"QUOTED":        "with spaces # and hash",
				"EXPORTED":      "yes",
				"ESCAPED":       `say "hi"`,
				"COMMENTED":     "value",
			},
		},
		{
			name:     "a dollar in single quotes is literal",
			operator: ptr("SMTP_PASSWORD='pa$word${x}'\n"),
			names:    []string{"SMTP_PASSWORD"},
			want:     map[string]string{"SMTP_PASSWORD": "pa$word${x}"},
		},
		{
			name:     "the operator's value replaces the kept one",
			operator: ptr("GRAFANA_ADMIN_PASSWORD=chosen-by-operator\n"),
			kept:     map[string]string{"GRAFANA_ADMIN_PASSWORD": "generated"},
			names:    []string{"GRAFANA_ADMIN_PASSWORD"},
			want:     map[string]string{"GRAFANA_ADMIN_PASSWORD": "chosen-by-operator"},
		},
		{
			name:     "an empty operator value falls back to the kept one",
			operator: ptr("GRAFANA_ADMIN_PASSWORD=\nGITHUB_TOKEN=''\n"),
			kept:     map[string]string{"GRAFANA_ADMIN_PASSWORD": "generated"},
			names:    []string{"GITHUB_TOKEN", "GRAFANA_ADMIN_PASSWORD"},
			want:     map[string]string{"GRAFANA_ADMIN_PASSWORD": "generated"},
			missing:  []string{"GITHUB_TOKEN"},
		},
		{
			name:     "mixed, missing listed in order asked",
			operator: ptr("SMTP_PASSWORD=smtp\nUNASKED=never-returned\n"),
			kept:     map[string]string{"METRICS_TOKEN": "tok"},
			names:    []string{"B_MISSING", "METRICS_TOKEN", "A_MISSING", "SMTP_PASSWORD"},
			want:     map[string]string{"METRICS_TOKEN": "tok", "SMTP_PASSWORD": "smtp"},
			missing:  []string{"B_MISSING", "A_MISSING"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if tt.operator != nil {
				r.operator(*tt.operator, 0o600)
			}
			for k, v := range tt.kept {
				r.keep(k, v)
			}
			found, missing, err := r.store.GetMany(context.Background(), tt.names)
			if err != nil {
				t.Fatalf("GetMany: %v", err)
			}
			got := map[string]string{}
			for k, p := range found {
				if p.Name != k {
					t.Errorf("found[%s].Name = %q", k, p.Name)
				}
				got[k] = p.Value
			}
			if !equalMaps(got, tt.want) {
				t.Errorf("found %v, want %v", got, tt.want)
			}
			if !slices.Equal(missing, tt.missing) {
				t.Errorf("missing %v, want %v", missing, tt.missing)
			}
			for k, v := range got {
				if !slices.Contains(r.secrets.added, v) {
					t.Errorf("the value of %s was returned without being registered as a secret", k)
				}
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func ptr(s string) *string { return &s }

func TestNoOperatorFile(t *testing.T) {
	for _, file := range []string{"", "missing"} {
		t.Run("file="+file, func(t *testing.T) {
			r := newRig(t)
			if file == "" {
				r.store.File = ""
			} else {
				r.store.File = filepath.Join(t.TempDir(), file)
			}
			r.keep("TOKEN", "kept")
			found, missing, err := r.store.GetMany(context.Background(), []string{"TOKEN", "OTHER"})
			if err != nil {
				t.Fatalf("GetMany: %v", err)
			}
			if found["TOKEN"].Value != "kept" || len(found) != 1 || !slices.Equal(missing, []string{"OTHER"}) {
				t.Errorf("found %v, missing %v", found, missing)
			}
		})
	}
}

// The operator's file holds secrets: one others can read or change is
// refused, and no message about it quotes a value.
func TestOperatorFileRefused(t *testing.T) {
	const secret = "smtp-s3cret-value"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		chown   bool // give the file to uid 65534
		want    []string
		quiet   []string // must not appear in the error
	}{
		{name: "0644", content: "SMTP_PASSWORD=" + secret + "\n", mode: 0o644, want: []string{"mode 0644", "chmod 600"}},
		{name: "0640", content: "SMTP_PASSWORD=" + secret + "\n", mode: 0o640, want: []string{"chmod 600"}},
		{name: "0606", content: "SMTP_PASSWORD=" + secret + "\n", mode: 0o606, want: []string{"chmod 600"}},
		{name: "another owner", content: "SMTP_PASSWORD=" + secret + "\n", mode: 0o600, chown: true, want: []string{"uid 65534", "chown"}},
		{name: "not KEY=VALUE", content: "SMTP PASSWORD " + secret + "\n", mode: 0o600, want: []string{"KEY=VALUE", "single quotes"}},
		{name: "unterminated quote", content: "SMTP_PASSWORD=\"" + secret + "\n", mode: 0o600, want: []string{"KEY=VALUE"}},
		{name: "dollar unquoted", content: "SMTP_PASSWORD=" + secret + "$tail\n", mode: 0o600, want: []string{"$", "single quotes"}, quiet: []string{"tail"}},
		{name: "dollar in double quotes", content: "SMTP_PASSWORD=\"" + secret + "${tail}\"\n", mode: 0o600, want: []string{"$", "single quotes"}, quiet: []string{"tail"}},
		{name: "a key alone", content: "SMTP_PASSWORD\n", mode: 0o600, want: []string{"without =VALUE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.operator(tt.content, tt.mode)
			if tt.chown {
				if os.Geteuid() != 0 {
					t.Skip("chown needs root")
				}
				if err := os.Chown(r.store.File, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}
			r.keep("SMTP_PASSWORD", "kept-value")
			found, _, err := r.store.GetMany(context.Background(), []string{"SMTP_PASSWORD"})
			if err == nil {
				t.Fatalf("GetMany = %v, want an error", found)
			}
			if found != nil {
				t.Errorf("values returned along with the error: %v", found)
			}
			for _, w := range append([]string{"secrets.file", r.store.File}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, q := range append([]string{secret, "kept-value"}, tt.quiet...) {
				if strings.Contains(err.Error(), q) {
					t.Errorf("error %q quotes %q", err, q)
				}
			}
			for _, v := range r.secrets.added {
				if strings.Contains(v, secret) {
					t.Errorf("a value of a refused file was used: %q", v)
				}
			}
		})
	}
}

func TestKeptStoreErrorPropagates(t *testing.T) {
	r := newRig(t)
	r.keep("TOKEN", "kept-value-xyz")
	if err := os.Chmod(filepath.Join(r.kept.Dir, "TOKEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := r.store.GetMany(context.Background(), []string{"TOKEN"})
	var fe *secretgen.FileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("GetMany = %v, want the store's *FileError naming chmod", err)
	}
	if strings.Contains(err.Error(), "kept-value-xyz") {
		t.Errorf("error %q quotes the value", err)
	}
}

func TestCreate(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	tests := []struct {
		name, value, want string
		err               error
	}{
		{"first create keeps the value", "first-generated", "first-generated", nil},
		{"a second create returns the first", "second-generated", "first-generated", nil},
		{"an empty value is refused", "", "", secretgen.ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := r.store.Create(ctx, "GRAFANA_SECRET_KEY", tt.value)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Create = %v, want %v", err, tt.err)
			}
			if p.Value != tt.want {
				t.Errorf("Create returned %q, want %q", p.Value, tt.want)
			}
			if tt.err == nil && (p.Name != "GRAFANA_SECRET_KEY" || !slices.Contains(r.secrets.added, p.Value)) {
				t.Errorf("Create returned %+v, registered %d values; want the name and the value registered", p.Name, len(r.secrets.added))
			}
			if tt.value != "" && !slices.Contains(r.secrets.added, tt.value) {
				t.Error("the value given to Create was not registered as a secret")
			}
		})
	}
	kept, ok, err := r.kept.Lookup("GRAFANA_SECRET_KEY")
	if err != nil || !ok || kept.Reveal() != "first-generated" {
		t.Fatalf("store holds %v (%v, %v), want the first value", kept.Reveal(), ok, err)
	}
	// GetMany reads what Create kept.
	found, missing, err := r.store.GetMany(ctx, []string{"GRAFANA_SECRET_KEY"})
	if err != nil || len(missing) != 0 || found["GRAFANA_SECRET_KEY"].Value != "first-generated" {
		t.Fatalf("GetMany after Create = %v, %v, %v", found, missing, err)
	}
}

// An operator's value does not stop Create keeping a generated one, but
// GetMany returns the operator's: it replaces what the host generated.
func TestOperatorValueWinsOverCreated(t *testing.T) {
	r := newRig(t)
	r.operator("GRAFANA_ADMIN_PASSWORD='operator-choice'\n", 0o600)
	if _, err := r.store.Create(context.Background(), "GRAFANA_ADMIN_PASSWORD", "generated"); err != nil {
		t.Fatal(err)
	}
	found, _, err := r.store.GetMany(context.Background(), []string{"GRAFANA_ADMIN_PASSWORD"})
	if err != nil {
		t.Fatal(err)
	}
	if got := found["GRAFANA_ADMIN_PASSWORD"].Value; got != "operator-choice" {
		t.Errorf("GetMany = %q, want the operator's value", got)
	}
}
