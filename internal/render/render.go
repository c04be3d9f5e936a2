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
	// Declared are the env keys of the configuration, with a value or
	// not: a template naming any other key has a typo, which would
	// otherwise turn a receiver off for ever without a word.
	Declared map[string]bool
	// Bcrypt returns the bcrypt hash of a generated password's key.
	Bcrypt   func(key string) (string, error)
	Hostname string
}

// ErrSecretValue is a value call in a template whose output is not secret.
var ErrSecretValue = errors.New("value is only allowed in a template with secret: true")

// Render executes src, the template called name. With secret false the
// value function fails: the output is written 0644.
func Render(name string, src []byte, secret bool, d Data) ([]byte, error) {
	known := func(fn, key string) error {
		if d.Declared != nil && !d.Declared[key] {
			return fmt.Errorf("%s %q: not a key of env; declare it there, or fix the name", fn, key)
		}
		return nil
	}
	funcs := template.FuncMap{
		"has": func(key string) (bool, error) {
			if err := known("has", key); err != nil {
				return false, err
			}
			_, ok := d.Values[key]
			return ok, nil
		},
		"value": func(key string) (string, error) {
			if err := known("value", key); err != nil {
				return "", err
			}
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
			if err := known("bcrypt", key); err != nil {
				return "", err
			}
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
