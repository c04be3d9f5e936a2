package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/monagent/monagent/rig/instance"
)

const (
	// userDataPath is where cloud-init keeps the instance's user-data
	// script; the stand-in runs it from there.
	userDataPath = "/var/lib/cloud/instance/scripts/part-001"

	// cloudInitTarget and cloudFinal stand in for cloud-init's units,
	// ordered as cloud-init orders them on Debian: cloud-init.target after
	// multi-user.target, cloud-final.service (which runs user-data) after
	// it and after the network, so the boot unit of an AMI runs first.
	cloudInitTarget = `# rig/sim: stand-in for cloud-init's target.
[Unit]
Description=Cloud-init target (rig/sim stand-in)
After=multi-user.target
Wants=cloud-final.service

[Install]
WantedBy=multi-user.target
`
	cloudFinal = `# rig/sim: stand-in for cloud-init's final stage, which runs user-data.
[Unit]
Description=Cloud-init: Final Stage (rig/sim stand-in: runs user-data once per instance)
After=network-online.target multi-user.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/rig-cloud-final
RemainAfterExit=yes
TimeoutSec=0
KillMode=process
StandardOutput=journal+console
`
	// cloudFinalScript runs user-data once per instance, as cloud-init's
	// scripts_user module does (its semaphore is the instance's).
	cloudFinalScript = `#!/bin/sh
# rig/sim: cloud-init's scripts_user, once per instance.
sem=/var/lib/cloud/instance/sem/config_scripts_user
if [ -e "$sem" ]; then
	echo "cloud-final (rig/sim stand-in): user-data already ran on this instance"
	exit 0
fi
mkdir -p "${sem%/*}" && : >"$sem"
exec ` + userDataPath + `
`

	// bootTimeout bounds an instance's start (systemd up, network
	// connected), not its boot's jobs.
	bootTimeout = time.Minute
)

// LaunchOptions describe a simulated EC2 instance.
type LaunchOptions struct {
	// Name is the machine name (hostname, cgroup).
	Name string
	// Dir is the instance's private directory: its disk (the overlay's
	// layers), Docker's state, the console logs of its boots.
	Dir string
	// AWS is the account it runs in.
	AWS *AWS
	// Config is /etc/monagent/config.yaml, written by user-data; "" for
	// Rig.Config.
	Config string
	// LogLevel is monagent's --log-level in user-data and the boot unit;
	// "" for the shipped default (info).
	LogLevel string
	// BeforeBoot runs once the volume is attached and bound, before the
	// first boot starts (to stage what the boot then meets, such as the
	// volume held by an old instance).
	BeforeBoot func(ctx context.Context) error
}

// Machine is one simulated EC2 instance: a disk (a private overlay of the
// baked image) booted one or more times.
type Machine struct {
	rig   *Rig
	name  string
	dir   string
	aws   *AWS
	dev   string // the volume's loop device
	image *os.File

	boots []*instance.Instance
	start time.Time // of the current boot
}

// Launch attaches the data volume to the account's instance (as the
// launch of an instance whose volume awssim's EC2 attaches) and boots a
// fresh disk of the baked image with the user-data. It returns once
// systemd runs inside; the first boot goes on (WaitFirstBoot).
func (r *Rig) Launch(ctx context.Context, o LaunchOptions) (*Machine, error) {
	if o.Config == "" {
		c, err := r.Config(o.AWS)
		if err != nil {
			return nil, err
		}
		o.Config = c
	}
	userData, err := r.userData(o.Config, o.LogLevel)
	if err != nil {
		return nil, err
	}
	m := &Machine{rig: r, name: o.Name, dir: o.Dir, aws: o.AWS}
	// Bake never prunes an image an instance holds (and holds it
	// exclusively while it bakes it).
	lctx, cancel := context.WithTimeout(ctx, bakeTimeout)
	m.image, err = lockFile(lctx, r.Image+".lock", syscall.LOCK_SH)
	cancel()
	if err != nil {
		return nil, err
	}
	if m.dev, err = o.AWS.Attach(ctx, VolumeID, Device); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	if o.BeforeBoot != nil {
		if err := o.BeforeBoot(ctx); err != nil {
			return nil, errors.Join(err, m.Close())
		}
	}
	if err := m.boot(ctx, func(root string) error { return r.setup(root, o.AWS, userData, o.LogLevel) }); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	return m, nil
}

// userData is packaging/user-data.sh with the configuration written
// before its exec of monagent bootstrap (run at logLevel, if set).
func (r *Rig) userData(config, logLevel string) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.opts.Repo, "packaging/user-data.sh"))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.Index(s, "\nexec ")
	if i < 0 {
		return "", errors.New("packaging/user-data.sh has no exec line to put the configuration before")
	}
	if !strings.HasSuffix(config, "\n") {
		config += "\n"
	}
	write := "\n# rig/sim: this environment's configuration (one AMI for every environment).\n" +
		"install -d -m 0755 /etc/monagent\n" +
		"(umask 077 && cat >/etc/monagent/config.yaml) <<'MONAGENT_CONFIG'\n" + config + "MONAGENT_CONFIG"
	s = s[:i] + write + s[i:]
	if logLevel != "" {
		if s, err = withLogLevel(s, "exec /usr/bin/monagent ", logLevel); err != nil {
			return "", fmt.Errorf("packaging/user-data.sh: %w", err)
		}
	}
	return s, nil
}

// withLogLevel adds --log-level to the line of text that starts with
// prefix.
func withLogLevel(text, prefix, level string) (string, error) {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = l + " --log-level " + level
			return strings.Join(lines, "\n"), nil
		}
	}
	return "", fmt.Errorf("no line starts with %q", prefix)
}

