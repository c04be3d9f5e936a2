// Package render fills the stack's configuration templates (Prometheus'
// web.yml, Alertmanager's receivers) with Go's text/template. A template
// sees which secrets exist and their bcrypt hashes; only a template whose
// output is written root-or-owner-only may see a secret's value.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"text/template"
)

// Data is what a template may use.
type Data struct {
	// Values are the env keys that have a value.
	Values map[string]string
	// Bcrypt returns the bcrypt hash of a generated password's key.
	Bcrypt   func(key string) (string, error)
	Hostname string
}

// ErrSecretValue is a value call in a template whose output is not secret.
var ErrSecretValue = errors.New("value is only allowed in a template with secret: true")

// Render executes src, the template called name. With secret false the
// value function fails: the output is written 0644.
func Render(name string, src []byte, secret bool, d Data) ([]byte, error) {
	funcs := template.FuncMap{
		"has": func(key string) bool { _, ok := d.Values[key]; return ok },
		"value": func(key string) (string, error) {
			if !secret {
				return "", fmt.Errorf("value %q: %w", key, ErrSecretValue)
			}
			v, ok := d.Values[key]
			if !ok {
				return "", fmt.Errorf("value %q: the key has no value here; guard it with {{ if has %q }}", key, key)
			}
			return v, nil
		},
		"bcrypt": func(key string) (string, error) {
			if _, ok := d.Values[key]; !ok {
				return "", fmt.Errorf("bcrypt %q: the key has no value here", key)
			}
			if d.Bcrypt == nil {
				return "", fmt.Errorf("bcrypt %q: no hashes here", key)
			}
			return d.Bcrypt(key)
		},
		"hostname": func() string { return d.Hostname },
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, nil); err != nil {
		// Execute's error quotes the template's text, never the values
		// passed in: they only reach the output buffer.
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return out.Bytes(), nil
}
