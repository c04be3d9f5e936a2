package ec2sim_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/monagent/monagent/rig/awssim/simtest"
)

// awsCLI runs "aws ec2" against the simulator and decodes its JSON.
func awsCLI(t *testing.T, url string, out any, args ...string) {
	t.Helper()
	b, err := simtest.AWSCLI(t, url, append([]string{"--output", "json", "ec2"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if out == nil {
		return
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("aws ec2 %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

type cliAttachment struct {
	VolumeId, InstanceId, Device, State, AttachTime string
	DeleteOnTermination                             bool
}

type cliVolume struct {
	VolumeId, AvailabilityZone, State, VolumeType, KmsKeyId, CreateTime string
	Size                                                                int
	Encrypted                                                           bool
	Attachments                                                         []cliAttachment
	Tags                                                                []struct{ Key, Value string }
}

func TestAWSCLI(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	var created cliVolume
	awsCLI(t, e.url, &created, "create-volume", "--availability-zone", "eu-west-1a", "--size", "1",
		"--volume-type", "gp3", "--encrypted",
		"--tag-specifications", "ResourceType=volume,Tags=[{Key=Name,Value=monitoring-data}]")
	if !strings.HasPrefix(created.VolumeId, "vol-") || created.State != "creating" || created.Size != 1 ||
		!created.Encrypted || !strings.HasPrefix(created.KmsKeyId, "arn:aws:kms:eu-west-1:111122223333:key/") ||
		created.CreateTime == "" {
		t.Errorf("create-volume = %+v", created)
	}

	var att cliAttachment
	awsCLI(t, e.url, &att, "attach-volume", "--volume-id", created.VolumeId, "--instance-id", testID.InstanceID, "--device", "/dev/xvdf")
	if att.State != "attaching" || att.VolumeId != created.VolumeId || att.InstanceId != testID.InstanceID || att.Device != "/dev/xvdf" {
		t.Errorf("attach-volume = %+v", att)
	}
	e.waitFor(t, created.VolumeId, "attached", attached)

	var desc struct{ Volumes []cliVolume }
	awsCLI(t, e.url, &desc, "describe-volumes", "--filters", "Name=attachment.instance-id,Values="+testID.InstanceID)
	if len(desc.Volumes) != 1 {
		t.Fatalf("describe-volumes = %+v", desc)
	}
	v := desc.Volumes[0]
	if v.VolumeId != created.VolumeId || v.State != "in-use" || v.AvailabilityZone != "eu-west-1a" || v.VolumeType != "gp3" ||
		len(v.Attachments) != 1 || v.Attachments[0].State != "attached" || v.Attachments[0].AttachTime == "" ||
		len(v.Tags) != 1 || v.Tags[0].Value != "monitoring-data" {
		t.Errorf("describe-volumes = %+v", v)
	}

	awsCLI(t, e.url, &att, "detach-volume", "--volume-id", created.VolumeId)
	if att.State != "detaching" {
		t.Errorf("detach-volume = %+v", att)
	}
	e.waitFor(t, created.VolumeId, "available", available)
	awsCLI(t, e.url, nil, "delete-volume", "--volume-id", created.VolumeId)
	awsCLI(t, e.url, &desc, "describe-volumes")
	if len(desc.Volumes) != 0 {
		t.Errorf("describe-volumes after delete = %+v", desc)
	}
}

func TestAWSCLIError(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	out, err := simtest.AWSCLI(t, e.url, "ec2", "describe-volumes", "--volume-ids", "vol-0000000000000000f")
	if err == nil || !strings.Contains(err.Error(), "(InvalidVolume.NotFound)") ||
		!strings.Contains(err.Error(), "The volume 'vol-0000000000000000f' does not exist.") {
		t.Errorf("aws ec2 describe-volumes of a missing volume: %v\n%s", err, out)
	}
	id := e.createVolume(t, "eu-west-1a")
	out, err = simtest.AWSCLI(t, e.url, "ec2", "attach-volume", "--volume-id", id, "--instance-id", "i-0ffffffffffffffff", "--device", "/dev/xvdf")
	want := "An error occurred (InvalidInstanceID.NotFound) when calling the AttachVolume operation: The instance ID 'i-0ffffffffffffffff' does not exist"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("aws ec2 attach-volume to a missing instance: %v\n%s, want %q", err, out, want)
	}
}
