package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// settings is the configuration the server runs with, resolved the way
// Grafana resolves it: the ini file (GF_PATHS_CONFIG or --config), then
// GF_<SECTION>_<KEY> environment variables over it, then variable
// expansion ($__env{VAR}, ${VAR}, $__file{PATH}) of every value, env
// overrides included. Only the keys the stand-in uses are ever looked up.
type settings struct {
	path   string            // the ini file read; "" if none
	values map[string]string // "section.key" -> expanded value
}

const defaultConfigPath = "/etc/grafana/grafana.ini"

// loadSettings reads the ini file at path and applies env overrides and
// expansion. A missing file is no error when it is the default location
// (explicit says the path came from --config, which Grafana insists on).
func loadSettings(path string, explicit bool, getenv func(string) string) (*settings, error) {
	s := &settings{values: map[string]string{}}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		s.path = path
		if err := parseINI(b, s.values); err != nil {
			return nil, fmt.Errorf("failed to parse %s: %w", path, err)
		}
	case os.IsNotExist(err) && !explicit:
	default:
		return nil, fmt.Errorf("could not read config file %s: %w", path, err)
	}
	// Grafana applies env overrides only to keys its defaults.ini has; the
	// stand-in has no defaults file, so it looks up every key it reads.
	for _, sk := range knownKeys {
		if v := getenv(envKey(sk)); v != "" { // an empty variable overrides nothing, as in Grafana
			s.values[sk] = v
		}
	}
	for sk, v := range s.values {
		x, err := expandVar(v, getenv)
		if err != nil {
			section, key, _ := strings.Cut(sk, ".")
			return nil, fmt.Errorf("got error while expanding %s.%s: %w", section, key, err)
		}
		s.values[sk] = x
	}
	return s, nil
}

// knownKeys are the settings the stand-in uses ("section.key"; a section
// name may contain dots, the key cannot).
var knownKeys = []string{
	"security.admin_user", "security.admin_password", "security.secret_key",
	"paths.data", "paths.provisioning",
	"server.http_addr", "server.http_port",
	"auth.anonymous.enabled",
}

// envKey is Grafana's override variable for a setting:
// auth.anonymous.enabled -> GF_AUTH_ANONYMOUS_ENABLED.
func envKey(sk string) string {
	i := strings.LastIndexByte(sk, '.')
	section, key := sk[:i], sk[i+1:]
	r := strings.NewReplacer(".", "_", "-", "_")
	return "GF_" + strings.ToUpper(r.Replace(section)+"_"+r.Replace(key))
}

func (s *settings) get(section, key, def string) string {
	if v := s.values[section+"."+key]; v != "" {
		return v
	}
	return def
}

// parseINI reads Grafana's ini dialect as far as its own files use it:
// [section] headers, key = value lines, whole-line comments (# or ;),
// values optionally in double quotes or backquotes. Keys before any
// section belong to the default section "".
func parseINI(b []byte, into map[string]string) error {
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", line[0] == '#', line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return fmt.Errorf("line %d: unclosed section header %q", n, line)
			}
			section = strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("line %d: %q is neither a section nor key = value", n, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '`') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		into[section+"."+key] = value
	}
	return sc.Err()
}

// varRef is Grafana's expander syntax: $__env{VAR}, $__file{PATH}, and
// ${VAR} (the env expander without a name).
var varRef = regexp.MustCompile(`\$(|__\w+)\{([^}]+)\}`)

// expandVar is Grafana's setting.ExpandVar: env and file expanders;
// references to other providers ($__vault{...}) stay as written, as in
// Grafana OSS. A $__file{} whose file is missing is an error (Grafana then
// refuses to start).
func expandVar(s string, getenv func(string) string) (string, error) {
	var err error
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		switch sub[1] {
		case "", "__env":
			return getenv(sub[2])
		case "__file":
			b, ferr := os.ReadFile(sub[2])
			if ferr != nil {
				if err == nil {
					err = ferr
				}
				return m
			}
			return strings.TrimSpace(string(b))
		}
		return m
	})
	return out, err
}

// interpolate is what Grafana's provisioning does to each string value of
// a datasource: $$ is a literal $, the rest goes through expandVar and then
// $VAR/${VAR} environment expansion.
func interpolate(s string, getenv func(string) string) (string, error) {
	parts := strings.Split(s, "$$")
	for i, p := range parts {
		x, err := expandVar(p, getenv)
		if err != nil {
			return s, fmt.Errorf("failed to interpolate value '%s': %w", s, err)
		}
		parts[i] = expandEnv(x, getenv)
	}
	return strings.Join(parts, "$"), nil
}
