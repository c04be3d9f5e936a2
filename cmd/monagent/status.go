package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/monagent/monagent/internal/state"
)

func statusCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show what each step last did (reads the state file; changes nothing)",
		RunE: func(*cobra.Command, []string) error {
			store := &state.Store{Path: filepath.Join(g.root, "/var/lib/monagent/state.json")}
			st, err := store.Load()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(stdout, st)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the state as JSON")
	return c
}

func printStatus(w io.Writer, st *state.State) error {
	if len(st.Steps) == 0 {
		_, err := fmt.Fprintln(w, "no run recorded yet: run `monagent reconcile`")
		return err
	}
	fmt.Fprintf(w, "last run: %s (%s)\n", st.LastRun.UTC().Format(time.RFC3339), st.Mode)
	names := make([]string, 0, len(st.Steps))
	for n := range st.Steps {
		names = append(names, n)
	}
	// Show steps in the order they last ran.
	sort.Slice(names, func(i, j int) bool { return st.Steps[names[i]].Start.Before(st.Steps[names[j]].Start) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "STEP\tSTATUS\tLAST RUN\tDURATION\tATTEMPTS\tNOTE\n")
	for _, n := range names {
		r := st.Steps[n]
		status := string(r.Status)
		if r.Skipped && r.Status == state.Succeeded {
			status = "converged (skipped)"
		}
		note := r.LastError
		if note == "" {
			note = r.Warning
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", n, status, r.Start.UTC().Format(time.RFC3339),
			r.Duration.Round(time.Millisecond), r.Attempts, note)
	}
	return tw.Flush()
}
