package smoke

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"
)

// The ACGS guide's performance targets, reported as measured figures.
const (
	queryP95Target      = 500 * time.Millisecond
	grafanaHealthTarget = 2 * time.Second
	scrapeTarget        = 100 * time.Millisecond
)

// Alerting is the acgs profile's category for Alertmanager.
const Alerting = "alerting"

// HTTPClient is the client of the acgs profile: it trusts the CA in
// caFile (the stack's self-signed certificate) besides the system's.
func HTTPClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("smoke.ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smoke.ca_file %s: no PEM certificate in it", caFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}, nil
}

// acgs runs the acgs profile's categories in order.
func (r *runner) acgs(ctx context.Context) []Check {
	var out []Check
	for _, cat := range []func(context.Context) []Check{r.containers, r.acgsEndpoints, r.alerting, r.acgsPrometheus, r.infrastructure} {
		out = append(out, cat(ctx)...)
	}
	return out
}

func (r *runner) acgsEndpoints(ctx context.Context) []Check {
	c := r.o.Config
	probes := []probe{
		{category: Endpoints, name: "prometheus /-/healthy", try: func(ctx context.Context) (string, error) {
			if scheme(c.PrometheusURL) != "TLS" {
				return "", fmt.Errorf("smoke.prometheus_url %s is not https: the acgs profile serves Prometheus over TLS only", c.PrometheusURL)
			}
			if err := r.refusesAnonymous(ctx, c.PrometheusURL+"/-/healthy"); err != nil {
				return "", err
			}
			_, err := r.getAuth(ctx, c.PrometheusURL+"/-/healthy")
			return "200 over " + scheme(c.PrometheusURL) + " with basic auth; 401 without", err
		}},
		{category: Endpoints, name: "grafana /api/health", try: func(ctx context.Context) (string, error) {
			start := time.Now()
			_, err := r.get(ctx, c.GrafanaURL+"/api/health", false)
			return figure("took", time.Since(start), grafanaHealthTarget), err
		}},
		{category: Endpoints, name: "alertmanager /-/healthy", try: func(ctx context.Context) (string, error) {
			if err := r.refusesAnonymous(ctx, c.AlertmanagerURL+"/-/healthy"); err != nil {
				return "", err
			}
			_, err := r.getAuth(ctx, c.AlertmanagerURL+"/-/healthy")
			return "200 over " + scheme(c.AlertmanagerURL) + " with basic auth; 401 without", err
		}},
	}
	return r.all(ctx, probes)
}

// alerting reads the alerts through API v2 (the guide's /api/v1/alerts
// is gone from current Alertmanager).
func (r *runner) alerting(ctx context.Context) []Check {
	return r.all(ctx, []probe{{category: Alerting, name: "alertmanager /api/v2/alerts", try: func(ctx context.Context) (string, error) {
		var alerts []struct {
			Labels map[string]string `json:"labels"`
		}
		if err := r.getAuthJSON(ctx, r.o.Config.AlertmanagerURL+"/api/v2/alerts", &alerts); err != nil {
			return "", err
		}
		names := map[string]bool{}
		for _, a := range alerts {
			names[a.Labels["alertname"]] = true
		}
		return fmt.Sprintf("%d alerts (%d names)", len(alerts), len(names)), nil
	}}})
}

// acgsPrometheus counts the up series, times the query p95 and reads the
// slowest scrape.
func (r *runner) acgsPrometheus(ctx context.Context) []Check {
	base := r.o.Config.PrometheusURL
	return r.all(ctx, []probe{
		{category: Prometheus, name: "up", try: func(ctx context.Context) (string, error) {
			res, err := r.query(ctx, base, "up")
			if err != nil {
				return "", err
			}
			up := 0
			for _, s := range res {
				if s.value() == 1 {
					up++
				}
			}
			if len(res) == 0 {
				return "", errors.New("the up query returned no series: Prometheus scrapes nothing")
			}
			if up == 0 {
				return "", fmt.Errorf("%d targets, none up: check the scrape jobs' TLS and credentials (Prometheus /targets)", len(res))
			}
			return fmt.Sprintf("%d targets, %d up", len(res), up), nil
		}},
		{category: Prometheus, name: "query p95", try: func(ctx context.Context) (string, error) {
			p95, err := r.queryP95(ctx, base)
			if err != nil {
				return "", err
			}
			return figure("p95", p95, queryP95Target), nil
		}},
		{category: Prometheus, name: "scrape duration", try: func(ctx context.Context) (string, error) {
			res, err := r.query(ctx, base, "max(scrape_duration_seconds)")
			if err != nil {
				return "", err
			}
			if len(res) == 0 {
				return "", errors.New("no scrape_duration_seconds yet: no scrape has finished")
			}
			return figure("slowest scrape", time.Duration(res[0].value()*float64(time.Second)), scrapeTarget), nil
		}},
	})
}

// figure states a measured time against its target; over the target it
// still passes (the guide's targets are for the operator to judge), but
// says so.
func figure(what string, d, target time.Duration) string {
	verdict := "within"
	if d > target {
		verdict = "OVER"
	}
	return fmt.Sprintf("%s %s (%s the target of %s)", what, d.Round(time.Millisecond), verdict, target)
}

func (r *runner) queryP95(ctx context.Context, base string) (time.Duration, error) {
	n := max(r.o.Config.Queries, 1)
	times := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := r.query(ctx, base, "up"); err != nil {
			return 0, err
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return times[(len(times)*95+99)/100-1], nil
}

type series struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s series) value() float64 {
	str, _ := s.Value[1].(string)
	v, _ := strconv.ParseFloat(str, 64)
	return v
}

func (r *runner) query(ctx context.Context, base, q string) ([]series, error) {
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Result []series `json:"result"`
		} `json:"data"`
	}
	if err := r.getAuthJSON(ctx, base+"/api/v1/query?query="+url.QueryEscape(q), &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %s: status %q", q, resp.Status)
	}
	return resp.Data.Result, nil
}

// refusesAnonymous checks that basic auth is on: the guide's point.
func (r *runner) refusesAnonymous(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := r.o.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("GET %s without credentials: %s, want 401 Unauthorized: basic auth is off (check web.yml's basic_auth_users)", u, resp.Status)
	}
	return nil
}

func scheme(u string) string {
	if p, err := url.Parse(u); err == nil && p.Scheme == "https" {
		return "TLS"
	}
	return "plain HTTP"
}
