package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// doctorCase is one failing line of `monagent doctor`: a host prepared to
// show one problem of the seed's troubleshooting tables, the lines that
// name it (with its fix) and the exit code.
type doctorCase struct {
	name     string
	scenario string // "" for scenario("", "")
	config   string // added to baseConfig
	prepare  func(t *testing.T, h *host)
	// want are whole lines of the report: * stands for any text, $ROOT
	// for the host root.
	want []string
	code int
}

const kmsKey = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

const kmsPermissions = "kms:CreateGrant, kms:Decrypt, kms:DescribeKey, kms:GenerateDataKeyWithoutPlaintext, kms:ReEncryptFrom, kms:ReEncryptTo"

const revokedVolume = "      encrypted: true\n      kms_key_id: " + kmsKey + "\n      kms_revoked: true"

func doctorCases() []doctorCase {
	return []doctorCase{
		{
			name:    "IMDSv2 unreachable",
			prepare: func(_ *testing.T, h *host) { h.setFault("imds.GetToken", `{"count":-1,"status":403}`) },
			want: []string{
				"FAIL  imdsv2: instance metadata: the IMDSv2 token request was refused (HTTP 403); monagent uses IMDSv2 only: allow PUT /latest/api/token (instance metadata options HttpTokens=required, HttpPutResponseHopLimit>=1) or remove the proxy or firewall rule that blocks it: *",
				"FAIL  aws: skipped: needs the instance's identity and the configuration expanded with it: imdsv2 failed",
				"FAIL  ebs kms: skipped: needs the instance's identity and the configuration expanded with it: imdsv2 failed",
			},
			code: 1,
		},
		{
			name: "credentials rejected",
			prepare: func(_ *testing.T, h *host) {
				h.setFault("ec2.DescribeVolumes", `{"count":-1,"status":401,"code":"AuthFailure","message":"AWS was not able to validate the provided access credentials"}`)
			},
			want: []string{
				"FAIL  aws: region eu-west-1 (set by region or AWS_REGION), credentials from EnvConfigCredentials are rejected by EC2 (*AuthFailure*): the instance needs an instance profile whose role has monagent's policy (`monagent iam-policy`): aws ec2 describe-iam-instance-profile-associations --filters Name=instance-id,Values=i-0123456789abcdef0, then aws ec2 associate-iam-instance-profile --instance-id i-0123456789abcdef0 --iam-instance-profile Name=<profile>; a clock far off also fails signatures (chronyc tracking)",
				"FAIL  ssm parameters: skipped: AWS cannot be asked with this host's credentials (see aws)",
			},
			code: 1,
		},
		{
			name: "required parameter missing",
			want: []string{"FAIL  ssm /monitoring-production/grafana/admin-password: does not exist, and env.GRAFANA_ADMIN_PASSWORD needs it: a run stops at it; create it: aws ssm put-parameter --name /monitoring-production/grafana/admin-password --type SecureString --value '<value>'"},
			code: 1,
		},
		{
			// A warning: the seed's restart loop came from starting the
			// exporter without it, which monagent never does.
			name: "optional GitHub token missing",
			want: []string{"warn  ssm /monitoring-production/github/api-token: does not exist, so github-actions-exporter is left out rather than started with an empty value (the restart loop of seed section 7); env.GITHUB_TOKEN names it; create it: aws ssm put-parameter --name /monitoring-production/github/api-token --type SecureString --value '<value>'"},
			code: 1,
		},
		{
			name:     "volume in another AZ",
			scenario: strings.Replace(scenario("", ""), "az: eu-west-1a", "az: eu-west-1b", 1),
			want: []string{
				"FAIL  ebs volume: volume: vol-0a1b2c3d4e5f60718 is in availability zone eu-west-1b but this instance i-0123456789abcdef0 is in eu-west-1a; the volume and the instance's subnet must be in the same availability zone: launch the instance in a subnet of eu-west-1b (or snapshot the volume and restore it in eu-west-1a)",
				"FAIL  ebs kms: skipped: the volume check failed",
			},
			code: 1,
		},
		{
			name:     "volume missing",
			scenario: strings.Replace(scenario("", ""), "value: "+volumeID, "value: vol-0ffffffffffffffff", 1),
			want:     []string{"FAIL  ebs volume: volume: describe vol-0ffffffffffffffff: *InvalidVolume.NotFound: The volume 'vol-0ffffffffffffffff' does not exist. (check volume.id or the SSM parameter, and the region)"},
			code:     1,
		},
		{
			name:     "KMS key revoked",
			scenario: scenario(revokedVolume, ""),
			want: []string{"FAIL  ebs kms: vol-0a1b2c3d4e5f60718 is encrypted with KMS key " + kmsKey + ", which this instance cannot use (Client.CustomerKeyHasBeenRevoked: Volume vol-0a1b2c3d4e5f60718 is encrypted with KMS key " + kmsKey + ", which is not accessible.): grant the instance role " + kmsPermissions +
				" on that key (seed section 4; `monagent iam-policy` prints the statement), and make sure the key is enabled (aws kms describe-key --key-id " + kmsKey + ")"},
			code: 1,
		},
		{
			name:     "KMS key the last run could not use",
			scenario: scenario(revokedVolume, ""),
			prepare: func(t *testing.T, h *host) {
				if r := h.monagent("reconcile", "--only", "volume"); r.code != 4 {
					t.Fatalf("reconcile with a revoked key: exit %d, want 4\n%s", r.code, r.stderr)
				}
			},
			want: []string{"FAIL  ebs kms: vol-0a1b2c3d4e5f60718 is encrypted with KMS key " + kmsKey + ", which this instance cannot use (the last run's attach failed on it): grant the instance role " + kmsPermissions + " on that key *"},
			code: 1,
		},
		{
			name:     "scripts bucket missing",
			scenario: strings.Replace(scenario("", ""), "ssm:\n  parameters:\n", "ssm:\n  parameters:\n    - {name: /monitoring-production/ssm/scripts-bucket-name, value: monitoring-production-scripts, type: String}\n", 1),
			want:     []string{"FAIL  s3 bundle: cannot list s3://monitoring-production-scripts/scripts/: the bucket does not exist (bundle.bucket, or the parameter bundle.bucket_parameter names)"},
			code:     1,
		},
		{
			name: "nothing mounted at the mount point",
			prepare: func(t *testing.T, h *host) {
				h.mustConverge("reconcile")
				run(t, "umount", filepath.Join(h.root, "data"))
			},
			want: []string{
				"FAIL  ebs mount: nothing is mounted at $ROOT/data: run `monagent reconcile --only volume`",
				"FAIL  stack data: nothing is mounted at $ROOT/data, so $ROOT/data/monitoring is on the root disk: the stack's data would not outlive the instance; run `monagent reconcile --only volume`",
			},
			code: 1,
		},
		{
			name: "another filesystem at the mount point",
			prepare: func(t *testing.T, h *host) {
				h.mustConverge("reconcile")
				data := filepath.Join(h.root, "data")
				run(t, "umount", data)
				img := filepath.Join(t.TempDir(), "other.img")
				run(t, "truncate", "-s", "300M", img)
				run(t, "mkfs.xfs", "-q", img)
				run(t, "mount", "-o", "loop", img, data)
			},
			want: []string{"FAIL  ebs mount: /dev/loop* mounted at $ROOT/data holds filesystem *, not the data volume's *: unmount it and run `monagent reconcile --only volume`"},
			code: 1,
		},
		{
			name: "stack data dir on another filesystem",
			prepare: func(t *testing.T, h *host) {
				h.mustConverge("reconcile")
				dir := filepath.Join(h.root, "data/monitoring")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				run(t, "mount", "-t", "tmpfs", "doctor-test", dir)
				// Before awssim stops, which unmounts the volume under it.
				t.Cleanup(func() { run(t, "umount", dir) })
			},
			want: []string{"FAIL  stack data: $ROOT/data/monitoring is doctor-test (tmpfs) mounted over it, not on the data volume mounted at $ROOT/data: the stack's data would not outlive the instance; stop the stack, move its data onto $ROOT/data and remove what is in the way, then `monagent reconcile`"},
			code: 1,
		},
		{
			name: ".env lacks what the compose file needs",
			prepare: func(t *testing.T, h *host) {
				dir := filepath.Join(h.root, "opt/monitoring")
				writeFile(t, filepath.Join(dir, "docker-compose.yml"), `services:
  grafana:
    image: grafana/grafana
    environment:
      - GF_SECURITY_ADMIN_USER=${GRAFANA_ADMIN_USER}
      - GF_SECURITY_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-admin}
      - GF_SERVER_ROOT_URL=${GF_SERVER_ROOT_URL}
      - GF_AUTH_TOKEN=${HAND_ADDED_TOKEN}
`)
				writeFile(t, filepath.Join(dir, ".env"), "GRAFANA_ADMIN_USER=admin\nHAND_ADDED_TOKEN=hand-added-s3cret\n")
			},
			want: []string{"FAIL  .env: $ROOT/opt/monitoring/.env: .env lacks GRAFANA_ADMIN_PASSWORD, which env.GRAFANA_ADMIN_PASSWORD puts there: `monagent reconcile --only env` rewrites it; service grafana reads ${GF_SERVER_ROOT_URL}, which has no value in .env and no default in the compose file: add it to env in the configuration"},
			code: 1,
		},
		{
			name: "compose plugin missing",
			want: []string{"FAIL  compose plugin: not installed: $ROOT/usr/local/lib/docker/cli-plugins/docker-compose does not exist, so `docker compose up -d` fails with \"unknown shorthand flag: 'd'\" (seed section 6): set docker.compose_plugin.sha256 to the sha256sum of https://github.com/docker/compose/releases/download/v2.24.0/docker-compose-linux-x86_64, then `monagent reconcile --only docker` installs it"},
			code: 1,
		},
		{
			name:   "compose plugin at another version",
			config: "docker:\n  compose_plugin:\n    version: v5.6.0\n",
			prepare: func(t *testing.T, h *host) {
				// The docker CLI runs the plugin: only where the rig has Docker.
				if _, err := dockerRig(); err != nil {
					t.Fatal(err)
				}
				plugin := filepath.Join(h.root, "usr/local/lib/docker/cli-plugins/docker-compose")
				if err := os.MkdirAll(filepath.Dir(plugin), 0o755); err != nil {
					t.Fatal(err)
				}
				writeExecutable(t, plugin, `#!/bin/sh
if [ "$1" = docker-cli-plugin-metadata ]; then
	echo '{"SchemaVersion":"0.1.0","Vendor":"Docker Inc.","Version":"v2.20.0","ShortDescription":"Docker Compose"}'
	exit 0
fi
echo v2.20.0
`)
			},
			want: []string{"FAIL  compose plugin: `docker compose version` reports v2.20.0, want v5.6.0 (docker.compose_plugin.version), from $ROOT/usr/local/lib/docker/cli-plugins/docker-compose: set docker.compose_plugin.sha256 to the sha256sum of https://github.com/docker/compose/releases/download/v5.6.0/docker-compose-linux-x86_64, then `monagent reconcile --only docker` installs it"},
			code: 1,
		},
		{
			name:    "docker engine not answering",
			prepare: func(_ *testing.T, h *host) { h.extraEnv = []string{"DOCKER_HOST=unix://" + h.root + "/no-docker.sock"} },
			want:    []string{"FAIL  docker engine: the Docker engine does not answer at unix://$ROOT/no-docker.sock (*): systemctl status docker and journalctl -u docker; `monagent reconcile --only docker` installs and starts it"},
			code:    1,
		},
		{
			name: "units not installed",
			want: []string{
				"FAIL  unit monagent.service: not installed: no monagent.service in /etc/systemd/system, /run/systemd/system, /usr/local/lib/systemd/system, /usr/lib/systemd/system, /lib/systemd/system under $ROOT: install the monagent package (or packaging/install.sh), then systemctl enable monagent.service",
				"FAIL  unit monagent-reconcile.timer: not installed: *then systemctl enable monagent-reconcile.timer",
			},
			code: 1,
		},
		{
			name: "units installed, not enabled",
			prepare: func(t *testing.T, h *host) {
				for _, u := range []string{"monagent.service", "monagent-reconcile.timer"} {
					writeFile(t, filepath.Join(h.root, "usr/lib/systemd/system", u), readFile(t, filepath.Join("../../systemd", u)))
				}
			},
			want: []string{
				"FAIL  unit monagent.service: installed at $ROOT/usr/lib/systemd/system/monagent.service but not enabled: no link in $ROOT/etc/systemd/system/multi-user.target.wants: systemctl enable monagent.service",
				"FAIL  unit monagent-reconcile.timer: installed at $ROOT/usr/lib/systemd/system/monagent-reconcile.timer but not enabled: no link in $ROOT/etc/systemd/system/timers.target.wants: systemctl enable monagent-reconcile.timer",
			},
			code: 1,
		},
		{
			name: "backups configured, backup timer not enabled",
			config: `env:
  BACKUP_ENCRYPTION_KEY:
    parameter: /{prefix}/backup/age-identity
    generate: age
backup:
  location: /var/backups/monitoring
`,
			prepare: func(t *testing.T, h *host) {
				u := "monagent-backup.timer"
				writeFile(t, filepath.Join(h.root, "usr/lib/systemd/system", u), readFile(t, filepath.Join("../../systemd", u)))
			},
			want: []string{
				"FAIL  unit monagent-backup.timer: installed at $ROOT/usr/lib/systemd/system/monagent-backup.timer but not enabled: no link in $ROOT/etc/systemd/system/timers.target.wants: systemctl enable monagent-backup.timer",
			},
			code: 1,
		},
	}
}

