package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

// The language is text/template's syntax: the example bundle's templates,
// and some of the corners, render byte for byte as text/template renders
// them, for every combination of the optional keys.
func TestSameAsTextTemplate(t *testing.T) {
	files, err := filepath.Glob("../../examples/acgs/stack/*/*.tmpl")
	if err != nil || len(files) < 3 {
		t.Fatalf("example templates: %v, %v", files, err)
	}
	sources := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources[f] = string(b)
	}
	for i, s := range []string{
		"a {{- if has \"SMTP_PASSWORD\" -}} b {{- else -}} c {{- end -}} d\n",
		"{{ if has \"SLACK_WEBHOOK_URL\" }}{{ if has \"SMTP_PASSWORD\" }}both{{ end }}{{ else }}none{{ end }}",
		"raw: {{`{{ .Status }}`}} quoted: {{ \"}}\\\"x\" }} host: {{ hostname }}",
		"{{/* a comment with {{ braces }} */}}x{{- /* trimmed */ -}}\n  y",
		"line\n{{- if has \"PAGERDUTY_INTEGRATION_KEY\" }}\n  key\n{{- end }}\nafter\n",
	} {
		sources["corner "+string(rune('a'+i))] = s
	}
	keys := []string{"SMTP_PASSWORD", "SLACK_WEBHOOK_URL", "PAGERDUTY_INTEGRATION_KEY"}
	for name, src := range sources {
		for mask := range 1 << len(keys) {
			values := map[string]string{"PROMETHEUS_PASSWORD": "pw"}
			for i, k := range keys {
				if mask&(1<<i) != 0 {
					values[k] = "v-" + k
				}
			}
			d := Data{Values: values, Bcrypt: hashOf, Hostname: "monitor-1"}
			got, err := Render(name, []byte(src), true, d)
			if err != nil {
				t.Fatalf("%s (keys %b): %v", name, mask, err)
			}
			want := viaTextTemplate(t, src, d)
			if string(got) != want {
				t.Errorf("%s (keys %b):\n got %q\nwant %q", name, mask, got, want)
			}
		}
	}
}

func viaTextTemplate(t *testing.T, src string, d Data) string {
	t.Helper()
	funcs := template.FuncMap{
		"has":      func(k string) bool { _, ok := d.Values[k]; return ok },
		"value":    func(k string) string { return d.Values[k] },
		"bcrypt":   func(k string) (string, error) { return d.Bcrypt(k) },
		"hostname": func() string { return d.Hostname },
	}
	tmpl, err := template.New("t").Funcs(funcs).Parse(src)
	if err != nil {
		t.Fatalf("text/template refuses %q: %v", src, err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
