// Command steampipe is the test rig's stand-in for the turbot/steampipe image
// (Steampipe cannot be had here). It accepts the command line the seed stack
// passes,
//
//	steampipe service start --foreground --database-listen local --database-port 9193
//
// and listens on the database port over TCP like Steampipe's embedded
// PostgreSQL. It does not speak the PostgreSQL protocol: it closes each
// connection after answering an SSL request with 'N' (no SSL), which is enough
// for a port probe.
//
// Like the real one, --database-listen local binds to the loopback addresses
// only (so, in a container, the port is unreachable from other containers and
// through a published port); network binds to all interfaces; anything else
// is a comma-separated list of addresses.
//
// `steampipe service status` dials the port on 127.0.0.1 and reports whether
// the service runs, which lets a test probe a container with `docker exec`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const version = "v1.0.0-standin"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v" || args[0] == "version") {
		fmt.Fprintf(stdout, "Steampipe %s\n", version)
		return 0
	}
	if len(args) < 2 || args[0] != "service" {
		fmt.Fprintf(stderr, "Error: unknown command %q for \"steampipe\" (the stand-in knows: service start|status, --version)\n", strings.Join(args, " "))
		return 1
	}
	fs := flag.NewFlagSet("steampipe service "+args[1], flag.ContinueOnError)
	fs.SetOutput(stderr)
	foreground := fs.Bool("foreground", false, "run the service in the foreground")
	listen := fs.String("database-listen", "network", "accept connections from: local, network, or a comma-separated list of addresses")
	port := fs.Int("database-port", 9193, "database port")
	fs.String("database-password", "", "ignored")
	fs.Bool("show-password", false, "ignored")
	fs.String("install-dir", "", "ignored")
	fs.String("mod-location", "", "ignored")
	if err := fs.Parse(args[2:]); err != nil {
		return 1
	}
	switch args[1] {
	case "start":
		if !*foreground {
			fmt.Fprintln(stderr, "Error: the stand-in only runs with --foreground (a container's main process)")
			return 1
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		addrs, err := listenAddrs(*listen, *port)
		if err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
		for _, c := range configConnections(configDir()) {
			fmt.Fprintf(stdout, "connection %q (plugin %s) loaded\n", c.name, c.plugin)
		}
		if err := serve(ctx, addrs, stdout); err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
		return 0
	case "status":
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)), 2*time.Second)
		if err != nil {
			fmt.Fprintln(stdout, "Steampipe service is not running.")
			return 1
		}
		c.Close()
		fmt.Fprintf(stdout, "Steampipe service is running:\n\nDatabase:\n\n  Host(s):            127.0.0.1\n  Port:               %d\n  Database:           steampipe\n  User:               steampipe\n", *port)
		return 0
	case "stop":
		fmt.Fprintln(stdout, "Steampipe service stopped.")
		return 0
	}
	fmt.Fprintf(stderr, "Error: unknown command %q for \"steampipe service\"\n", args[1])
	return 1
}

// listenAddrs maps --database-listen to the addresses to bind.
func listenAddrs(listen string, port int) ([]string, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("invalid --database-port %d", port)
	}
	p := strconv.Itoa(port)
	switch listen {
	case "local", "localhost":
		return []string{net.JoinHostPort("127.0.0.1", p), net.JoinHostPort("::1", p)}, nil
	case "network", "*", "":
		return []string{":" + p}, nil
	}
	var out []string
	for _, h := range strings.Split(listen, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		out = append(out, net.JoinHostPort(h, p))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("invalid --database-listen %q", listen)
	}
	return out, nil
}

// serve listens on every address (an unavailable IPv6 loopback is skipped)
// and accepts connections until ctx ends.
func serve(ctx context.Context, addrs []string, log io.Writer) error {
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			if strings.HasPrefix(a, "[::1]") {
				continue // no IPv6 in this network namespace
			}
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return errors.New("no address to listen on")
	}
	var names []string
	for _, l := range lns {
		names = append(names, l.Addr().String())
	}
	fmt.Fprintf(log, "Steampipe service is running in the foreground.\n\nDatabase:\n\n  Host(s):  %s\n  Database: steampipe\n  User:     steampipe\n\nPress Ctrl+C to stop.\n", strings.Join(names, ", "))
	var wg sync.WaitGroup
	for _, l := range lns {
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go handle(c)
			}
		}(l)
	}
	<-ctx.Done()
	for _, l := range lns {
		l.Close()
	}
	wg.Wait()
	fmt.Fprintln(log, "Steampipe service stopped.")
	return nil
}

// handle answers a PostgreSQL SSLRequest with 'N' and closes the connection.
func handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8)
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	// SSLRequest: length 8, code 80877103.
	if buf[3] == 8 && buf[4] == 0x04 && buf[5] == 0xd2 && buf[6] == 0x16 && buf[7] == 0x2f {
		c.Write([]byte{'N'})
	}
}

func configDir() string {
	if d := os.Getenv("STEAMPIPE_INSTALL_DIR"); d != "" {
		return filepath.Join(d, "config")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/home/steampipe"
	}
	return filepath.Join(home, ".steampipe", "config")
}

type connection struct{ name, plugin string }

// configConnections lists the `connection "NAME" { plugin = "P" }` blocks of
// the .spc files in dir (a line-based reading, enough for logging).
func configConnections(dir string) []connection {
	files, _ := filepath.Glob(filepath.Join(dir, "*.spc"))
	sort.Strings(files)
	var out []connection
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var cur *connection
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "connection ") {
				name := strings.Trim(strings.TrimSuffix(strings.TrimPrefix(line, "connection "), "{"), " \"")
				out = append(out, connection{name: name})
				cur = &out[len(out)-1]
				continue
			}
			if cur != nil && cur.plugin == "" && strings.HasPrefix(line, "plugin") {
				if _, v, ok := strings.Cut(line, "="); ok {
					cur.plugin = strings.Trim(strings.TrimSpace(v), "\"")
				}
			}
		}
	}
	return out
}