// Each problem of the seed's troubleshooting tables gives its own failing
// line, naming the thing, the value and the fix.
func TestDoctorFailingLines(t *testing.T) {
	for _, tc := range doctorCases() {
		t.Run(tc.name, func(t *testing.T) {
			scen := tc.scenario
			if scen == "" {
				scen = scenario("", "")
			}
			h := startHost(t, hostOptions{scenario: scen, config: baseConfigWith(tc.config)})
			if tc.prepare != nil {
				tc.prepare(t, h)
			}
			r := h.monagent("doctor")
			lines := h.reportLines(r.stdout)
			for _, w := range tc.want {
				if !hasLine(lines, w) {
					t.Errorf("no line %q in:\n%s", w, strings.Join(lines, "\n"))
				}
			}
			if r.code != tc.code || !strings.Contains(r.stderr, "doctor check(s) failed") {
				t.Errorf("exit %d, want %d\nstderr: %s", r.code, tc.code, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "hand-added-s3cret") {
				t.Error("a .env value was printed")
			}
		})
	}
}

// A converged host with the whole application half: every check passes
// and doctor exits 0; the optional token gone is a warning, still 0.
// Doctor writes nothing, and prints no secret.
func TestDoctorHealthyHost(t *testing.T) {
	bundle := t.TempDir()
	writeFile(t, filepath.Join(bundle, "docker-compose.yml"), `services:
  tempo:
    image: grafana/tempo:2.6.1
    environment:
      - ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD}
      - GITHUB_TOKEN=${GITHUB_TOKEN}
    volumes:
      - tempo_data:/var/tempo
volumes:
  tempo_data:
`)
	h, _ := newStackHost(t, hostOptions{scenario: stackScenario(bundle), project: "doctorok"}, `env:
  GRAFANA_ADMIN_PASSWORD: {parameter: "/{prefix}/grafana/admin-password"}
  GITHUB_TOKEN: {parameter: "/{prefix}/github/api-token", optional: true, services: [tempo]}
`)
	const token = "github_pat_doctor_s3cret"
	putParameter(t, h, "/monitoring-production/github/api-token", token, false)
	h.mustConverge("bootstrap")
	installUnits(t, h.root)

	before := treeOf(t, h.root)
	h.clearCalls()
	r := h.monagent("doctor")
	t.Logf("doctor on a converged host: %v\n%s", r.elapsed, r.stdout)
	lines := h.reportLines(r.stdout)
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "ok    ") {
			t.Errorf("not ok: %s", l)
		}
	}
	for _, w := range []string{
		"ok    ebs kms: arn:aws:kms:*: usable, vol-0a1b2c3d4e5f60718 is attached to this instance",
		"ok    ebs mount: /dev/loop* (xfs, UUID *) at $ROOT/data",
		"ok    stack data: $ROOT/data/doctorok is on the filesystem mounted at $ROOT/data, and so are the project's 1 Docker volume",
		"ok    compose plugin: v5.6.0 at $ROOT/usr/local/lib/docker/cli-plugins/docker-compose, sha256 as pinned",
		"ok    .env: $ROOT/opt/monitoring/.env (2 keys) sets every variable docker-compose.yml needs",
		"ok    unit monagent.service: $ROOT/usr/lib/systemd/system/monagent.service, enabled (multi-user.target.wants)",
		"ok    s3 bundle: s3://monitoring-production-scripts/scripts/ lists and its objects read (s3:ListBucket, s3:GetObject)",
	} {
		if !hasLine(lines, w) {
			t.Errorf("no line %q", w)
		}
	}
	if r.code != 0 {
		t.Fatalf("exit %d on a converged host\n%s%s", r.code, r.stdout, r.stderr)
	}
	h.checkReadOnly(before)
	for _, secret := range []string{grafanaPassword, token} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("doctor printed a secret:\n%s%s", r.stdout, r.stderr)
		}
	}

	// The optional token goes: a warning naming the command; still exit 0.
	if _, err := ssm.NewFromConfig(h.awsConfig()).DeleteParameter(context.Background(),
		&ssm.DeleteParameterInput{Name: aws.String("/monitoring-production/github/api-token")}); err != nil {
		t.Fatal(err)
	}
	r = h.monagent("doctor")
	want := "warn  ssm /monitoring-production/github/api-token: does not exist, so tempo is left out *; create it: aws ssm put-parameter --name /monitoring-production/github/api-token --type SecureString --value '<value>'"
	if !hasLine(h.reportLines(r.stdout), want) || r.code != 0 {
		t.Fatalf("exit %d, want 0 with %q:\n%s", r.code, want, r.stdout)
	}
}

