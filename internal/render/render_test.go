package render

import (
	"errors"
	"strings"
	"testing"
)

// hashOf is a fake bcrypt: the tests are about the template functions,
// not about hashing.
func hashOf(key string) (string, error) { return "$2a$10$hash-of-" + key, nil }

func TestRender(t *testing.T) {
	data := Data{
		Values:   map[string]string{"PW": "s3cret", "SMTP_PASSWORD": "mail-pw"},
		Bcrypt:   hashOf,
		Hostname: "monitor-1",
	}
	tests := []struct {
		name   string
		src    string
		secret bool
		want   string
	}{
		{"has present", `{{ if has "PW" }}yes{{ else }}no{{ end }}`, false, "yes"},
		{"has absent", `{{ if has "GITHUB_TOKEN" }}yes{{ else }}no{{ end }}`, false, "no"},
		{"value in a secret template", `pw={{ value "PW" }}`, true, "pw=s3cret"},
		{"bcrypt", `acgs: {{ bcrypt "PW" }}`, false, "acgs: $2a$10$hash-of-PW"},
		{"hostname", `host={{ hostname }}`, false, "host=monitor-1"},
		{"plain text", "global:\n  scrape_interval: 15s\n", false, "global:\n  scrape_interval: 15s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render("web.yml.tmpl", []byte(tt.src), tt.secret, data)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
		})
	}
}

// An Alertmanager receiver guarded by has: rendered when the key has a
// value, left out altogether when it has none.
func TestRenderGuardedReceiver(t *testing.T) {
	const src = `receivers:
  - name: default
{{- if has "SLACK_WEBHOOK" }}
  - name: slack
    slack_configs:
      - api_url: {{ value "SLACK_WEBHOOK" }}
{{- end }}
`
	tests := []struct {
		name   string
		values map[string]string
		want   string
	}{
		{
			name:   "present",
			values: map[string]string{"SLACK_WEBHOOK": "https://hooks.slack.com/services/T/B/X"},
			want: `receivers:
  - name: default
  - name: slack
    slack_configs:
      - api_url: https://hooks.slack.com/services/T/B/X
`,
		},
		{
			name:   "absent",
			values: map[string]string{"OTHER": "x"},
			want:   "receivers:\n  - name: default\n",
		},
		{
			name:   "no values at all",
			values: nil,
			want:   "receivers:\n  - name: default\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render("alertmanager.yml.tmpl", []byte(src), true, Data{Values: tt.values})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Render:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	errHash := errors.New("bcrypt store unreadable")
	data := Data{
		Values: map[string]string{"PW": "s3cret-value", "BROKEN": "x"},
		Bcrypt: func(key string) (string, error) {
			if key == "BROKEN" {
				return "", errHash
			}
			return hashOf(key)
		},
	}
	tests := []struct {
		name   string
		src    string
		secret bool
		data   Data
		is     error    // errors.Is target, when there is one
		want   []string // the message mentions each
	}{
		{
			name: "value in a template that is not secret",
			src:  `pw={{ value "PW" }}`,
			data: data,
			is:   ErrSecretValue,
			want: []string{"web.yml.tmpl", `"PW"`, "secret: true"},
		},
		{
			name:   "value of a missing key",
			src:    `{{ value "SLACK_WEBHOOK" }}`,
			secret: true,
			data:   data,
			want:   []string{"web.yml.tmpl", `"SLACK_WEBHOOK"`, `has "SLACK_WEBHOOK"`},
		},
		{
			name: "bcrypt of a missing key",
			src:  `{{ bcrypt "NOPE" }}`,
			data: data,
			want: []string{"web.yml.tmpl", `"NOPE"`, "no value"},
		},
		{
			name: "bcrypt without hashes",
			src:  `{{ bcrypt "PW" }}`,
			data: Data{Values: data.Values},
			want: []string{"web.yml.tmpl", `"PW"`, "no hashes"},
		},
		{
			name: "bcrypt callback fails",
			src:  `{{ bcrypt "BROKEN" }}`,
			data: data,
			is:   errHash,
			want: []string{"web.yml.tmpl", "bcrypt store unreadable"},
		},
		{
			name: "parse error",
			src:  `{{ if has "PW" }}unterminated`,
			data: data,
			want: []string{"template web.yml.tmpl"},
		},
		{
			name: "unknown function",
			src:  `{{ secret "PW" }}`,
			data: data,
			want: []string{"web.yml.tmpl", "secret"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Render("web.yml.tmpl", []byte(tt.src), tt.secret, tt.data)
			if err == nil {
				t.Fatalf("Render = %q, want an error", out)
			}
			if out != nil {
				t.Errorf("Render returned output %q along with its error", out)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v: errors.Is(%v) is false", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("error %q quotes a value", err)
			}
		})
	}
}

// A template refused for value writes nothing, even for a key that has no
// value: the refusal comes first, whatever the key.
func TestValueRefusedBeforeLookup(t *testing.T) {
	_, err := Render("t", []byte(`{{ value "MISSING" }}`), false, Data{})
	if !errors.Is(err, ErrSecretValue) {
		t.Fatalf("Render = %v, want ErrSecretValue", err)
	}
}

// A key the configuration does not declare is a typo: an error naming it,
// never a receiver silently off.
func TestUndeclaredKey(t *testing.T) {
	d := Data{Values: map[string]string{"SLACK_WEBHOOK_URL": "x"}, Declared: map[string]bool{"SLACK_WEBHOOK_URL": true}}
	for _, src := range []string{`{{ if has "SLACK_WEBHOOK" }}on{{ end }}`, `{{ value "SLACK_WEBHOOK" }}`, `{{ bcrypt "SLACK_WEBHOOK" }}`} {
		_, err := Render("alertmanager.yml.tmpl", []byte(src), true, d)
		if err == nil || !strings.Contains(err.Error(), `"SLACK_WEBHOOK": not a key of env`) {
			t.Errorf("%s: error %v, want one naming the undeclared key", src, err)
		}
	}
	if out, err := Render("t", []byte(`{{ if has "SLACK_WEBHOOK_URL" }}on{{ end }}`), false, d); err != nil || string(out) != "on" {
		t.Errorf("a declared key: %q, %v", out, err)
	}
}
