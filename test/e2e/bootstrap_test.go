package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/monagent/monagent/internal/ebs"
)

const byID = "dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0a1b2c3d4e5f60718"

// A blank volume is formatted, mounted and put in fstab by UUID; one SUCCESS
// signal completes the stack; later runs change nothing and keep the data.
func TestBootstrapBlankVolumeThenRerun(t *testing.T) {
	h := newHost(t, scenario("", ""), "30s")
	// Unrelated fstab lines, odd whitespace and no final newline: kept byte for byte.
	unrelated := "# /etc/fstab: static file system information.\nUUID=1111-2222\t/boot/efi  vfat umask=0077 0 1\n\n/dev/sdz1 /mnt/other ext4 defaults 0 2"
	if err := os.WriteFile(filepath.Join(h.root, "etc/fstab"), []byte(unrelated), 0o644); err != nil {
		t.Fatal(err)
	}

	r := h.mustConverge("bootstrap")
	checkRunCost(t, r.stdout+r.stderr)

	dev, err := filepath.EvalSymlinks(filepath.Join(h.root, byID))
	if err != nil {
		t.Fatal(err)
	}
	probe := blkid(t, dev)
	if probe["TYPE"] != "xfs" || probe["UUID"] == "" {
		t.Fatalf("volume not formatted xfs: %v", probe)
	}
	m, err := ebs.MountAt(filepath.Join(h.root, "data"))
	if err != nil || m == nil || m.FSType != "xfs" {
		t.Fatalf("not mounted: %+v %v", m, err)
	}
	wantLine := "UUID=" + probe["UUID"] + " /data xfs defaults,nofail 0 2"
	fstab := h.readFstab()
	if !strings.HasPrefix(fstab, unrelated) {
		t.Fatalf("unrelated fstab lines changed:\n%q", fstab)
	}
	if strings.Count(fstab, "/data") != 1 || !strings.Contains(fstab, wantLine) {
		t.Fatalf("fstab lacks exactly one %q:\n%s", wantLine, fstab)
	}
	if sig := h.signals(); len(sig) != 1 || sig[0] != "Received SUCCESS signal with UniqueId "+instanceID {
		t.Fatalf("signals %q", sig)
	}
	if s := h.stackStatus(); s != "CREATE_COMPLETE" {
		t.Fatalf("stack %s", s)
	}

	marker := filepath.Join(h.root, "data", "prometheus-block")
	if err := os.WriteFile(marker, []byte("tsdb"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.mustConverge("bootstrap")
	h.mustConverge("reconcile")

	if sig := h.signals(); len(sig) != 1 {
		t.Fatalf("a rerun signalled again: %q", sig)
	}
	if got := blkid(t, dev)["UUID"]; got != probe["UUID"] {
		t.Fatalf("filesystem recreated: UUID %s -> %s", probe["UUID"], got)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "tsdb" {
		t.Fatalf("data lost: %q %v", b, err)
	}
	if h.readFstab() != fstab {
		t.Fatalf("fstab rewritten by a converged run:\n%s", h.readFstab())
	}

	// Drift: someone unmounted /data. reconcile mounts it again, data intact.
	run(t, "umount", filepath.Join(h.root, "data"))
	h.mustConverge("reconcile")
	if b, err := os.ReadFile(marker); err != nil || string(b) != "tsdb" {
		t.Fatalf("data not back after remount: %q %v", b, err)
	}
	st := h.mustConverge("status", "--json")
	if !strings.Contains(st.stdout, `"volume"`) || strings.Contains(st.stdout, `"failed"`) {
		t.Fatalf("status:\n%s", st.stdout)
	}
}

// prepare attaches the volume through the API, lets fn write to the raw
// device, and detaches it again, as a previous life of the volume would.
func prepare(t testing.TB, h *host, fn func(dev string)) {
	t.Helper()
	ctx := context.Background()
	c := h.ec2()
	if _, err := c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(volumeID),
		InstanceId: aws.String(instanceID), Device: aws.String("/dev/xvdf")}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(h.root, byID)
	deadline := time.Now().Add(10 * time.Second)
	var dev string
	for {
		if d, err := filepath.EvalSymlinks(link); err == nil {
			dev = d
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("device link never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fn(dev)
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(volumeID)}); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		out, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volumeID}})
		if err == nil && out.Volumes[0].State == ec2types.VolumeStateAvailable {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("volume never became available again")
}

// A volume that already holds data in another filesystem is never
// formatted, whatever the configuration says.
func TestRefusesForeignContent(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dev string)
		wantErr string
	}{
		{"ext4 with data", func(t *testing.T, dev string) {
			run(t, "mkfs.ext4", "-q", dev)
			mnt := t.TempDir()
			run(t, "mount", dev, mnt)
			defer run(t, "umount", mnt)
			if err := os.WriteFile(filepath.Join(mnt, "grafana.db"), []byte("dashboards"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "ext4"},
		{"partition table only", func(t *testing.T, dev string) {
			cmd := exec.Command("sfdisk", "--quiet", dev)
			cmd.Stdin = strings.NewReader("label: gpt\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v\n%s", err, out)
			}
		}, "partition table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, scenario("", ""), "30s")
			prepare(t, h, func(dev string) { tt.prepare(t, dev) })
			r := h.monagent("bootstrap")
			if r.code != 4 || !strings.Contains(r.stderr, tt.wantErr) {
				t.Fatalf("want exit 4 (permanent) naming %q, got %d: %s", tt.wantErr, r.code, r.stderr)
			}
			if sig := h.signals(); len(sig) != 1 || !strings.Contains(sig[0], "FAILURE") {
				t.Fatalf("want one FAILURE signal, got %q", sig)
			}
			dev, err := filepath.EvalSymlinks(filepath.Join(h.root, byID))
			if err != nil {
				t.Fatal(err)
			}
			probe := blkid(t, dev)
			if probe["TYPE"] == "xfs" {
				t.Fatalf("volume was reformatted: %v", probe)
			}
			if tt.name == "ext4 with data" {
				mnt := t.TempDir()
				run(t, "mount", "-o", "ro", dev, mnt)
				defer run(t, "umount", mnt)
				if b, err := os.ReadFile(filepath.Join(mnt, "grafana.db")); err != nil || string(b) != "dashboards" {
					t.Fatalf("data lost: %q %v", b, err)
				}
			}
		})
	}
}

