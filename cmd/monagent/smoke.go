package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/metrics"
	"github.com/monagent/monagent/internal/smoke"
	"github.com/monagent/monagent/internal/state"
)

// check is one doctor result.
type check struct {
	name   string
	err    error // nil: passed
	warn   bool  // err is a warning, not a failure
	detail string
}

// report prints checks and returns how many failed.
func report(w io.Writer, checks []check) (failed int) {
	var passed, warned int
	for _, c := range checks {
		switch {
		case c.err == nil:
			passed++
			fmt.Fprintf(w, "ok    %s: %s\n", c.name, c.detail)
		case c.warn:
			warned++
			fmt.Fprintf(w, "warn  %s: %v\n", c.name, c.err)
		default:
			failed++
			fmt.Fprintf(w, "FAIL  %s: %v\n", c.name, c.err)
		}
	}
	fmt.Fprintf(w, "Results: %d passed, %d failed, %d warnings\n", passed, failed, warned)
	return failed
}

func smokeCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "smoke",
		Short: "Check the running host in the seed's six categories (section 8); exit 1 on any failure",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configPath)
			if err != nil {
				return err
			}
			rep, err := runSmoke(cmd, g, cfg)
			if err != nil {
				return err
			}
			writeSmokeMetrics(cmd.ErrOrStderr(), g, cfg, rep)
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printSmoke(stdout, rep)
			}
			if rep.Failed > 0 {
				return &exitError{code: exitFailed, err: fmt.Errorf("%d smoke check(s) failed", rep.Failed)}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

// runSmoke gathers what the checks need from the host: what the last run
// brought up (state), the Grafana login (.env), the engine.
func runSmoke(cmd *cobra.Command, g *globals, cfg *config.Config) (smoke.Report, error) {
	cfg = host.Resolve(g.root, cfg)
	st, err := (&state.Store{Path: filepath.Join(g.root, "/var/lib/monagent/state.json")}).Load()
	if err != nil {
		return smoke.Report{}, err
	}
	var services []string
	uuid := ""
	if r := st.Steps["compose"]; r != nil && r.Memo["enabled"] != "" {
		services = strings.Split(r.Memo["enabled"], ",")
	}
	if r := st.Steps["volume"]; r != nil {
		uuid = r.Memo["uuid"]
	}
	env := readDotenv(filepath.Join(g.root, cfg.EnvFilePath()))
	for k, v := range cfg.Env {
		if v.Value == nil && env[k] != "" {
			g.secrets.Add(env[k])
		}
	}
	user := env["GRAFANA_ADMIN_USER"]
	if user == "" {
		user = "admin"
	}
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return smoke.Report{}, fmt.Errorf("docker client: %w", err)
	}
	defer docker.Close()
	run := command.Exec{Redact: g.secrets.Redact}
	o := smoke.Options{
		Config:          cfg.Smoke,
		Project:         cfg.Compose.Project,
		Services:        services,
		GrafanaUser:     user,
		GrafanaPassword: env["GRAFANA_ADMIN_PASSWORD"],
		Docker:          docker,
		Infrastructure:  smoke.Volume(cmd.Context(), g.root, cfg, uuid, run),
	}
	if cfg.Smoke.Profile == config.ProfileACGS {
		if o.HTTP, err = smoke.HTTPClient(caFile(g.root, cfg)); err != nil {
			return smoke.Report{}, err
		}
		o.User = cfg.Smoke.User
		o.Password = secretValue(g.root, cfg, cfg.Smoke.PasswordKey, env)
		g.secrets.Add(o.Password)
	}
	return smoke.Run(cmd.Context(), o), nil
}

// caFile is smoke.ca_file under --root: relative paths are in bundle.dir.
func caFile(root string, cfg *config.Config) string {
	f := cfg.Smoke.CAFile
	switch {
	case f == "":
		return ""
	case filepath.IsAbs(f):
		return filepath.Join(root, f)
	}
	return filepath.Join(root, cfg.Bundle.Dir, f)
}

// secretValue is the value of env key k: from the environment file, or
// from its secret file when it is kept out of it.
func secretValue(root string, cfg *config.Config, k string, env map[string]string) string {
	if v, ok := env[k]; ok {
		return v
	}
	if f := cfg.Env[k].File; f != "" {
		if b, err := os.ReadFile(filepath.Join(root, cfg.Bundle.Dir, f)); err == nil {
			return string(b)
		}
	}
	return ""
}

// writeSmokeMetrics leaves the results per category for node-exporter,
// beside the run's textfile. The report is what the operator asked for: a
// textfile that cannot be written is a warning, never a change of the exit
// code.
func writeSmokeMetrics(stderr io.Writer, g *globals, cfg *config.Config, rep smoke.Report) {
	dir := filepath.Join(g.root, cfg.Metrics.TextfileDir)
	if err := metrics.WriteSmoke(dir, rep, time.Now()); err != nil {
		fmt.Fprintf(stderr, "monagent: warning: smoke metrics not written for node-exporter: %v\n", err)
	}
}

// readDotenv reads .env as Compose does; a missing or unreadable file is
// empty (the checks that need a value then say what failed). Every value
// is a secret.
func readDotenv(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	env, err := dotenv.UnmarshalBytesWithLookup(b, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil
	}
	return env
}

func printSmoke(w io.Writer, rep smoke.Report) {
	for _, c := range rep.Checks {
		tag := map[smoke.Status]string{smoke.Pass: "ok  ", smoke.Fail: "FAIL", smoke.Warn: "warn"}[c.Status]
		fmt.Fprintf(w, "%s  [%s] %s: %s\n", tag, c.Category, c.Name, c.Detail)
	}
	fmt.Fprintf(w, "Results: %d passed, %d failed, %d warnings\n", rep.Passed, rep.Failed, rep.Warnings)
}
