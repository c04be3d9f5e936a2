package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
)

// logLines is how much of a failing container's log an error quotes.
const logLines = 30

// DockerAPI is the part of the Docker client the step uses.
type DockerAPI interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerLogs(ctx context.Context, id string, options client.ContainerLogsOptions) (client.ContainerLogsResult, error)
	VolumeInspect(ctx context.Context, id string, options client.VolumeInspectOptions) (client.VolumeInspectResult, error)
}

// container is what the watch needs of one container.
type container struct {
	id, service string
	running     bool
	restarting  bool
	exited      bool
	exitCode    int
	oneShot     bool // restart policy "no": exiting 0 is its job
	health      containertypes.HealthStatus
	restarts    int
	startedAt   time.Time
	configHash  string
}

// containers lists the project's containers by service.
func (s *Step) containers(ctx context.Context) (map[string][]container, error) {
	f := client.Filters{}.Add("label", "com.docker.compose.project="+s.o.Config.Project)
	list, err := s.o.Docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("compose: list the containers of project %s: %w", s.o.Config.Project, err)
	}
	out := map[string][]container{}
	for _, c := range list.Items {
		if c.Labels["com.docker.compose.oneoff"] == "True" {
			continue
		}
		in, err := s.o.Docker.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("compose: inspect container %s: %w", c.ID, err)
		}
		svc := c.Labels["com.docker.compose.service"]
		d := describe(svc, in.Container)
		d.configHash = c.Labels["com.docker.compose.config-hash"]
		out[svc] = append(out[svc], d)
	}
	return out, nil
}

func describe(svc string, in containertypes.InspectResponse) container {
	c := container{id: in.ID, service: svc, restarts: in.RestartCount}
	if st := in.State; st != nil {
		c.running, c.restarting, c.exitCode = st.Running, st.Restarting, st.ExitCode
		c.startedAt, _ = time.Parse(time.RFC3339Nano, st.StartedAt)
		c.exited = st.Status == containertypes.StateExited || st.Status == containertypes.StateDead
		if st.Health != nil {
			c.health = st.Health.Status
		}
	}
	if in.HostConfig != nil {
		p := in.HostConfig.RestartPolicy.Name
		c.oneShot = p == "" || p == containertypes.RestartPolicyDisabled
	}
	return c
}

// state is one look at the stack.
type state struct {
	why     string // what is not up yet; "" when every service is up
	failure error  // a service that will not come up by waiting
	// youngest is the shortest time any container has run.
	youngest time.Duration
}

// observe looks at every enabled service once. base holds each
// container's restart count from before the watch: one that grows is a
// restart loop.
func (s *Step) observe(ctx context.Context, all map[string][]container, base map[string]int) state {
	st := state{youngest: time.Duration(1<<63 - 1)}
	for _, svc := range s.enabled {
		cs := all[svc]
		if len(cs) == 0 {
			return state{why: "service " + svc + " has no container"}
		}
		for _, c := range cs {
			if fail := s.failed(ctx, c, base); fail != nil {
				return state{why: fail.Error(), failure: fail}
			}
			if why := s.notReady(c); why != "" {
				return state{why: why}
			}
			if c.running {
				st.youngest = min(st.youngest, time.Since(c.startedAt))
			}
		}
	}
	return st
}

// failed says why c will not come up by waiting, or nil.
func (s *Step) failed(ctx context.Context, c container, base map[string]int) error {
	first, seen := base[c.id]
	if base != nil && !seen {
		base[c.id], first = c.restarts, c.restarts
	}
	switch {
	case c.exited && !(c.oneShot && c.exitCode == 0):
		return s.failure(ctx, c, fmt.Sprintf("exited with code %d", c.exitCode))
	case c.restarting || (base != nil && c.restarts > first):
		return s.failure(ctx, c, fmt.Sprintf("is in a restart loop (restarted %d times)", c.restarts))
	case c.health == containertypes.Unhealthy:
		return s.failure(ctx, c, "is unhealthy")
	}
	return nil
}

func (s *Step) notReady(c container) string {
	switch {
	case c.exited:
		return "" // a one-shot service that finished its job
	case !c.running:
		return "service " + c.service + " is not running yet"
	case s.m.hasHealthcheck(c.service) && c.health != containertypes.Healthy:
		return "service " + c.service + " is " + string(c.health) + ", not healthy yet"
	}
	return ""
}

// failure is the error for a service that does not come up, quoting its
// last log lines (every line the agent writes is redacted on the way out).
func (s *Step) failure(ctx context.Context, c container, what string) error {
	return retry.PermanentError(fmt.Errorf("compose: service %s (container %.12s) %s; its last log lines:\n%s",
		c.service, c.id, what, s.tail(ctx, c.id)))
}

func (s *Step) tail(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := s.o.Docker.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(logLines)})
	if err != nil {
		return fmt.Sprintf("(logs unavailable: %v)", err)
	}
	defer r.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(r, 64<<10)); err != nil && out.Len() == 0 {
		return fmt.Sprintf("(logs unreadable: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	return "  " + strings.Join(lines[max(0, len(lines)-logLines):], "\n  ")
}

// watch waits, up to compose.health_timeout, until every enabled service
// is up and each of its containers has run, unrestarted, for
// compose.settle. before is what ran before `up`: a container `up` left
// alone is held to its restart count from then.
func (s *Step) watch(ctx context.Context, before map[string][]container) error {
	timeout, settle := s.o.Config.HealthTimeout.Duration, s.o.Config.Settle.Duration
	base := map[string]int{}
	for _, cs := range before {
		for _, c := range cs {
			base[c.id] = c.restarts
		}
	}
	var last state
	var all map[string][]container
	start := time.Now()
	err := retry.Poll(ctx, s.o.Backoff, timeout, nil, func(ctx context.Context) (bool, error) {
		var err error
		if all, err = s.containers(ctx); err != nil {
			return false, retry.TransientError(err)
		}
		last = s.observe(ctx, all, base)
		if last.failure != nil {
			return false, last.failure
		}
		if last.why == "" && last.youngest < settle {
			last.why = fmt.Sprintf("a container has run %v of the %v it must run unrestarted (compose.settle)", last.youngest.Round(time.Millisecond), settle)
		}
		return last.why == "", nil
	})
	if errors.Is(err, retry.ErrTimeout) {
		return fmt.Errorf("compose: the stack is not up after compose.health_timeout (%v): %s; see docker ps -a and docker logs", timeout, last.why)
	}
	if err != nil {
		return err
	}
	s.lastUp = map[string]record{}
	for _, svc := range s.enabled {
		for _, c := range all[svc] {
			s.lastUp[c.id] = record{Service: svc, Restarts: c.restarts, Hash: c.configHash}
		}
	}
	s.o.Log.Info("stack up", zap.Strings("services", s.enabled), zap.Duration("duration", time.Since(start)))
	return nil
}
