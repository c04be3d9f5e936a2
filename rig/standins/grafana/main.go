// Command grafana is the test rig's stand-in for grafana/grafana (Grafana
// cannot be had here). The image runs `grafana server`; configuration comes
// from the same places as the real image's: the ini file at GF_PATHS_CONFIG
// (or --config; default /etc/grafana/grafana.ini, skipped when absent), and
// over it the GF_<SECTION>_<KEY> environment variables, then Grafana's
// variable expansion ($__env{VAR}, ${VAR}, $__file{PATH}) of every value:
//
//	[security] admin_user       GF_SECURITY_ADMIN_USER      admin login (default admin)
//	[security] admin_password   GF_SECURITY_ADMIN_PASSWORD  empty once resolved: refuse to start (exit 1)
//	[security] secret_key       GF_SECURITY_SECRET_KEY      read, unused (nothing is encrypted)
//	[paths] data                GF_PATHS_DATA               data directory (default /var/lib/grafana)
//	[paths] provisioning        GF_PATHS_PROVISIONING       default /etc/grafana/provisioning
//	[server] http_addr, _port   GF_SERVER_HTTP_ADDR/PORT    listen address (default :3000)
//	[auth.anonymous] enabled    GF_AUTH_ANONYMOUS_ENABLED   true: GET API calls need no credentials
//	                            GF_INSTALL_PLUGINS          logged and skipped
//
// It serves /api/health, and with basic auth as the admin user:
// /api/datasources (from provisioning/datasources), /api/datasources/uid/{uid}
// and .../health (probes the datasource over the network), /api/search and
// /api/dashboards/uid/{uid} (provisioned dashboard files, re-read on each
// call, plus saved ones), POST /api/dashboards/db, DELETE
// /api/dashboards/uid/{uid}, /api/folders, /api/org, /api/user.
//
// Its database, DATA/grafana.db (a JSON document), is created on first start
// with the admin user, like Grafana's: later starts keep the stored admin
// password even if GF_SECURITY_ADMIN_PASSWORD changed, and
// `grafana cli admin reset-admin-password NEW` (e.g. through docker exec)
// changes it.
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
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

