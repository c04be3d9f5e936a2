package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"

	"github.com/monagent/monagent/internal/compose"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/envfile"
)

// DotEnv asks whether .env holds every key the compose file needs (seed
// section 10, "Container in restart loop": grafana without
// GRAFANA_ADMIN_PASSWORD in .env): every key the configuration puts
// there, and every variable a started service reads with no default, as
// the compose step checks before `up`. Every value read is registered
// with secrets first; no value is ever part of the detail.
func DotEnv(ctx context.Context, root string, c *config.Config, secrets Secrets) Check {
	const name = ".env"
	dir := filepath.Join(root, c.Bundle.Dir)
	file := filepath.Join(dir, c.Compose.File)
	path := filepath.Join(root, c.EnvFilePath())
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return Failed(name, fmt.Sprintf("cannot be checked: the compose file %s does not exist: `monagent reconcile --only bundle` installs the stack bundle", file))
	} else if err != nil {
		return Failed(name, err.Error())
	}
	env, err := readEnv(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Failed(name, fmt.Sprintf("%s does not exist: `monagent reconcile --only env` writes it from SSM", path))
	}
	if err != nil {
		return Failed(name, err.Error())
	}
	registerSecrets(c.Env, env, secrets)
	errs := staleKeys(c.Env, env)
	off := envfile.Disabled(dir, c.Env, env)
	cerrs, warnings, err := compose.CheckEnv(ctx, dir, c.Compose.Project, file, env, off)
	if err != nil {
		return Failed(name, fmt.Sprintf("%v: add the variable to env in the configuration, or give it a default in the compose file", err))
	}
	switch errs = append(errs, cerrs...); {
	case len(errs) > 0:
		return Failed(name, path+": "+strings.Join(errs, "; "))
	case len(warnings) > 0:
		return Warning(name, path+": "+strings.Join(warnings, "; "))
	}
	return Pass(name, fmt.Sprintf("%s (%d keys) sets every variable %s needs%s", path, len(env), c.Compose.File, leftOut(off)))
}

// readEnv parses .env as Compose does.
func readEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env, err := dotenv.UnmarshalBytesWithLookup(b, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, fmt.Errorf("%s does not parse as Compose reads it (%v): `monagent reconcile --only env` rewrites it", path, err)
	}
	return env, nil
}

// registerSecrets registers the values of .env with secrets before
// anything can print them, as the env step does: every value but the
// literals of the configuration itself (GRAFANA_ADMIN_USER: admin), which
// are no secret of SSM's and would mask every "admin" of the report. A key
// the configuration does not know is of unknown origin: a secret.
func registerSecrets(vars map[string]config.EnvVar, env map[string]string, secrets Secrets) {
	for k, v := range env {
		if cv, ok := vars[k]; ok && cv.Value != nil && cv.Parameter == "" {
			continue
		}
		secrets.Add(v)
	}
}

// staleKeys names the keys the configuration puts in .env that it lacks:
// the file predates the configuration, or was edited by hand. An optional
// key may be absent: its services are left out.
func staleKeys(vars map[string]config.EnvVar, env map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		v := vars[k]
		if _, ok := env[k]; ok || !v.InEnv() || v.Optional {
			continue
		}
		out = append(out, fmt.Sprintf("%s lacks %s, which env.%s puts there: `monagent reconcile --only env` rewrites it", envfile.Name, k, k))
	}
	return out
}

func leftOut(off []string) string {
	if len(off) == 0 {
		return ""
	}
	return " (left out for an absent optional value: " + strings.Join(off, ", ") + ")"
}
