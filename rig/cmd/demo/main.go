// Command demo is `make demo`: the simulated EC2 monitoring host, from a
// blank data volume to the running stack, under real systemd.
//
//	demo [-repo DIR] [-work DIR] [-awssim BIN] [-addr 127.0.0.1:PORT] [-wait auto|yes|no]
//
// It prepares the rig (cached: the images, the registry, the base rootfs,
// the package and the image baked from it), starts awssim, launches an
// instance whose user-data runs `monagent bootstrap`, follows the first
// boot, prints the timings, `monagent status` and `monagent smoke` run
// inside, and how to look around. Interactive (a terminal, CI unset), it
// keeps everything up until Ctrl-C; otherwise it cleans up at once and
// exits with smoke's status. SIGINT and SIGTERM clean up at any point.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/monagent/monagent/rig/instance"
	"github.com/monagent/monagent/rig/sim"
)

const (
	// prepareTimeout bounds the rig's preparation (a cold machine builds
	// Loki, the Compose plugin and the rootfs: about 8 minutes).
	prepareTimeout = 45 * time.Minute
	// firstBootTimeout bounds the first boot, image pulls included.
	firstBootTimeout = 15 * time.Minute
	// cleanupTimeout bounds the cleanup.
	cleanupTimeout = 2 * time.Minute
	// project is the seed stack's Compose project.
	project = "monitoring"
)

type flags struct {
	repo, work, awssim, addr, wait string
}

func main() {
	var f flags
	flag.StringVar(&f.repo, "repo", ".", "the repository's root")
	flag.StringVar(&f.work, "work", "/tmp/monagent-demo", "the demo's directory (emptied first)")
	flag.StringVar(&f.awssim, "awssim", "bin/awssim", "the awssim binary (make build)")
	flag.StringVar(&f.addr, "addr", "127.0.0.1:18090", "awssim's address (127.0.0.1:0 for any free port)")
	flag.StringVar(&f.wait, "wait", "auto", "keep the instance up until Ctrl-C: yes, no, or auto (a terminal and CI unset)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, f, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
	}
	os.Exit(code)
}

// demo is one run: what it made, to clean up.
type demo struct {
	out   io.Writer
	start time.Time
	work  string
	rig   *sim.Rig
	aws   *sim.AWS
	m     *sim.Machine
	done  bool // the demo has shown everything
	owned bool // work is the demo's to remove
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "%6.1fs  %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// run runs the demo and cleans up; code is smoke's status (1 after a
// failure, 130 after SIGINT or SIGTERM).
func run(ctx context.Context, f flags, out io.Writer) (int, error) {
	d := &demo{out: out, start: time.Now()}
	code, err := d.run(ctx, f)
	// Ctrl-C ends an interactive demo that is done; before, it interrupts.
	interrupted := ctx.Err() != nil && !d.done
	// After a failure the demo's directory stays, for its logs.
	cerr := d.cleanup(err == nil && code == 0 || interrupted)
	if interrupted {
		return 130, errors.Join(errors.New("interrupted"), cerr)
	}
	if err != nil {
		return 1, errors.Join(err, cerr)
	}
	if cerr != nil {
		return 1, cerr
	}
	return code, nil
}

func (d *demo) run(ctx context.Context, f flags) (int, error) {
	var err error
	if d.work, err = filepath.Abs(f.work); err != nil {
		return 1, err
	}
	if err := d.prepare(ctx, f); err != nil {
		return 1, err
	}
	if err := d.launch(ctx, f.addr); err != nil {
		return 1, err
	}
	fb, err := d.firstBoot(ctx)
	if err != nil {
		return 1, err
	}
	code, err := d.report(ctx, fb)
	if err != nil {
		return 1, err
	}
	d.done = true
	if interactive(f.wait) {
		fmt.Fprintf(d.out, "\nThe instance runs until Ctrl-C.\n")
		<-ctx.Done()
		fmt.Fprintln(d.out)
	}
	return code, nil
}

// interactive reports whether to keep the instance up until Ctrl-C.
func interactive(wait string) bool {
	switch wait {
	case "yes":
		return true
	case "no":
		return false
	}
	if os.Getenv("CI") != "" && os.Getenv("CI") != "false" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

func (d *demo) prepare(ctx context.Context, f flags) error {
	if err := d.fresh(); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "== the rig: engine, images, Compose plugin, registry, rootfs, package, baked image (cached after the first run)")
	ctx, cancel := context.WithTimeout(ctx, prepareTimeout)
	defer cancel()
	rig, err := sim.Prepare(ctx, sim.Options{
		Repo: f.repo, Work: d.work, Awssim: f.awssim,
		Logf: func(format string, args ...any) { d.say(format, args...) },
	})
	if err != nil {
		return err
	}
	d.rig = rig
	for _, s := range rig.Steps {
		d.say("ready: %-40s %s", s.Name, s.Took.Round(100*time.Millisecond))
	}
	return nil
}

// demoMarker marks a directory the demo made, which it may empty.
const demoMarker = ".monagent-demo"

// fresh empties the demo's directory. A demo killed before its cleanup
// leaves it, perhaps with overlays still mounted: they are unmounted
// first. A directory the demo did not make is refused, not emptied.
func (d *demo) fresh() error {
	ents, err := os.ReadDir(d.work)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(d.work, demoMarker)); err != nil {
			return fmt.Errorf("%s is not empty and not a demo's directory (no %s): choose another with -work", d.work, demoMarker)
		}
		if err := instance.RemoveTree(d.work); err != nil {
			return fmt.Errorf("remove the last demo's %s: %w", d.work, err)
		}
	}
	if err := os.MkdirAll(d.work, 0o755); err != nil {
		return err
	}
	d.owned = true
	return os.WriteFile(filepath.Join(d.work, demoMarker), []byte("made by rig/cmd/demo; emptied by the next demo\n"), 0o644)
}

