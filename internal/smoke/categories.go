package smoke

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// containers: every service that should run is running, not restarting.
func (r *runner) containers(ctx context.Context) []Check {
	f := client.Filters{}.Add("label", "com.docker.compose.project="+r.o.Project)
	list, err := r.o.Docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return []Check{{Containers, "docker", Fail, fmt.Sprintf("list the containers of project %s: %v", r.o.Project, err)}}
	}
	states := map[string]containertypes.InspectResponse{}
	for _, c := range list.Items {
		if in, err := r.o.Docker.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{}); err == nil {
			states[c.Labels["com.docker.compose.service"]] = in.Container
		}
	}
	services := slices.Clone(r.o.Services)
	for _, s := range r.o.Config.OptionalServices {
		if _, ok := states[s]; ok && !slices.Contains(services, s) {
			services = append(services, s)
		}
	}
	var out []Check
	for _, svc := range services {
		c := Check{Category: Containers, Name: svc, Status: Pass}
		in, ok := states[svc]
		switch {
		case !ok:
			c.Status, c.Detail = Fail, "no container: run `monagent reconcile`"
		case in.State == nil || in.State.Restarting:
			c.Status, c.Detail = Fail, fmt.Sprintf("restarting (restarted %d times): docker logs %s", in.RestartCount, strings.TrimPrefix(in.Name, "/"))
		case !in.State.Running:
			c.Status, c.Detail = Fail, fmt.Sprintf("%s (exit code %d): docker logs %s", in.State.Status, in.State.ExitCode, strings.TrimPrefix(in.Name, "/"))
		default:
			c.Detail = "running since " + in.State.StartedAt
		}
		if c.Status == Fail && r.optionalService(svc) {
			c.Status = Warn
		}
		out = append(out, c)
	}
	return out
}

// endpoints: each service's health endpoint answers 200.
func (r *runner) endpoints(ctx context.Context) []Check {
	c := r.o.Config
	var probes []probe
	for _, e := range []struct{ name, url string }{
		{"grafana /api/health", c.GrafanaURL + "/api/health"},
		{"prometheus /-/healthy", c.PrometheusURL + "/-/healthy"},
		{"prometheus /-/ready", c.PrometheusURL + "/-/ready"},
		{"loki /ready", c.LokiURL + "/ready"},
		{"tempo /ready", c.TempoURL + "/ready"},
		{"node-exporter /metrics", c.NodeExporterURL + "/metrics"},
		{"promtail /ready", c.PromtailURL + "/ready"},
	} {
		probes = append(probes, probe{category: Endpoints, name: e.name, try: func(ctx context.Context) (string, error) {
			_, err := r.get(ctx, e.url, false)
			return "200 from " + e.url, err
		}})
	}
	return r.all(ctx, probes)
}

// grafana: enough datasources, each healthy, and enough dashboards.
func (r *runner) grafana(ctx context.Context) []Check {
	base := r.o.Config.GrafanaURL
	var sources []struct{ UID, Name, Type string }
	count := r.attempt(ctx, probe{category: Grafana, name: "datasources", try: func(ctx context.Context) (string, error) {
		if err := r.getJSON(ctx, base+"/api/datasources", true, &sources); err != nil {
			return "", err
		}
		if n := len(sources); n < r.o.Config.MinDatasources {
			return "", fmt.Errorf("%d datasources provisioned, want at least %d (smoke.min_datasources)", n, r.o.Config.MinDatasources)
		}
		return fmt.Sprintf("%d datasources", len(sources)), nil
	}})
	out := []Check{count}
	var probes []probe
	for _, ds := range sources {
		probes = append(probes, probe{category: Grafana, name: "datasource " + ds.Name,
			optional: slices.Contains(r.o.Config.OptionalDatasources, ds.Name),
			try: func(ctx context.Context) (string, error) {
				var h struct{ Status, Message string }
				if err := r.getJSON(ctx, base+"/api/datasources/uid/"+ds.UID+"/health", true, &h); err != nil {
					return "", err
				}
				if h.Status != "OK" {
					return "", fmt.Errorf("%s: %s", h.Status, h.Message)
				}
				return ds.Type + ": " + h.Message, nil
			}})
	}
	out = append(out, r.all(ctx, probes)...)
	return append(out, r.attempt(ctx, probe{category: Grafana, name: "dashboards", try: func(ctx context.Context) (string, error) {
		var found []struct{ Title string }
		if err := r.getJSON(ctx, base+"/api/search?type=dash-db", true, &found); err != nil {
			return "", err
		}
		if n := len(found); n < r.o.Config.MinDashboards {
			return "", fmt.Errorf("%d dashboards provisioned, want at least %d (smoke.min_dashboards)", n, r.o.Config.MinDashboards)
		}
		return fmt.Sprintf("%d dashboards", len(found)), nil
	}}))
}

