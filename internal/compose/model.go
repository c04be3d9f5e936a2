package compose

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// secretName matches variable names that hold secrets.
var secretName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|TOKEN|SECRET|KEY)`)

// reference matches an interpolation: $$ (an escaped dollar), ${NAME},
// ${NAME<op>word} with op one of :- - :? ? :+ +, or $NAME.
var reference = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// variable is one variable a definition reads.
type variable struct {
	name       string
	hasDefault bool // ${NAME-word} or ${NAME:-word}, word possibly empty
	required   bool // ${NAME?err} or ${NAME:?err}
}

// model is the stack as Compose will see it.
type model struct {
	project *types.Project
	// vars are the variables each service's definition reads.
	vars map[string]map[string]variable
	// topVars are those read outside services (volumes, networks).
	topVars map[string]variable
	// rawEnv is each service's environment as written, before
	// interpolation.
	rawEnv map[string]map[string]string
}

// load reads the compose files against env, the rendered .env, exactly as
// `docker compose` will: the same files, the same project name, the same
// interpolation.
func load(ctx context.Context, dir, project string, files []string, env map[string]string) (*model, error) {
	var configs []types.ConfigFile
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("compose: %w", err)
		}
		configs = append(configs, types.ConfigFile{Filename: f, Content: b})
	}
	return loadConfigs(ctx, dir, project, configs, env)
}

// loadConfigs is load with the files' contents given, so that a file not
// written yet (the override) can take part.
func loadConfigs(ctx context.Context, dir, project string, configs []types.ConfigFile, env map[string]string) (*model, error) {
	m := &model{vars: map[string]map[string]variable{}, topVars: map[string]variable{}, rawEnv: map[string]map[string]string{}}
	var files []string
	for _, c := range configs {
		files = append(files, c.Filename)
		var raw map[string]any
		if err := yaml.Unmarshal(c.Content, &raw); err != nil {
			return nil, fmt.Errorf("compose: %s: %w", c.Filename, err)
		}
		m.collect(raw)
	}
	// The loader adds its own keys (COMPOSE_PROJECT_NAME) to the map.
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{WorkingDir: dir, ConfigFiles: configs, Environment: maps.Clone(env)},
		func(o *loader.Options) { o.SetProjectName(project, true) })
	if err != nil {
		return nil, fmt.Errorf("compose: load %s: %w", strings.Join(files, ", "), err)
	}
	m.project = p
	return m, nil
}

func (m *model) collect(raw map[string]any) {
	services, _ := raw["services"].(map[string]any)
	for name, def := range services {
		d, ok := def.(map[string]any)
		if !ok {
			continue
		}
		if m.vars[name] == nil {
			m.vars[name], m.rawEnv[name] = map[string]variable{}, map[string]string{}
		}
		extract(d, m.vars[name])
		collectEnv(d["environment"], m.rawEnv[name])
	}
	rest := maps.Clone(raw)
	delete(rest, "services")
	extract(rest, m.topVars)
}

// extract finds the variables every string in v reads.
func extract(v any, into map[string]variable) {
	switch v := v.(type) {
	case string:
		for _, g := range reference.FindAllStringSubmatch(v, -1) {
			if g[0] == "$$" {
				continue
			}
			r := variable{name: g[1] + g[4]}
			switch op := g[2]; op {
			case "-", ":-", "+", ":+":
				// A default, or an alternate value ("word if set, else
				// empty"): unset is a normal case either way.
				r.hasDefault = true
			case "?", ":?":
				r.required = true
			}
			old, seen := into[r.name]
			r.hasDefault = r.hasDefault || (seen && old.hasDefault)
			r.required = r.required || (seen && old.required)
			into[r.name] = r
		}
	case map[string]any:
		for _, e := range v {
			extract(e, into)
		}
	case []any:
		for _, e := range v {
			extract(e, into)
		}
	}
}

// collectEnv reads an environment block in either form: a list of
// KEY=value or a mapping.
func collectEnv(v any, into map[string]string) {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				k, val, _ := strings.Cut(s, "=")
				into[k] = val
			}
		}
	case map[string]any:
		for k, e := range v {
			if e != nil {
				into[k] = fmt.Sprint(e)
			} else {
				into[k] = ""
			}
		}
	}
}

// services lists every service of the project.
func (m *model) services() []string {
	return slices.Sorted(maps.Keys(m.project.Services))
}

// findings are what the check of the model against .env found.
type findings struct {
	errs     []string
	warnings []string
}

// check compares the model with the rendered .env: a variable a started
// service needs with no value and no default is an error naming both; a
// .env key no one reads, a secret-looking variable that falls back to an
// inline default, and a secret-looking literal in the compose file are
// warnings naming both names.
func (m *model) check(env map[string]string, enabled []string) findings {
	var f findings
	read := map[string]bool{}
	for v := range m.topVars {
		read[v] = true
	}
	for _, svc := range slices.Sorted(maps.Keys(m.vars)) {
		for _, name := range slices.Sorted(maps.Keys(m.vars[svc])) {
			read[name] = true
			if slices.Contains(enabled, svc) {
				f.variable(svc, m.vars[svc][name], env)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if !read[k] {
			f.warnings = append(f.warnings, fmt.Sprintf(".env key %s is read by no service of the compose file", k))
		}
	}
	for _, svc := range enabled {
		for _, k := range slices.Sorted(maps.Keys(m.rawEnv[svc])) {
			if v := m.rawEnv[svc][k]; secretName.MatchString(k) && v != "" && !interpolates(v) {
				f.warnings = append(f.warnings, fmt.Sprintf("service %s sets %s to a literal in the compose file: a secret belongs in .env, from SSM", svc, k))
			}
		}
	}
	return f
}

// interpolates reports whether v reads a variable; an escaped $$ does not.
func interpolates(v string) bool {
	for _, g := range reference.FindAllString(v, -1) {
		if g != "$$" {
			return true
		}
	}
	return false
}

func (f *findings) variable(svc string, v variable, env map[string]string) {
	_, set := env[v.name]
	switch {
	case set:
	case v.required:
		f.errs = append(f.errs, fmt.Sprintf("service %s requires ${%s}, which .env does not set: add it to env in the configuration", svc, v.name))
	case !v.hasDefault:
		f.errs = append(f.errs, fmt.Sprintf("service %s reads ${%s}, which has no value in .env and no default in the compose file: add it to env in the configuration", svc, v.name))
	case secretName.MatchString(v.name):
		f.warnings = append(f.warnings, fmt.Sprintf("service %s: secret-looking %s is not set in .env and falls back to the compose file's inline default", svc, v.name))
	}
}

// namedVolumes are the project's volumes that Compose creates with the
// local driver: those get bound to directories on the data volume.
func (m *model) namedVolumes() []string {
	var out []string
	for name, v := range m.project.Volumes {
		if bool(v.External) || (v.Driver != "" && v.Driver != "local") || len(v.DriverOpts) > 0 {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// bindSources are the host paths under dir that service svc bind-mounts.
func (m *model) bindSources(svc, dir string) []string {
	var out []string
	for _, v := range m.project.Services[svc].Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if src := filepath.Clean(v.Source); src == dir || strings.HasPrefix(src, dir+string(filepath.Separator)) {
			out = append(out, src)
		}
	}
	slices.Sort(out)
	return out
}

// dependant is a service that depends on one left out.
type dependant struct{ service, on string }

// dependants lists the services that depend, directly or through others,
// on a service in off, each with the one it depends on; off is not
// changed.
func (m *model) dependants(off map[string]bool) []dependant {
	out := maps.Clone(off)
	var found []dependant
	for changed := true; changed; {
		changed = false
		for _, svc := range m.services() {
			if out[svc] {
				continue
			}
			for _, dep := range slices.Sorted(maps.Keys(m.project.Services[svc].DependsOn)) {
				if out[dep] {
					found, out[svc], changed = append(found, dependant{svc, dep}), true, true
					break
				}
			}
		}
	}
	return found
}

// hasHealthcheck reports whether svc defines a healthcheck that is on.
func (m *model) hasHealthcheck(svc string) bool {
	hc := m.project.Services[svc].HealthCheck
	return hc != nil && !hc.Disable && len(hc.Test) > 0 && hc.Test[0] != "NONE"
}