// Doctor on a blank host changes nothing: no file under the root, no AWS
// call that writes, no attachment.
func TestDoctorIsReadOnly(t *testing.T) {
	h := newHost(t, scenario(revokedVolume, ""), "30s")
	before := treeOf(t, h.root)
	h.clearCalls()
	if r := h.monagent("doctor"); r.code != 1 {
		t.Fatalf("exit %d, want 1 on a blank host\n%s", r.code, r.stdout)
	}
	h.checkReadOnly(before)
	if s := volumeState(t, h); s != "available" {
		t.Fatalf("volume %s after doctor, want available", s)
	}
}

// checkReadOnly fails when the root changed since before, or doctor made
// an AWS call other than a read or a dry run.
func (h *host) checkReadOnly(before []string) {
	h.t.Helper()
	if after := treeOf(h.t, h.root); !slices.Equal(before, after) {
		h.t.Errorf("doctor changed the host root:\nbefore %q\nafter  %q", before, after)
	}
	reads := []string{"GetToken", "GetMetadata", "GetDynamicData", "DescribeVolumes", "GetParameters", "ListObjectsV2", "HeadObject",
		"AttachVolume"} // with DryRun only: the volume's state is checked too
	for _, c := range h.calls() {
		if !slices.Contains(reads, c.Operation) {
			h.t.Errorf("doctor called %s.%s", c.Service, c.Operation)
		}
	}
}