// prometheus: the required jobs have a target up (other jobs down are
// warnings), rules are loaded, and the query API answers with data.
func (r *runner) prometheus(ctx context.Context) []Check {
	base := r.o.Config.PrometheusURL
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string
				Health    string
				LastError string
			}
		}
	}
	up := map[string]int{}
	jobs := map[string]string{} // job -> last error
	read := r.attempt(ctx, probe{category: Prometheus, name: "targets", try: func(ctx context.Context) (string, error) {
		if err := r.getJSON(ctx, base+"/api/v1/targets", false, &targets); err != nil {
			return "", err
		}
		clear(up)
		for _, t := range targets.Data.ActiveTargets {
			job := t.Labels["job"]
			jobs[job] = t.LastError
			if t.Health == "up" {
				up[job]++
			}
		}
		for _, j := range r.o.Config.RequiredJobs {
			if up[j] == 0 {
				return "", fmt.Errorf("required job %s has no target up", j)
			}
		}
		return fmt.Sprintf("%d targets", len(targets.Data.ActiveTargets)), nil
	}})
	out := []Check{read}
	for _, j := range slices.Sorted(maps.Keys(jobs)) {
		c := Check{Category: Prometheus, Name: "job " + j, Status: Pass, Detail: fmt.Sprintf("%d up", up[j])}
		if up[j] == 0 {
			c.Status, c.Detail = Warn, "no target up"
			if jobs[j] != "" {
				c.Detail += ": " + jobs[j]
			}
			if slices.Contains(r.o.Config.RequiredJobs, j) {
				c.Status = Fail
			}
		}
		out = append(out, c)
	}
	for _, j := range r.o.Config.RequiredJobs {
		if _, ok := jobs[j]; !ok && read.Status == Pass {
			out = append(out, Check{Prometheus, "job " + j, Fail, "not scraped: the job is missing from prometheus.yml"})
		}
	}
	return append(out, r.all(ctx, []probe{
		{category: Prometheus, name: "rules", try: func(ctx context.Context) (string, error) {
			var rules struct {
				Data struct{ Groups []struct{ Rules []any } }
			}
			if err := r.getJSON(ctx, base+"/api/v1/rules", false, &rules); err != nil {
				return "", err
			}
			n := 0
			for _, g := range rules.Data.Groups {
				n += len(g.Rules)
			}
			if n == 0 {
				return "", errors.New("no rules loaded: check rule_files in prometheus.yml")
			}
			return fmt.Sprintf("%d rules in %d groups", n, len(rules.Data.Groups)), nil
		}},
		{category: Prometheus, name: "query up", try: func(ctx context.Context) (string, error) {
			var q struct{ Data struct{ Result []any } }
			if err := r.getJSON(ctx, base+"/api/v1/query?query=up", false, &q); err != nil {
				return "", err
			}
			if len(q.Data.Result) == 0 {
				return "", errors.New("the query up returns no series")
			}
			return fmt.Sprintf("%d series", len(q.Data.Result)), nil
		}},
	})...)
}

// pipeline: Loki has log streams, Promtail has targets, Tempo answers.
func (r *runner) pipeline(ctx context.Context) []Check {
	c := r.o.Config
	return r.all(ctx, []probe{
		{category: Pipeline, name: "loki streams", try: func(ctx context.Context) (string, error) {
			var labels struct {
				Status string
				Data   []string
			}
			if err := r.getJSON(ctx, c.LokiURL+"/loki/api/v1/labels", false, &labels); err != nil {
				return "", err
			}
			if len(labels.Data) == 0 {
				return "", errors.New("Loki has no labels: no log stream has arrived (is Promtail shipping?)")
			}
			return fmt.Sprintf("labels %s", strings.Join(labels.Data, ", ")), nil
		}},
		{category: Pipeline, name: "promtail targets", try: func(ctx context.Context) (string, error) {
			b, err := r.get(ctx, c.PromtailURL+"/targets", false)
			if err != nil {
				return "", err
			}
			if len(b) == 0 {
				return "", errors.New("empty target page")
			}
			return "targets page served", nil
		}},
		{category: Pipeline, name: "tempo status", try: func(ctx context.Context) (string, error) {
			_, err := r.get(ctx, c.TempoURL+"/status", false)
			return "status served", err
		}},
	})
}

// infrastructure: the caller's volume checks, the engine, and no restart
// loop anywhere in the project.
func (r *runner) infrastructure(ctx context.Context) []Check {
	out := append([]Check(nil), r.o.Infrastructure...)
	c := Check{Category: Infrastructure, Name: "docker engine", Status: Pass}
	if p, err := r.o.Docker.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Status, c.Detail = Fail, fmt.Sprintf("the engine does not answer (%v): systemctl status docker", err)
	} else {
		c.Detail = "API " + p.APIVersion
	}
	out = append(out, c)
	f := client.Filters{}.Add("label", "com.docker.compose.project="+r.o.Project).Add("status", "restarting")
	loops := Check{Category: Infrastructure, Name: "restart loops", Status: Pass, Detail: "none"}
	if list, err := r.o.Docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f}); err != nil {
		loops.Status, loops.Detail = Fail, err.Error()
	} else if len(list.Items) > 0 {
		var names []string
		for _, c := range list.Items {
			if svc := c.Labels["com.docker.compose.service"]; !r.optionalService(svc) || slices.Contains(r.o.Services, svc) {
				names = append(names, svc)
			}
		}
		if len(names) > 0 {
			loops.Status, loops.Detail = Fail, fmt.Sprintf("%d container(s) in a restart loop: %s", len(names), strings.Join(names, ", "))
		}
	}
	return append(out, loops)
}