func logfTo(w io.Writer, logger string) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(w, "logger=%s t=%s level=info msg=%q\n", logger, time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "cli" {
		return cli(args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "server" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("grafana server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("homepath", "", "ignored")
	configPath := fs.String("config", "", "the ini file (default $GF_PATHS_CONFIG, else "+defaultConfigPath+")")
	fs.String("packaging", "", "ignored")
	fs.String("pidfile", "", "ignored")
	showVersion := fs.Bool("v", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *showVersion {
		fmt.Fprintf(stdout, "Version %s (commit: standin)\n", version)
		return 0
	}
	// Positional cfg:key=value arguments, as run.sh passes, are ignored.

	cfg, err := openSettings(*configPath, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "Error: ✗ %v\n", err)
		return 1
	}
	user := cfg.get("security", "admin_user", "admin")
	password := cfg.get("security", "admin_password", "")
	if password == "" {
		// Real Grafana defaults to admin/admin; the stand-in refuses, so
		// a stack whose secret did not arrive fails visibly instead.
		where := "no config file"
		if cfg.path != "" {
			where = "[security] admin_password in " + cfg.path + " resolves to nothing"
		}
		fmt.Fprintf(stderr, "Error: ✗ GF_SECURITY_ADMIN_PASSWORD is empty (%s): refusing to start with an admin account anyone can guess. Set the admin password (e.g. GRAFANA_ADMIN_PASSWORD in the compose .env).\n", where)
		return 1
	}
	dataDir := cfg.get("paths", "data", "/var/lib/grafana")
	provDir := cfg.get("paths", "provisioning", "/etc/grafana/provisioning")
	addr := net.JoinHostPort(cfg.get("server", "http_addr", ""), cfg.get("server", "http_port", "3000"))
	logf := logfTo(stdout, "server")
	if cfg.path != "" {
		logf("Config loaded from file=%s", cfg.path)
	}

	// The real image's run.sh refuses an unwritable data directory.
	if err := os.MkdirAll(filepath.Join(dataDir, "plugins"), 0o755); err != nil || !writable(dataDir) {
		fmt.Fprintf(stderr, "GF_PATHS_DATA='%s' is not writable.\nYou may have issues with file permissions, more information here: http://docs.grafana.org/installation/docker/#migrate-to-v51-or-later\n", dataDir)
		return 1
	}
	st := openStore(dataDir)
	created, err := st.init(user, password, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "Error: ✗ failed to open database %s: %v\n", st.path, err)
		return 1
	}
	if created {
		logfTo(stdout, "sqlstore")("Created default admin user %s", user)
	} else if s, err := st.read(); err == nil && !s.Admin.check(user, password) {
		logfTo(stdout, "sqlstore")("admin user exists: GF_SECURITY_ADMIN_* only apply on first start; the stored password stays")
	}
	if p := getenv("GF_INSTALL_PLUGINS"); p != "" {
		logfTo(stdout, "plugin.installer")("skipping plugin install (stand-in): %s", p)
	}

	dss, err := loadDatasources(filepath.Join(provDir, "datasources"), getenv)
	if err != nil {
		fmt.Fprintf(stderr, "Error: ✗ Datasource provisioning error: %v\n", err)
		return 1
	}
	provs, err := loadProviders(filepath.Join(provDir, "dashboards"), getenv)
	if err != nil {
		fmt.Fprintf(stderr, "Error: ✗ Dashboard provisioning error: %v\n", err)
		return 1
	}
	a := &app{
		store: st, datasources: dss, providers: provs,
		client:    &http.Client{Timeout: 10 * time.Second},
		anonymous: strings.EqualFold(cfg.get("auth.anonymous", "enabled", "false"), "true"),
		now:       time.Now, logf: logfTo(stdout, "provisioning.dashboard"),
	}
	if _, err := a.synced(); err != nil {
		fmt.Fprintf(stderr, "Error: ✗ Dashboard provisioning error: %v\n", err)
		return 1
	}
	logfTo(stdout, "provisioning.datasources")("provisioned %d datasources", len(dss))

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "Error: ✗ failed to open listener on address %s: %v\n", addr, err)
		return 1
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	logf("HTTP Server Listen address=%s protocol=http subUrl= socket=", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "Error: ✗ %v\n", err)
		return 1
	}
	return 0
}

// openSettings loads the configuration from --config, else GF_PATHS_CONFIG,
// else the default path (the last two may be absent).
func openSettings(flagPath string, getenv func(string) string) (*settings, error) {
	if flagPath != "" {
		return loadSettings(flagPath, true, getenv)
	}
	return loadSettings(envOr(getenv, "GF_PATHS_CONFIG", defaultConfigPath), false, getenv)
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// cli implements `grafana cli admin reset-admin-password NEW`.
func cli(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var rest []string
	for _, a := range args { // global flags such as --homepath are ignored
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
		}
	}
	if len(rest) != 3 || rest[0] != "admin" || rest[1] != "reset-admin-password" {
		fmt.Fprintln(stderr, "usage: grafana cli admin reset-admin-password NEW_PASSWORD (the only command of the stand-in)")
		return 1
	}
	if rest[2] == "" {
		fmt.Fprintln(stderr, "Error: ✗ New password cannot be empty")
		return 1
	}
	cfg, err := openSettings("", getenv)
	if err != nil {
		fmt.Fprintf(stderr, "Error: ✗ %v\n", err)
		return 1
	}
	st := openStore(cfg.get("paths", "data", "/var/lib/grafana"))
	err = st.update(func(s *dbState) error {
		s.Admin = newAdmin(s.Admin.Login, rest[2])
		return nil
	}, false)
	if err != nil {
		fmt.Fprintf(stderr, "Error: ✗ failed to update the admin password in %s: %v\n", st.path, err)
		return 1
	}
	fmt.Fprintln(stdout, "\nAdmin password changed successfully ✔")
	return 0
}
