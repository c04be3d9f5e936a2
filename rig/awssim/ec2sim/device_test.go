package ec2sim_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// loopOf returns the loop device link resolves to, checking that the device
// is backed by the volume's sparse file.
func (e *env) loopOf(t *testing.T, link, volID string) string {
	t.Helper()
	dev, err := os.Readlink(link)
	if err != nil {
		t.Fatalf("link: %v", err)
	}
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("%s -> %s, want a loop device", link, dev)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop/backing_file"))
	if err != nil {
		t.Fatalf("%s: %v", dev, err)
	}
	if got := strings.TrimSpace(string(b)); !strings.HasPrefix(got, e.dataDir+"/") || !strings.Contains(got, volID) {
		t.Fatalf("%s is backed by %s, want the file of %s under %s", dev, got, volID, e.dataDir)
	}
	return dev
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func gone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s still there (%v)", path, err)
	}
}

func TestAttachMakesRealBlockDevice(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	ctx := context.Background()
	id := e.createVolume(t, testID.AZ)
	if _, err := e.client.AttachVolume(ctx, &ec2.AttachVolumeInput{
		VolumeId: aws.String(id), InstanceId: aws.String(testID.InstanceID), Device: aws.String("/dev/xvdf"),
	}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, id, "attached", attached)

	link := e.byIDLink(id)
	dev := e.loopOf(t, link, id)
	run(t, "mkfs.xfs", "-q", link)
	mnt := t.TempDir()
	run(t, "mount", link, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "probe"), []byte("data"), 0o600); err != nil {
		t.Error(err)
	}
	run(t, "umount", mnt)
	gone(t, filepath.Join(e.root, "dev/xvdf")) // default links: by-id only

	if _, err := e.client.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, id, "available", available)
	gone(t, link)
	if loops := loopsUnder(t, e.dataDir); len(loops) > 0 {
		t.Errorf("detach left %v (was %s)", loops, dev)
	}

	// The data outlives the attachment: attach again and find the file.
	if _, err := e.client.AttachVolume(ctx, &ec2.AttachVolumeInput{
		VolumeId: aws.String(id), InstanceId: aws.String(testID.InstanceID), Device: aws.String("/dev/xvdf"),
	}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, id, "attached", attached)
	run(t, "mount", "-o", "ro", e.byIDLink(id), mnt)
	b, err := os.ReadFile(filepath.Join(mnt, "probe"))
	run(t, "umount", mnt)
	if err != nil || string(b) != "data" {
		t.Errorf("file after reattach: %q, %v", b, err)
	}
}

func TestSeededAttachmentWithNameLink(t *testing.T) {
	t.Parallel()
	e := start(t, `
ec2:
  volumes:
    - {id: vol-0123456789abcdef2, size_gib: 1, attached_to: i-0123456789abcdef0, device: /dev/sdf, links: [by-id, name]}
`)
	byID := e.byIDLink("vol-0123456789abcdef2")
	name := filepath.Join(e.root, "dev/sdf")
	if e.loopOf(t, byID, "vol-0123456789abcdef2") != e.loopOf(t, name, "vol-0123456789abcdef2") {
		t.Error("by-id and name links point at different devices")
	}
	_, err := e.client.DeleteVolume(context.Background(), &ec2.DeleteVolumeInput{VolumeId: aws.String("vol-0123456789abcdef2")})
	if code, _ := apiError(t, err); code != "VolumeInUse" {
		t.Fatalf("delete attached volume: %v", err)
	}
	if _, err := e.client.DetachVolume(context.Background(), &ec2.DetachVolumeInput{
		VolumeId: aws.String("vol-0123456789abcdef2"), InstanceId: aws.String(testID.InstanceID), Device: aws.String("/dev/sdf"),
	}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "vol-0123456789abcdef2", "available", available)
	gone(t, byID)
	gone(t, name)
	if _, err := e.client.DeleteVolume(context.Background(), &ec2.DeleteVolumeInput{VolumeId: aws.String("vol-0123456789abcdef2")}); err != nil {
		t.Fatal(err)
	}
	gone(t, filepath.Join(e.dataDir, "volumes", "vol-0123456789abcdef2.img"))
}

func TestRestartKeepsVolumesAndDevices(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	id := e.createVolume(t, testID.AZ)
	if _, err := e.client.AttachVolume(context.Background(), &ec2.AttachVolumeInput{
		VolumeId: aws.String(id), InstanceId: aws.String(testID.InstanceID), Device: aws.String("/dev/xvdf"),
	}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, id, "attached", attached)

	if err := e.close(); err != nil {
		t.Fatal(err)
	}
	gone(t, e.byIDLink(id))
	if loops := loopsUnder(t, e.dataDir); len(loops) > 0 {
		t.Fatalf("Close left %v", loops)
	}

	e.open(t)
	v := e.describe(t, id)
	if !attached(v) || aws.ToString(v.Attachments[0].Device) != "/dev/xvdf" || aws.ToInt32(v.Size) != 1 {
		t.Errorf("volume after restart: %+v", v)
	}
	e.loopOf(t, e.byIDLink(id), id)
}

func TestCloseStopsPendingAttach(t *testing.T) {
	t.Parallel()
	e := start(t, "ec2:\n  attach_delay: 300ms\n")
	id := e.createVolume(t, testID.AZ)
	if _, err := e.client.AttachVolume(context.Background(), &ec2.AttachVolumeInput{
		VolumeId: aws.String(id), InstanceId: aws.String(testID.InstanceID), Device: aws.String("/dev/xvdf"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	gone(t, e.byIDLink(id))
	if loops := loopsUnder(t, e.dataDir); len(loops) > 0 {
		t.Errorf("a timer made a device after Close: %v", loops)
	}
}
