package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/state"
)

type fakeDocker struct{ down bool }

func (f fakeDocker) ServerVersion(context.Context, client.ServerVersionOptions) (client.ServerVersionResult, error) {
	if f.down {
		return client.ServerVersionResult{}, errors.New("dial unix /var/run/docker.sock: connect: no such file or directory")
	}
	return client.ServerVersionResult{Version: "20.10.24", APIVersion: "1.41"}, nil
}

func (fakeDocker) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	return client.ContainerListResult{Items: []containertypes.Summary{
		{ID: "b", Names: []string{"/prometheus"}, State: "running", Labels: map[string]string{"com.docker.compose.service": "prometheus"}},
		{ID: "a", Names: []string{"/grafana"}, State: "restarting", Labels: map[string]string{"com.docker.compose.service": "grafana"}},
	}}, nil
}

func (fakeDocker) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	r := containertypes.InspectResponse{ID: id, State: &containertypes.State{}}
	if id == "a" {
		r.RestartCount = 7
		r.State.Health = &containertypes.Health{Status: containertypes.Unhealthy}
	}
	return client.ContainerInspectResult{Container: r}, nil
}

type fakeRun struct{}

func (fakeRun) Run(_ context.Context, c command.Cmd) (command.Result, error) {
	if c.Name == "docker" {
		return command.Result{Stdout: []byte("v5.6.0\n")}, nil
	}
	return command.Result{}, errors.New("not here")
}

func TestGatherAndRender(t *testing.T) {
	root := t.TempDir()
	cfg := config.Defaults()
	cfg.Stack.Name, cfg.Stack.Resource = "Monitoring", "MonitoringAsg"
	const password = "s3cret-Grafana-pw"
	env := filepath.Join(root, cfg.Bundle.Dir, ".env")
	if err := os.MkdirAll(filepath.Dir(env), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env, []byte("GRAFANA_ADMIN_PASSWORD=\""+password+"\"\nGRAFANA_ADMIN_USER=\"admin\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	st := state.Empty()
	st.LastRun, st.Mode, st.InstanceID = start, "bootstrap", "i-0123456789abcdef0"
	st.Steps["volume"] = &state.Record{Status: state.Succeeded, Start: start, Duration: time.Second, Attempts: 1,
		Memo: map[string]string{"volume_id": "vol-0abc", "device": "/dev/nvme1n1", "uuid": "1111-2222"}}
	st.Steps["signal"] = &state.Record{Status: state.Succeeded, Start: start.Add(time.Second), Duration: 50 * time.Millisecond,
		Memo: map[string]string{"signaled_instance": "i-0123456789abcdef0", "signaled_at": "2026-11-23T03:00:01Z", "outcome": "sent"}}
	st.Steps["compose"] = &state.Record{Status: state.Failed, Start: start.Add(2 * time.Second), Duration: 3 * time.Second,
		LastError: "compose: service grafana is in a restart loop\n  its last lines"}

	for _, down := range []bool{false, true} {
		rep := Gather(context.Background(), Options{Root: root, Config: cfg, State: st, Docker: fakeDocker{down: down}, Run: fakeRun{},
			Needs: map[string][]string{"signal": {"volume"}, "compose": {"volume"}}})
		var text, js bytes.Buffer
		if err := Render(&text, rep); err != nil {
			t.Fatal(err)
		}
		if err := json.NewEncoder(&js).Encode(rep); err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{text.String(), js.String()} {
			if strings.Contains(out, password) {
				t.Fatalf("a .env value is shown:\n%s", out)
			}
		}
		want := []string{"i-0123456789abcdef0", "vol-0abc on /dev/nvme1n1", "nothing mounted at /data",
			"SUCCESS sent for i-0123456789abcdef0 at 2026-11-23T03:00:01Z", "GRAFANA_ADMIN_PASSWORD, GRAFANA_ADMIN_USER",
			"not in it: GITHUB_TOKEN", "(0600)", "bootstrap): failed in 5.0s", "compose: service grafana is in a restart loop",
			"critical path volume → compose (5s)"}
		if down {
			want = append(want, "the Docker engine does not answer")
		} else {
			want = append(want, "engine 20.10.24 (API 1.41), compose v5.6.0", "grafana grafana restarting unhealthy 7")
		}
		flat := strings.Join(strings.Fields(text.String()), " ")
		for _, w := range want {
			if !strings.Contains(flat, w) {
				t.Errorf("docker down=%t: status does not say %q:\n%s", down, w, text.String())
			}
		}
		if strings.Contains(text.String(), "its last lines") {
			t.Errorf("the step table shows more than an error's first line:\n%s", text.String())
		}
	}
}