// Permanent failures before the signal exit 4, on which systemd does not
// restart the unit, with the operator's next move, and fail the stack at
// once with a FAILURE signal: within 5 s of the failing step's error.
func TestPermanentFailuresSignalFailure(t *testing.T) {
	tests := []struct {
		name        string
		volumeExtra string
		wait        string
		want        []string
	}{
		{"volume in another AZ", "      az_override: eu-west-1b", "30s",
			[]string{"eu-west-1b", "eu-west-1a"}},
		{"KMS key revoked", "      encrypted: true\n      kms_key_id: arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab\n      kms_revoked: true", "30s",
			[]string{"arn:aws:kms:eu-west-1:123456789012:key/1234abcd", "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
				"kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo", "customer-managed"}},
		{"volume never released by the old instance", "      attached_to: i-0fedcba9876543210", "3s",
			[]string{"i-0fedcba9876543210"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := tt.volumeExtra
			if strings.Contains(extra, "az_override") {
				extra = ""
			}
			scen := scenario(extra, "")
			if strings.Contains(tt.volumeExtra, "az_override") {
				scen = strings.Replace(scen, "az: eu-west-1a", "az: eu-west-1b", 1)
			}
			h := newHost(t, scen, tt.wait)
			r := h.monagent("bootstrap")
			if r.code != 4 {
				t.Fatalf("exit %d, want 4\nstderr: %s", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error does not name %q:\n%s", w, r.stderr)
				}
			}
			sig := h.signals()
			if len(sig) != 1 || sig[0] != "Received FAILURE signal with UniqueId "+instanceID {
				t.Fatalf("want one FAILURE signal, got %q", sig)
			}
			if s := h.stackStatus(); !strings.Contains(s, "ROLLBACK") && s != "CREATE_FAILED" {
				t.Fatalf("stack %s after FAILURE", s)
			}
			// CloudFormation heard of the failure within seconds of the
			// step's error, not after its 15-minute timeout.
			failed := logTime(t, r.stdout, "step failed")
			signalled := h.signalTime("FAILURE")
			if d := signalled.Sub(failed); d < 0 || d > 5*time.Second {
				t.Fatalf("FAILURE signal %v after the step failed (at %v, signal at %v), want within 5s", d, failed, signalled)
			}
		})
	}
}

// Throttling on the EC2 calls is retried with backoff; the run converges.
func TestThrottlingStillConverges(t *testing.T) {
	faults := `faults:
  ec2.DescribeVolumes: {count: 4, code: RequestLimitExceeded, status: 503}
  ec2.AttachVolume: {count: 2, code: RequestLimitExceeded, status: 503}
  cloudformation.SignalResource: {count: 2, code: Throttling, status: 400}
`
	h := newHost(t, scenario("", faults), "30s")
	h.mustConverge("bootstrap")
	if sig := h.signals(); len(sig) != 1 || !strings.Contains(sig[0], "SUCCESS") {
		t.Fatalf("signals %q", sig)
	}
	throttled := h.throttledCalls()
	if throttled < 8 {
		t.Fatalf("only %d throttled calls seen: the faults did not fire", throttled)
	}
}

// checkRunCost checks that the run's last line reports the process's own
// peak resident set and CPU time, within what a run of this agent can be.
func checkRunCost(t *testing.T, out string) {
	t.Helper()
	for _, l := range parseLogFields(out) {
		if l["msg"] != "run converged" {
			continue
		}
		rss, _ := l["peak_rss_mib"].(float64)
		cpu, err := time.ParseDuration(fmt.Sprint(l["cpu"]))
		if rss < 5 || rss > 200 || err != nil || cpu <= 0 || cpu > time.Minute {
			t.Errorf("run's cost: peak_rss_mib %v, cpu %v (%v); want its own peak in MiB and CPU time", l["peak_rss_mib"], l["cpu"], err)
		}
		return
	}
	t.Errorf("no run converged line in:\n%s", out)
}
