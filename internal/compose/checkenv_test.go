package compose

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckEnv(t *testing.T) {
	const stack = `services:
  grafana:
    image: grafana/grafana
    environment:
      - GF_SECURITY_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD}
  exporter:
    image: exporter
    environment:
      - GITHUB_TOKEN=${GITHUB_TOKEN}
  dashboard-sync:
    image: sync
    depends_on: [exporter]
    environment:
      - SYNC_KEY=${SYNC_KEY}
`
	tests := []struct {
		name     string
		env      map[string]string
		off      []string
		errs     [][]string
		warnings [][]string
	}{
		{
			name: "every variable set",
			env:  map[string]string{"GRAFANA_ADMIN_PASSWORD": "p", "GITHUB_TOKEN": "t", "SYNC_KEY": "k"},
		},
		{
			name: "a variable a started service needs is missing",
			env:  map[string]string{"GITHUB_TOKEN": "t", "SYNC_KEY": "k"},
			errs: [][]string{{"service grafana", "${GRAFANA_ADMIN_PASSWORD}", "add it to env"}},
		},
		{
			name: "what a left-out service and its dependants read is not needed",
			env:  map[string]string{"GRAFANA_ADMIN_PASSWORD": "p"},
			off:  []string{"exporter"},
		},
		{
			name:     "an unread key is a warning",
			env:      map[string]string{"GRAFANA_ADMIN_PASSWORD": "p", "GITHUB_TOKEN": "t", "SYNC_KEY": "k", "STALE": "x"},
			warnings: [][]string{{".env key STALE"}},
		},
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(file, []byte(stack), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs, warnings, err := CheckEnv(context.Background(), dir, project, file, tt.env, tt.off)
			if err != nil {
				t.Fatal(err)
			}
			if len(errs) != len(tt.errs) || len(warnings) != len(tt.warnings) {
				t.Fatalf("errors %q, warnings %q; want %d and %d", errs, warnings, len(tt.errs), len(tt.warnings))
			}
			for _, subs := range tt.errs {
				if !matches(errs, subs...) {
					t.Errorf("no error holds %q: %q", subs, errs)
				}
			}
			for _, subs := range tt.warnings {
				if !matches(warnings, subs...) {
					t.Errorf("no warning holds %q: %q", subs, warnings)
				}
			}
		})
	}
}

func TestCheckEnvMissingFile(t *testing.T) {
	dir := t.TempDir()
	_, _, err := CheckEnv(context.Background(), dir, project, filepath.Join(dir, "docker-compose.yml"), nil, nil)
	if err == nil {
		t.Fatal("no error for a compose file that does not exist")
	}
}
