// Command github-actions-exporter is the test rig's stand-in for
// ghcr.io/labbs/github-actions-exporter (its image cannot be pulled here).
//
// It authenticates the way the real exporter does, from the same flags and
// environment variables. With GITHUB_TOKEN set it prints "authenticating with
// Github Token" and serves Prometheus metrics on $PORT at /metrics (it never
// reaches GitHub: the workflow metrics are declared but have no series).
//
// With an empty GITHUB_TOKEN it falls back to GitHub App authentication,
// whose private key file (GITHUB_APP_PRIVATE_KEY) is unset, prints
//
//	authenticating with Github App
//	Error: Client creation failed.authentication failed: could not read private key: open : no such file or directory
//
// and exits 1: under `restart: unless-stopped` a restart loop, the seed
// runbook's incident (section 7).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	token, repos, orgas, exportFields, apiURL, enterprise string
	appPrivateKey                                         string
	appID, installationID                                 int64
	refresh                                               int64
	port                                                  int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	envInt := func(k string, def int64) int64 {
		n, err := strconv.ParseInt(env(k, strconv.FormatInt(def, 10)), 10, 64)
		if err != nil {
			return def
		}
		return n
	}
	var c config
	fs := flag.NewFlagSet("github-actions-exporter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.token, "github_token", getenv("GITHUB_TOKEN"), "GitHub personal access token ($GITHUB_TOKEN)")
	fs.StringVar(&c.repos, "github_repos", getenv("GITHUB_REPOS"), "repositories to watch, comma-separated ($GITHUB_REPOS)")
	fs.StringVar(&c.orgas, "github_orgas", getenv("GITHUB_ORGAS"), "organisations to watch ($GITHUB_ORGAS)")
	fs.Int64Var(&c.refresh, "github_refresh", envInt("GITHUB_REFRESH", 30), "refresh interval in seconds ($GITHUB_REFRESH)")
	port := envInt("PORT", 9999)
	fs.IntVar(&c.port, "port", int(port), "port to listen on ($PORT)")
	fs.StringVar(&c.exportFields, "export_fields", env("EXPORT_FIELDS", "repo,id,node_id,head_branch,head_sha,run_number,workflow_id,workflow,event,status"), "labels of the workflow metrics ($EXPORT_FIELDS)")
	fs.StringVar(&c.apiURL, "github_api_url", env("GITHUB_API_URL", "api.github.com"), "GitHub API URL ($GITHUB_API_URL)")
	fs.StringVar(&c.enterprise, "enterprise_name", getenv("ENTERPRISE_NAME"), "enterprise name ($ENTERPRISE_NAME)")
	fs.Int64Var(&c.appID, "github_app_id", envInt("GITHUB_APP_ID", 0), "GitHub App id ($GITHUB_APP_ID)")
	fs.Int64Var(&c.installationID, "github_app_installation_id", envInt("GITHUB_APP_INSTALLATION_ID", 0), "GitHub App installation id ($GITHUB_APP_INSTALLATION_ID)")
	fs.StringVar(&c.appPrivateKey, "github_app_private_key", getenv("GITHUB_APP_PRIVATE_KEY"), "GitHub App private key file ($GITHUB_APP_PRIVATE_KEY)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, nil
}

// authenticate mirrors the real exporter's client creation: a token wins,
// otherwise the GitHub App's private key file must be readable.
func authenticate(c config, log io.Writer) error {
	if c.token != "" {
		fmt.Fprintln(log, "authenticating with Github Token")
		return nil
	}
	fmt.Fprintln(log, "authenticating with Github App")
	// An unset key path gives os.ReadFile's "open : no such file or directory".
	if _, err := os.ReadFile(c.appPrivateKey); err != nil {
		return fmt.Errorf("authentication failed: could not read private key: %w", err)
	}
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, err := parse(args, getenv, stderr)
	if err != nil {
		return 1
	}
	if err := authenticate(c, stderr); err != nil {
		fmt.Fprintf(stderr, "Error: Client creation failed.%v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(c.port))
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: handler(c), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(stderr, "listening on %s, watching %s (refresh %ds)\n", ln.Addr(), c.repos, c.refresh)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

func handler(c config) http.Handler {
	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprint(w, metrics(c, start))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><head><title>Github Actions Exporter</title></head><body><h1>Github Actions Exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>`)
	})
	return mux
}

func metrics(c config, start time.Time) string {
	var b strings.Builder
	for _, m := range []struct{ name, help string }{
		{"github_workflow_run_status", "Workflow run status"},
		{"github_workflow_run_duration_ms", "Workflow run duration (in milliseconds)"},
		{"github_job", "job status"},
		{"github_runner_status", "runner status"},
	} {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", m.name, m.help, m.name)
	}
	fmt.Fprintf(&b, "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	fmt.Fprintf(&b, "# HELP go_info Information about the Go environment.\n# TYPE go_info gauge\ngo_info{version=%q} 1\n", runtime.Version())
	fmt.Fprintf(&b, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %d\n", start.Unix())
	return b.String()
}