// logLevelDropIn replaces the boot unit's ExecStart (from
// systemd/monagent.service) with one at level.
func (r *Rig) logLevelDropIn(level string) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.opts.Repo, "systemd/monagent.service"))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "ExecStart=") {
			return "# rig/sim: the boot unit's runs at log level " + level + ".\n[Service]\nExecStart=\n" +
				l + " --log-level " + level + "\n", nil
		}
	}
	return "", errors.New("systemd/monagent.service has no ExecStart= line")
}

// setup writes into a fresh disk what the launch gives an instance: the
// user-data and cloud-init's stand-ins, awssim's endpoints for every unit
// (the manager's environment) and for login shells, and the engine's
// registry mirror (as an AMI with a corporate mirror would have; Debian's
// docker.io ships no daemon.json).
func (r *Rig) setup(root string, a *AWS, userData, logLevel string) error {
	env := awsEnv(a)
	type file struct {
		rel, content string
		mode         os.FileMode
	}
	files := []file{
		{strings.TrimPrefix(userDataPath, "/"), userData, 0o700},
		{"usr/local/sbin/rig-cloud-final", cloudFinalScript, 0o755},
		{"etc/systemd/system/cloud-init.target", cloudInitTarget, 0o644},
		{"etc/systemd/system/cloud-final.service", cloudFinal, 0o644},
		{"etc/systemd/system.conf.d/50-rig-aws.conf",
			"# rig/sim: the AWS endpoints of this simulated account (awssim).\n[Manager]\nDefaultEnvironment=" + strings.Join(env, " ") + "\n", 0o644},
		{"etc/profile.d/rig-aws.sh", "# rig/sim: the AWS endpoints of this simulated account (awssim).\nexport " + strings.Join(env, " ") + "\n", 0o644},
		{"etc/docker/daemon.json", fmt.Sprintf("{\n  \"registry-mirrors\": [\"http://%s\"]\n}\n", r.Registry), 0o644},
	}
	if logLevel != "" {
		dropIn, err := r.logLevelDropIn(logLevel)
		if err != nil {
			return err
		}
		files = append(files, file{"etc/systemd/system/monagent.service.d/50-rig-log-level.conf", dropIn, 0o644})
	}
	for _, f := range files {
		if err := writeFile(root, f.rel, f.content, f.mode); err != nil {
			return err
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	return os.Symlink("/etc/systemd/system/cloud-init.target", filepath.Join(wants, "cloud-init.target"))
}

// awsEnv is what an instance's processes need to reach awssim: its
// endpoint for the services and for instance metadata (credentials come
// from the instance role, the region from metadata, as on EC2).
func awsEnv(a *AWS) []string {
	return []string{"AWS_ENDPOINT_URL=" + a.URL(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=" + a.URL()}
}

// boot boots the disk: fresh from the image with setup, or, after a
// poweroff, the same disk again.
func (m *Machine) boot(ctx context.Context, setup func(root string) error) error {
	archives := filepath.Join(m.rig.opts.Cache, "apt-archives")
	if err := os.MkdirAll(archives, 0o755); err != nil {
		return err
	}
	opts := instance.Options{
		Name:         m.name,
		Dir:          filepath.Join(m.dir, fmt.Sprintf("boot-%d", len(m.boots)+1)),
		Logf:         m.rig.opts.Logf,
		Network:      instance.Veth,
		Docker:       true,
		HostServices: []string{m.aws.HostPort(), m.rig.Registry},
		Binds: []string{m.dev, filepath.Join(m.aws.Root(), "dev/disk") + ":/dev/disk",
			archives + ":/var/cache/apt/archives"},
		BootTimeout: bootTimeout,
		NoWait:      true,
	}
	if len(m.boots) == 0 {
		opts.Base, opts.Setup = m.rig.Image, setup
	} else {
		opts.Root = m.boots[0].Root()
	}
	m.start = time.Now()
	in, err := instance.Start(ctx, opts)
	if err != nil {
		return err
	}
	m.boots = append(m.boots, in)
	return nil
}

// Reboot powers the instance off and boots the same disk again (the
// volume stays attached); it returns once systemd runs inside.
func (m *Machine) Reboot(ctx context.Context) error {
	if err := m.Poweroff(ctx); err != nil {
		return err
	}
	return m.boot(ctx, nil)
}

// Poweroff halts the instance; its disk stays until Close.
func (m *Machine) Poweroff(ctx context.Context) error {
	if len(m.boots) == 0 {
		return nil
	}
	return m.boots[len(m.boots)-1].Poweroff(ctx)
}

// Close stops the instance if it runs and undoes its boots (mounts,
// cgroups, network rules), newest first. The volume stays attached; the
// directory stays for its owner. Idempotent.
func (m *Machine) Close() error {
	var errs []error
	for i := len(m.boots) - 1; i >= 0; i-- {
		if err := m.boots[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.image != nil {
		m.image.Close()
		m.image = nil
	}
	return errors.Join(errs...)
}

// Instance is the current boot.
func (m *Machine) Instance() *instance.Instance { return m.boots[len(m.boots)-1] }

// Name is the machine name.
func (m *Machine) Name() string { return m.name }

// Dir is the instance's private directory.
func (m *Machine) Dir() string { return m.dir }

// BootStarted is when the current boot was started.
func (m *Machine) BootStarted() time.Time { return m.start }

// AWS is the account the instance runs in.
func (m *Machine) AWS() *AWS { return m.aws }

// Device is the volume's loop device on the host.
func (m *Machine) Device() string { return m.dev }

// Shell is a command line for a human to look around inside, with the
// AWS endpoints in the environment (a login shell reads them).
func (m *Machine) Shell() string {
	return fmt.Sprintf("sudo nsenter -t %d -a -- /bin/bash -l", m.Instance().InitPID())
}
