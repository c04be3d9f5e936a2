package dr

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/backup"
	"github.com/monagent/monagent/internal/command"
)

// Archives of two deployments share a location: each one prunes and
// restores its own only.
func TestPruneAndLatestPerDeployment(t *testing.T) {
	ctx := context.Background()
	store := backup.LocalStore{Dir: t.TempDir()}
	base := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	var prod, staging []string
	for i := range 4 {
		for _, d := range []struct {
			name string
			list *[]string
		}{{"acgs", &prod}, {"acgs-staging", &staging}} {
			n := backup.ArchiveName(d.name, base.Add(time.Duration(i)*time.Hour))
			if err := os.WriteFile(filepath.Join(store.Dir, n), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			*d.list = append(*d.list, n)
		}
	}
	deleted, err := backup.Prune(ctx, store, "acgs", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deleted, prod[:2]) {
		t.Errorf("pruned %v, want the two oldest of acgs %v", deleted, prod[:2])
	}
	left, _ := store.List(ctx)
	for _, n := range staging {
		if !slices.Contains(left, n) {
			t.Errorf("acgs-staging's %s was pruned by acgs", n)
		}
	}
	if got, err := backup.Latest(ctx, store, "acgs"); err != nil || got != prod[3] {
		t.Errorf("Latest(acgs) = %q, %v; want %s, not the other deployment's", got, err, prod[3])
	}
	if _, err := backup.Latest(ctx, store, "other"); err == nil {
		t.Error("Latest of a deployment with no archive: no error")
	}
}

// replace swaps the restored tree in at once and keeps the old beside it,
// under a dot name no backup takes for a volume of the stack.
func TestReplaceKeepsTheOld(t *testing.T) {
	dir := t.TempDir()
	to := filepath.Join(dir, "grafana_data")
	from := filepath.Join(dir, ".staging", "grafana_data")
	for p, content := range map[string]string{filepath.Join(to, "grafana.db"): "old", filepath.Join(from, "grafana.db"): "restored"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{Run: command.Exec{Log: zap.NewNop()}, Log: zap.NewNop()}
	aside, err := replace(context.Background(), o, from, to, "20261123T060000Z")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(to, "grafana.db")); string(b) != "restored" {
		t.Errorf("target holds %q", b)
	}
	if filepath.Base(aside)[0] != '.' {
		t.Errorf("the old content is at %s: not a dot name", aside)
	}
	if b, _ := os.ReadFile(filepath.Join(aside, "grafana.db")); string(b) != "old" {
		t.Errorf("the old content was lost: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "grafana_data" && e.Name()[0] != '.' {
			t.Errorf("%s left beside the target without a dot name", e.Name())
		}
	}
}
