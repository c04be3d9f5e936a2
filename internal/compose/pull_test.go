package compose

import (
	"context"
	"errors"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// fakeImages holds images; pulling one adds it, unless it is unreachable.
type fakeImages struct {
	mu          sync.Mutex
	have        map[string]bool
	unreachable map[string]bool
	pulled      []string
}

func (f *fakeImages) ImageInspect(_ context.Context, img string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.have[img] {
		return client.ImageInspectResult{}, cerrdefs.ErrNotFound
	}
	return client.ImageInspectResult{}, nil
}

func (f *fakeImages) ImagePull(_ context.Context, img string, _ client.ImagePullOptions) (client.ImagePullResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulled = append(f.pulled, img)
	if f.unreachable[img] {
		return pullResponse{err: errors.New("manifest unknown")}, nil
	}
	f.have[img] = true
	return pullResponse{}, nil
}

type pullResponse struct{ err error }

func (pullResponse) Read([]byte) (int, error) { return 0, io.EOF }
func (pullResponse) Close() error             { return nil }
func (r pullResponse) Wait(context.Context) error {
	return r.err
}
func (pullResponse) JSONMessages(context.Context) iter.Seq2[jsonstream.Message, error] {
	return func(func(jsonstream.Message, error) bool) {}
}

func TestPull(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "opt/monitoring/docker-compose.yml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	compose := "services:\n  prometheus: {image: prom/prometheus:v3.9.1}\n  grafana: {image: grafana/grafana:12.3.0}\n" +
		"  exporter: {image: ghcr.io/labbs/github-actions-exporter:latest}\n  tagged: {image: \"loki:${LOKI_TAG}\"}\n" +
		"  built: {build: .}\n  again: {image: prom/prometheus:v3.9.1}\n"
	if err := os.WriteFile(file, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	imgs := &fakeImages{have: map[string]bool{"grafana/grafana:12.3.0": true},
		unreachable: map[string]bool{"ghcr.io/labbs/github-actions-exporter:latest": true}}
	p := NewPull(PullOptions{Root: root, StackDir: "/opt/monitoring", File: "docker-compose.yml", Docker: imgs})
	ctx := context.Background()
	fp, err := p.Fingerprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ghcr.io/labbs/github-actions-exporter:latest grafana/grafana:12.3.0 prom/prometheus:v3.9.1"; fp != want {
		t.Errorf("fingerprint %q, want %q: an image named by a variable is left to up", fp, want)
	}
	if ok, err := p.Check(ctx); err != nil || ok {
		t.Fatalf("Check = %v, %v; want false with two images missing", ok, err)
	}
	if err := p.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	slices.Sort(imgs.pulled)
	if want := []string{"ghcr.io/labbs/github-actions-exporter:latest", "prom/prometheus:v3.9.1"}; !slices.Equal(imgs.pulled, want) {
		t.Errorf("pulled %v, want %v", imgs.pulled, want)
	}
	// The unreachable image is a warning, and the step converges: up will
	// pull it and name the failure if it matters.
	if ok, err := p.Check(ctx); err != nil || !ok {
		t.Fatalf("Check after Apply = %v, %v; want true", ok, err)
	}
	if w := p.Warning(); !strings.Contains(w, "ghcr.io/labbs/github-actions-exporter:latest not pulled ahead (manifest unknown)") {
		t.Errorf("Warning() = %q", w)
	}
	// The next run does not ask for it again: up pulls it.
	next := NewPull(PullOptions{Root: root, StackDir: "/opt/monitoring", File: "docker-compose.yml", Docker: imgs})
	next.Restore(p.Memo())
	if ok, _ := next.Check(ctx); !ok {
		t.Error("the next run asks again for an image that could not be pulled")
	}
	fresh := NewPull(PullOptions{Root: root, StackDir: "/opt/monitoring", File: "docker-compose.yml", Docker: imgs})
	if ok, _ := fresh.Check(ctx); ok {
		t.Error("without the memo, a missing image is taken as present")
	}
}