func (d *demo) launch(ctx context.Context, addr string) error {
	fmt.Fprintln(d.out, "\n== awssim: the account (stack waiting for one signal, blank volume, SSM, the bundle in S3)")
	a, err := d.rig.StartAWS(ctx, sim.AccountOptions{Addr: addr})
	if err != nil {
		return err
	}
	d.aws = a
	d.say("awssim on %s, instance %s", a.URL(), a.InstanceID())
	fmt.Fprintln(d.out, "\n== the instance: boot of the baked image, user-data runs monagent bootstrap")
	m, err := d.rig.Launch(ctx, sim.LaunchOptions{Name: "monagent-demo", Dir: filepath.Join(d.work, "instance"), AWS: a})
	if err != nil {
		return err
	}
	d.m = m
	in := m.Instance()
	d.say("booting %s (init PID %d, %s, volume %s on %s)", in.Name(), in.InitPID(), in.Addr(), sim.VolumeID, m.Device())
	return nil
}

// firstBoot follows the first boot's monagent runs and waits for it.
func (d *demo) firstBoot(ctx context.Context) (sim.FirstBoot, error) {
	ctx, cancel := context.WithTimeout(ctx, firstBootTimeout)
	defer cancel()
	fctx, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	bootstrapped := make(chan struct{}, 1)
	go func() {
		defer close(followed)
		d.m.Follow(fctx, func(unit string, l sim.LogLine) {
			d.progress(unit, l)
			if l.Mode == "bootstrap" && (l.Msg == "run converged" || l.Msg == "run failed") {
				select {
				case bootstrapped <- struct{}{}:
				default:
				}
			}
		}, "monagent.service", "cloud-final.service")
	}()
	fb, err := d.m.WaitFirstBoot(ctx)
	// The journal's last lines may still be on their way.
	select {
	case <-bootstrapped:
	case <-time.After(2 * time.Second):
	}
	stopFollow()
	<-followed
	return fb, err
}

// progress prints a run's start and end and each step's outcome.
func (d *demo) progress(unit string, l sim.LogLine) {
	who := strings.TrimSuffix(unit, ".service")
	switch l.Msg {
	case "run start":
		d.say("%-12s monagent %s: run start", who, l.Mode)
	case "run converged", "run failed":
		d.say("%-12s monagent %s: %s in %s", who, l.Mode, strings.TrimPrefix(l.Msg, "run "), l.Duration("duration").Round(10*time.Millisecond))
	case "not configured: nothing done":
		d.say("%-12s monagent reconcile: the package's example configuration: nothing done (user-data writes the real one)", who)
	case "step finish":
		how := fmt.Sprintf("done in %s", l.Duration("duration").Round(10*time.Millisecond))
		if s, _ := l.Fields["skipped"].(bool); s {
			how = "converged already"
		}
		d.say("%-12s   %-13s %s", who, l.Step, how)
	case "step failed":
		d.say("%-12s   %-13s FAILED: %s", who, l.Step, l.Err)
	case "cloudformation signal sent":
		d.say("%-12s   %-13s CloudFormation SUCCESS signal sent", who, "signal")
	}
}