// treeOf lists every path under root with its mode, size and time of
// change: what doctor must not touch. The data volume is left out: the
// running stack writes there.
func treeOf(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == filepath.Join(root, "data") {
			return fs.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v %d %v", p, fi.Mode(), fi.Size(), fi.ModTime()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// installUnits installs and enables the units as the package does.
func installUnits(t testing.TB, root string) {
	t.Helper()
	for unit, target := range map[string]string{"monagent.service": "multi-user.target", "monagent-reconcile.timer": "timers.target"} {
		writeFile(t, filepath.Join(root, "usr/lib/systemd/system", unit), readFile(t, filepath.Join("../../systemd", unit)))
		wants := filepath.Join(root, "etc/systemd/system", target+".wants")
		if err := os.MkdirAll(wants, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/usr/lib/systemd/system/"+unit, filepath.Join(wants, unit)); err != nil {
			t.Fatal(err)
		}
	}
}

// baseConfigWith is the infrastructure configuration with extra keys.
func baseConfigWith(extra string) string {
	return fmt.Sprintf(baseConfig, "30s") + extra
}

// reportLines are doctor's lines with the host root written $ROOT.
func (h *host) reportLines(stdout string) []string {
	return strings.Split(strings.TrimSpace(strings.ReplaceAll(stdout, h.root, "$ROOT")), "\n")
}

// hasLine reports whether a line is want, where * stands for any text.
func hasLine(lines []string, want string) bool {
	parts := strings.Split(want, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
	return slices.ContainsFunc(lines, re.MatchString)
}

func TestHasLine(t *testing.T) {
	lines := []string{"FAIL  ebs mount: /dev/loop3 mounted at $ROOT/data holds filesystem a (b)", "ok    lock: free"}
	tests := []struct {
		want string
		ok   bool
	}{
		{"FAIL  ebs mount: /dev/loop* mounted at $ROOT/data holds filesystem a (b)", true},
		{"ok    lock: free", true},
		{"ok    lock: fre", false},       // whole lines only
		{"FAIL  ebs mount: *(c)", false}, // regexp characters are literal
		{"ok    lock: *", true},
	}
	for _, tt := range tests {
		if got := hasLine(lines, tt.want); got != tt.ok {
			t.Errorf("hasLine(%q) = %t, want %t", tt.want, got, tt.ok)
		}
	}
}
