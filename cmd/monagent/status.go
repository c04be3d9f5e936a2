package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/state"
	"github.com/monagent/monagent/internal/status"
)

func statusCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the host: the steps' last runs, the volume, the signal, Docker, the containers, .env keys, the boot timeline (changes nothing, calls no AWS)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configPath)
			if err != nil {
				return err
			}
			st, err := (&state.Store{Path: statePath(g.root)}).Load()
			if err != nil {
				return err
			}
			docker, err := client.New(client.FromEnv)
			if err != nil {
				return fmt.Errorf("docker client (DOCKER_HOST, DOCKER_CERT_PATH): %w", err)
			}
			defer docker.Close()
			h := &host.Host{Root: g.root}
			rep := status.Gather(cmd.Context(), status.Options{Root: g.root, Config: cfg, State: st, Docker: docker,
				Run: command.Exec{Redact: g.secrets.Redact}, ComposeEnv: h.ComposeEnv(), Needs: stepNeeds(stepTable())})
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return status.Render(stdout, rep)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (schema: docs/status.md)")
	return c
}
