// Command awssim serves a loopback AWS for tests and the demo: IMDSv2, EC2
// (volumes backed by loop devices), SSM, CloudFormation and S3, speaking
// their real wire protocols.
//
//	awssim --addr 127.0.0.1:PORT --data DIR [--root DIR] [--scenario FILE]
//
// It prints one line when ready and serves until SIGTERM.
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
	"syscall"
	"time"

	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/cfnsim"
	"github.com/monagent/monagent/rig/awssim/ec2sim"
	"github.com/monagent/monagent/rig/awssim/imdssim"
	"github.com/monagent/monagent/rig/awssim/s3sim"
	"github.com/monagent/monagent/rig/awssim/simapi"
	"github.com/monagent/monagent/rig/awssim/ssmsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "awssim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("awssim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	data := fs.String("data", "", "directory for the simulator's state (required)")
	root := fs.String("root", "/", "host root the device links are made under")
	scenario := fs.String("scenario", "", "scenario file (YAML) to apply at start")
	files := fs.String("files", "", "directory served read-only under /_files/ (downloads such as the Compose plugin)")
	var id simapi.Identity
	fs.StringVar(&id.Region, "region", "eu-west-1", "region")
	fs.StringVar(&id.AZ, "az", "eu-west-1a", "availability zone of the simulated instance")
	fs.StringVar(&id.InstanceID, "instance-id", "i-0123456789abcdef0", "id of the simulated instance")
	fs.StringVar(&id.PrivateIP, "private-ip", "10.0.1.10", "private IPv4 of the simulated instance")
	fs.StringVar(&id.AccountID, "account-id", "123456789012", "account id in ARNs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return errors.New("--data is required")
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	srv, err := build(id, *data, *root)
	if err != nil {
		return err
	}
	defer srv.Close()
	if *scenario != "" {
		doc, err := os.ReadFile(*scenario)
		if err != nil {
			return fmt.Errorf("scenario: %w", err)
		}
		if err := srv.ApplyScenario(doc); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var handler http.Handler = srv
	if *files != "" {
		mux := http.NewServeMux()
		mux.Handle("/_files/", srv.Files(*files))
		mux.Handle("/", srv)
		handler = mux
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	fmt.Fprintf(stdout, "awssim ready on http://%s (region %s, instance %s, data %s)\n", ln.Addr(), id.Region, id.InstanceID, *data)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// build mounts every simulated service, each keeping its state in its own
// directory under data.
func build(id simapi.Identity, data, root string) (*awssim.Server, error) {
	dir := func(name string) string { return filepath.Join(data, name) }
	ec2, err := ec2sim.New(id, dir("ec2"), root)
	if err != nil {
		return nil, fmt.Errorf("ec2: %w", err)
	}
	ssm, err := ssmsim.New(id, dir("ssm"))
	if err != nil {
		return nil, fmt.Errorf("ssm: %w", err)
	}
	cfn, err := cfnsim.New(id, dir("cloudformation"))
	if err != nil {
		return nil, fmt.Errorf("cloudformation: %w", err)
	}
	s3, err := s3sim.New(id, dir("s3"))
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	imds, err := imdssim.New(id)
	if err != nil {
		return nil, fmt.Errorf("imds: %w", err)
	}
	return awssim.NewServer(imds, ec2, ssm, cfn, s3), nil
}

// checkLoopback refuses any address but loopback: the simulator is for
// this machine only.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %q: awssim listens on loopback only (127.0.0.0/8 or ::1)", addr)
	}
	return nil
}