// report prints the timings, the stack's signals, the units, status and
// smoke from inside, and how to look around; it returns smoke's status.
func (d *demo) report(ctx context.Context, fb sim.FirstBoot) (int, error) {
	fmt.Fprintf(d.out, "\n== first boot, under real systemd\n")
	fmt.Fprintf(d.out, "boot -> SUCCESS signal:  %s\n", fb.ToSignal().Round(100*time.Millisecond))
	fmt.Fprintf(d.out, "boot -> healthy stack:   %s (user-data's bootstrap converged)\n", fb.ToHealthy().Round(100*time.Millisecond))
	fmt.Fprintf(d.out, "systemctl show cloud-final: %s\n", props(fb.CloudFinal))
	fmt.Fprintf(d.out, "systemctl show monagent:    %s\n", props(fb.Unit))
	if err := d.printSignals(ctx); err != nil {
		return 1, err
	}
	containers, err := d.m.Containers(ctx, project)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(d.out, "\n== containers inside (the instance's own engine, images pulled from the registry)\n")
	for _, svc := range slices.Sorted(maps.Keys(containers)) {
		c := containers[svc]
		fmt.Fprintf(d.out, "%-24s %-10s %s\n", svc, c.Status, c.ID[:12])
	}
	for _, args := range [][]string{{"status"}, {"smoke"}} {
		fmt.Fprintf(d.out, "\n== monagent %s (inside the instance)\n", args[0])
		start := time.Now()
		stdout, stderr, code, err := d.m.Monagent(ctx, args...)
		if err != nil {
			return 1, err
		}
		fmt.Fprint(d.out, stdout, stderr)
		fmt.Fprintf(d.out, "(monagent %s: exit %d after %s)\n", args[0], code, time.Since(start).Round(100*time.Millisecond))
		if args[0] == "smoke" {
			d.lookAround()
			return code, nil
		}
	}
	return 0, nil
}

func (d *demo) printSignals(ctx context.Context) error {
	events, err := d.aws.StackEvents(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\n== CloudFormation events of %s\n", sim.StackName)
	for _, e := range events {
		fmt.Fprintf(d.out, "%s  %-32s %-20s %s\n", e.Time.Local().Format("15:04:05.000"), e.Resource, e.Status, e.Reason)
	}
	return nil
}

func (d *demo) lookAround() {
	in := d.m.Instance()
	fmt.Fprintf(d.out, "\n== look around\n")
	fmt.Fprintf(d.out, "a shell inside:  %s\n", d.m.Shell())
	fmt.Fprintf(d.out, "                 then: systemctl status monagent; journalctl -u cloud-final -u monagent; monagent status; docker ps\n")
	fmt.Fprintf(d.out, "console log:     %s\n", in.ConsolePath())
	fmt.Fprintf(d.out, "awssim:          %s (log %s)\n", d.aws.URL(), filepath.Join(d.work, "aws/awssim.log"))
	fmt.Fprintf(d.out, "clean up:        Ctrl-C (or when not interactive, at once) stops the instance and awssim (which\n")
	fmt.Fprintf(d.out, "                 releases the volume's loop device), removes its network rules, cgroups and\n")
	fmt.Fprintf(d.out, "                 mounts, and %s. The rig's registry (%s) and the\n", d.work, d.rig.Registry)
	fmt.Fprintf(d.out, "                 host's dockerd keep running as caches: rig/registry/registry.sh stop;\n")
	fmt.Fprintf(d.out, "                 rm -rf %s removes every cached part.\n", d.rig.Cache())
}

// cleanup stops the instance and awssim and, if remove is set, removes
// the demo's directory (kept after a failure, for its logs).
func (d *demo) cleanup(remove bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	if d.m != nil {
		fmt.Fprintln(d.out, "== cleaning up: the instance")
		if err := d.m.Poweroff(ctx); err != nil {
			errs = append(errs, err)
		}
		if err := d.m.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.aws != nil {
		fmt.Fprintln(d.out, "== cleaning up: awssim (releases the volume's loop device)")
		if err := d.aws.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if !d.owned {
		return errors.Join(errs...)
	}
	if len(errs) > 0 || !remove {
		fmt.Fprintf(d.out, "== logs kept in %s (console logs under instance/boot-*/, awssim's under aws/)\n", d.work)
		return errors.Join(errs...)
	}
	if err := instance.RemoveTree(d.work); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "== removed %s\n", d.work)
	return nil
}

// props formats unit properties in a fixed order.
func props(p map[string]string) string {
	var parts []string
	for _, k := range sim.UnitProps {
		if v, ok := p[k]; ok && k != "InvocationID" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
	}
	return strings.Join(parts, " ")
}
