package seal

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadMakesOneKeyAndKeepsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var/lib/monagent/seal.key")
	keys := make([]*Key, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := Load(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, k := range keys[1:] {
		if k.Sum([]byte("x")) != keys[0].Sum([]byte("x")) {
			t.Fatalf("run %d made a key of its own", i+1)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.Sum([]byte("x")) != keys[0].Sum([]byte("x")) {
		t.Error("a later load made a new key")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".seal-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestSumDependsOnKey(t *testing.T) {
	a, b := NewKey([]byte("a")), NewKey([]byte("b"))
	if a.Sum([]byte("GRAFANA_ADMIN_PASSWORD=admin\n")) == b.Sum([]byte("GRAFANA_ADMIN_PASSWORD=admin\n")) {
		t.Error("two keys give one digest")
	}
}

func TestLoadRefusesAShortKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.key")
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Error("a 5-byte key was taken")
	}
}
