// Package smoke checks a running monitoring host the way the seed's smoke
// test script does (section 8), in six categories: containers, HTTP
// endpoints, Grafana, Prometheus, the data pipeline, and the
// infrastructure under them. Every check is bounded and retried a few
// times; the report has one line per check and a closing count.
package smoke

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/monagent/monagent/internal/config"
)

// The categories, in the seed's order.
const (
	Containers     = "containers"
	Endpoints      = "endpoints"
	Grafana        = "grafana"
	Prometheus     = "prometheus"
	Pipeline       = "pipeline"
	Infrastructure = "infrastructure"
)

// Categories lists them in order.
var Categories = []string{Containers, Endpoints, Grafana, Prometheus, Pipeline, Infrastructure}

// Status of one check.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Warn Status = "warn"
)

// Check is one line of the report.
type Check struct {
	Category string `json:"category"`
	Name     string `json:"name"`
	Status   Status `json:"status"`
	Detail   string `json:"detail"`
}

// Report is every check and the count.
type Report struct {
	Checks   []Check `json:"checks"`
	Passed   int     `json:"passed"`
	Failed   int     `json:"failed"`
	Warnings int     `json:"warnings"`
}

// Docker is the part of the Docker client the checks use.
type Docker interface {
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// Options are what a smoke run looks at.
type Options struct {
	Config  config.Smoke
	Project string
	// Services are the services that should be running: those the compose
	// step brought up.
	Services []string
	// GrafanaUser and GrafanaPassword log in to Grafana's API.
	GrafanaUser, GrafanaPassword string
	// User and Password log in to Prometheus and Alertmanager (acgs).
	User, Password string
	Docker         Docker
	HTTP           *http.Client
	// Infrastructure are the checks of the data volume, made by the caller.
	Infrastructure []Check
	// Backoff is the first pause between attempts; it doubles. Zero: 1 s.
	Backoff time.Duration
}

// Run makes every check, categories in order, the checks of a category at
// the same time, all within Config.Timeout.
func Run(ctx context.Context, o Options) Report {
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Config.Timeout.Duration)
	defer cancel()
	r := &runner{o: o}
	var checks []Check
	if o.Config.Profile == config.ProfileACGS {
		checks = r.acgs(ctx)
	} else {
		for _, cat := range []func(context.Context) []Check{r.containers, r.endpoints, r.grafana, r.prometheus, r.pipeline, r.infrastructure} {
			checks = append(checks, cat(ctx)...)
		}
	}
	rep := Report{Checks: checks}
	for _, c := range checks {
		switch c.Status {
		case Pass:
			rep.Passed++
		case Fail:
			rep.Failed++
		default:
			rep.Warnings++
		}
	}
	return rep
}

type runner struct {
	o Options
}

// probe is one check, tried until it passes or the attempts run out.
type probe struct {
	category, name string
	optional       bool // a failure is a warning
	try            func(ctx context.Context) (detail string, err error)
}

// all runs probes at the same time, keeping their order in the report.
func (r *runner) all(ctx context.Context, probes []probe) []Check {
	out := make([]Check, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = r.attempt(ctx, p)
		}()
	}
	wg.Wait()
	return out
}

func (r *runner) attempt(ctx context.Context, p probe) Check {
	c := Check{Category: p.category, Name: p.name}
	delay := r.o.Backoff
	attempts := r.o.Config.Attempts
	if p.optional {
		// Its failure is a warning whenever it comes: waiting out the
		// retries would only make every smoke run slower.
		attempts = 1
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				i = attempts
				continue
			case <-t.C:
			}
			delay *= 2
		}
		if c.Detail, err = p.try(ctx); err == nil {
			c.Status = Pass
			return c
		}
	}
	c.Status, c.Detail = Fail, err.Error()
	if p.optional {
		c.Status = Warn
	}
	return c
}

// getJSON fetches url and decodes it into v; any status but 200 is an error.
func (r *runner) getJSON(ctx context.Context, url string, auth bool, v any) error {
	b, err := r.get(ctx, url, auth)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: not the JSON expected: %w", url, err)
	}
	return nil
}

func (r *runner) get(ctx context.Context, url string, auth bool) ([]byte, error) {
	if auth {
		return r.do(ctx, url, r.o.GrafanaUser, r.o.GrafanaPassword)
	}
	return r.do(ctx, url, "", "")
}

// getAuth is get with the Prometheus and Alertmanager login.
func (r *runner) getAuth(ctx context.Context, url string) ([]byte, error) {
	return r.do(ctx, url, r.o.User, r.o.Password)
}

func (r *runner) getAuthJSON(ctx context.Context, url string, v any) error {
	b, err := r.getAuth(ctx, url)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: not the JSON expected: %w", url, err)
	}
	return nil
}

func (r *runner) do(ctx context.Context, url, user, password string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := r.o.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s%s", url, resp.Status, bodyHint(b))
	}
	return b, nil
}

func (r *runner) optionalService(s string) bool {
	return slices.Contains(r.o.Config.OptionalServices, s)
}

// bodyHint is the start of an error response, which usually says why
// (Grafana's {"message": ...}, Loki's "Ingester not ready").
func bodyHint(b []byte) string {
	var m struct{ Message string }
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return ": " + m.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return ""
	}
	return ": " + s
}
