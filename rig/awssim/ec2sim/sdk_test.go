package ec2sim_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/monagent/monagent/rig/awssim/ec2sim"
	"github.com/monagent/monagent/rig/awssim/simapi"
)

func TestVolumeLifecycleSDK(t *testing.T) {
	t.Parallel()
	e := start(t, otherExists)
	ctx := context.Background()
	out, err := e.client.CreateVolume(ctx, &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String("eu-west-1a"),
		Size:             aws.Int32(2),
		VolumeType:       types.VolumeTypeGp3,
		Encrypted:        aws.Bool(true),
		KmsKeyId:         aws.String("1234abcd-12ab-34cd-56ef-1234567890ab"),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeVolume,
			Tags:         []types.Tag{{Key: aws.String("Name"), Value: aws.String("monitoring-data")}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.VolumeId)
	wantKey := "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	if !strings.HasPrefix(id, "vol-") || len(id) != 21 || out.State != types.VolumeStateCreating ||
		aws.ToInt32(out.Size) != 2 || !aws.ToBool(out.Encrypted) || aws.ToString(out.KmsKeyId) != wantKey ||
		aws.ToString(out.AvailabilityZone) != "eu-west-1a" || out.VolumeType != types.VolumeTypeGp3 || out.CreateTime == nil {
		t.Errorf("CreateVolume = %+v", out)
	}

	v := e.describe(t, id)
	if v.State != types.VolumeStateAvailable || len(v.Tags) != 1 || aws.ToString(v.Tags[0].Value) != "monitoring-data" ||
		aws.ToInt32(v.Iops) != 3000 || aws.ToInt32(v.Throughput) != 125 {
		t.Errorf("DescribeVolumes = %+v", v)
	}

	att, err := e.client.AttachVolume(ctx, &ec2.AttachVolumeInput{
		VolumeId: aws.String(id), InstanceId: aws.String(otherInstance), Device: aws.String("/dev/sdf"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if att.State != types.VolumeAttachmentStateAttaching || aws.ToString(att.InstanceId) != otherInstance ||
		aws.ToString(att.Device) != "/dev/sdf" || att.AttachTime == nil {
		t.Errorf("AttachVolume = %+v", att)
	}
	v = e.waitFor(t, id, "attached", attached)
	if v.State != types.VolumeStateInUse || aws.ToString(v.Attachments[0].InstanceId) != otherInstance ||
		aws.ToBool(v.Attachments[0].DeleteOnTermination) {
		t.Errorf("attached volume = %+v", v)
	}
	if _, err := e.client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}); err != nil {
		t.Fatal(err)
	}

	det, err := e.client.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if det.State != types.VolumeAttachmentStateDetaching {
		t.Errorf("DetachVolume = %+v", det)
	}
	e.waitFor(t, id, "available", available)

	if _, err := e.client.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	if code, _ := apiError(t, err); code != "InvalidVolume.NotFound" {
		t.Errorf("describe deleted volume: %v", err)
	}
}

func TestDescribeFilters(t *testing.T) {
	t.Parallel()
	e := start(t, fmt.Sprintf(`
ec2:
  volumes:
    - {id: vol-00000000000000001, az: eu-west-1a, tags: {Name: data}}
    - {id: vol-00000000000000002, az: eu-west-1b}
    - {id: vol-00000000000000003, az: eu-west-1a, attached_to: %s, device: /dev/sdg}
    - {id: vol-00000000000000004, az: eu-west-1a, state: creating}
`, otherInstance))
	cases := []struct {
		name    string
		filters []types.Filter
		want    []string
	}{
		{"none", nil, []string{"vol-00000000000000001", "vol-00000000000000002", "vol-00000000000000003", "vol-00000000000000004"}},
		{"instance", []types.Filter{{Name: aws.String("attachment.instance-id"), Values: []string{otherInstance}}}, []string{"vol-00000000000000003"}},
		{"status", []types.Filter{{Name: aws.String("status"), Values: []string{"available", "creating"}}}, []string{"vol-00000000000000001", "vol-00000000000000002", "vol-00000000000000004"}},
		{"az and status", []types.Filter{
			{Name: aws.String("availability-zone"), Values: []string{"eu-west-1a"}},
			{Name: aws.String("status"), Values: []string{"available"}},
		}, []string{"vol-00000000000000001"}},
		{"tag", []types.Filter{{Name: aws.String("tag:Name"), Values: []string{"d*"}}}, []string{"vol-00000000000000001"}},
		{"attachment status", []types.Filter{{Name: aws.String("attachment.status"), Values: []string{"attached"}}}, []string{"vol-00000000000000003"}},
		{"no match", []types.Filter{{Name: aws.String("volume-id"), Values: []string{"vol-9*"}}}, nil},
	}
	for _, tc := range cases {
		out, err := e.client.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{Filters: tc.filters})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, v := range out.Volumes {
			got = append(got, aws.ToString(v.VolumeId))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDescribePaginates(t *testing.T) {
	t.Parallel()
	var vols strings.Builder
	for i := range 7 {
		fmt.Fprintf(&vols, "    - {id: vol-0000000000000000%d}\n", i)
	}
	e := start(t, "ec2:\n  volumes:\n"+vols.String())
	p := ec2.NewDescribeVolumesPaginator(e.client, &ec2.DescribeVolumesInput{MaxResults: aws.Int32(5)})
	var pages, n int
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		n += len(out.Volumes)
	}
	if pages != 2 || n != 7 {
		t.Errorf("paginator: %d pages, %d volumes; want 2 and 7", pages, n)
	}
}

func TestErrorsSDK(t *testing.T) {
	t.Parallel()
	e := start(t, fmt.Sprintf(`
ec2:
  instances:
    - {id: i-0bbbbccccddddeeee, az: eu-west-1c}
  volumes:
    - {id: vol-0000000000000000a, az: eu-west-1a}
    - {id: vol-0000000000000000b, az: eu-west-1b}
    - {id: vol-0000000000000000c, attached_to: %s}
    - {id: vol-0000000000000000d, state: creating}
    - {id: vol-0000000000000000e, kms_key_id: "arn:aws:kms:eu-west-1:111122223333:key/revoked-key", kms_revoked: true}
`, otherInstance))
	ctx := context.Background()
	attach := func(vol, inst, dev string) error {
		_, err := e.client.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst), Device: aws.String(dev)})
		return err
	}
	cases := []struct {
		name    string
		call    func() error
		code    string
		message string
	}{
		{"describe unknown", func() error {
			_, err := e.client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{"vol-0000000000000000f"}})
			return err
		}, "InvalidVolume.NotFound", "The volume 'vol-0000000000000000f' does not exist."},
		{"describe malformed", func() error {
			_, err := e.client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{"vol-xyz"}})
			return err
		}, "InvalidVolumeID.Malformed", `Invalid id: "vol-xyz" (expecting "vol-...")`},
		{"describe bad filter", func() error {
			_, err := e.client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("colour"), Values: []string{"red"}}}})
			return err
		}, "InvalidParameterValue", "The filter 'colour' is invalid"},
		{"attach unknown", func() error { return attach("vol-0000000000000000f", testID.InstanceID, "/dev/xvdf") },
			"InvalidVolume.NotFound", "The volume 'vol-0000000000000000f' does not exist."},
		{"attach malformed", func() error { return attach("volume-1", testID.InstanceID, "/dev/xvdf") },
			"InvalidVolumeID.Malformed", `Invalid id: "volume-1" (expecting "vol-...")`},
		{"attach malformed instance", func() error { return attach("vol-0000000000000000a", "i-zz", "/dev/xvdf") },
			"InvalidInstanceID.Malformed", `Invalid id: "i-zz"`},
		{"attach unknown instance", func() error { return attach("vol-0000000000000000a", "i-0ffffffffffffffff", "/dev/xvdf") },
			"InvalidInstanceID.NotFound", "The instance ID 'i-0ffffffffffffffff' does not exist"},
		{"attach missing volume id", func() error { return attach("", testID.InstanceID, "/dev/xvdf") },
			"MissingParameter", "The request must contain the parameter VolumeId"},
		{"attach bad device", func() error { return attach("vol-0000000000000000a", testID.InstanceID, "xvdf") },
			"InvalidParameterValue", "Value (xvdf) for parameter device is invalid. xvdf is not a valid EBS device name."},
		{"attach elsewhere attached", func() error { return attach("vol-0000000000000000c", testID.InstanceID, "/dev/xvdf") },
			"VolumeInUse", "vol-0000000000000000c is already attached to an instance"},
		{"attach other AZ", func() error { return attach("vol-0000000000000000b", testID.InstanceID, "/dev/xvdf") },
			"InvalidVolume.ZoneMismatch", "The volume 'vol-0000000000000000b' is not in the same availability zone as instance '" + testID.InstanceID + "'"},
		{"attach other instance's AZ", func() error { return attach("vol-0000000000000000a", "i-0bbbbccccddddeeee", "/dev/xvdf") },
			"InvalidVolume.ZoneMismatch", "The volume 'vol-0000000000000000a' is not in the same availability zone as instance 'i-0bbbbccccddddeeee'"},
		{"attach creating", func() error { return attach("vol-0000000000000000d", testID.InstanceID, "/dev/xvdf") },
			"IncorrectState", "Volume 'vol-0000000000000000d' is in the 'creating' state."},
		{"attach device in use", func() error { return attach("vol-0000000000000000a", otherInstance, "/dev/xvdf") },
			"InvalidParameterValue", "Invalid value '/dev/xvdf' for unixDevice. Attachment point /dev/xvdf is already in use"},
		{"attach revoked key", func() error { return attach("vol-0000000000000000e", testID.InstanceID, "/dev/xvdg") },
			"VolumeInUse", "Client.CustomerKeyHasBeenRevoked: Volume vol-0000000000000000e is encrypted with KMS key arn:aws:kms:eu-west-1:111122223333:key/revoked-key, which is not accessible."},
		{"attach dry run", func() error {
			_, err := e.client.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String("vol-0000000000000000a"), InstanceId: aws.String(testID.InstanceID), Device: aws.String("/dev/xvdh"), DryRun: aws.Bool(true)})
			return err
		}, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."},
		{"detach available", func() error {
			_, err := e.client.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String("vol-0000000000000000a")})
			return err
		}, "IncorrectState", "Volume 'vol-0000000000000000a' is in the 'available' state."},
		{"detach wrong instance", func() error {
			_, err := e.client.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String("vol-0000000000000000c"), InstanceId: aws.String(testID.InstanceID)})
			return err
		}, "InvalidAttachment.NotFound", "Attachment point /dev/xvdf for volume vol-0000000000000000c on instance " + testID.InstanceID + " not found"},
		{"delete in use", func() error {
			_, err := e.client.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String("vol-0000000000000000c")})
			return err
		}, "VolumeInUse", "Volume vol-0000000000000000c is currently attached to " + otherInstance},
		{"delete unknown", func() error {
			_, err := e.client.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String("vol-0000000000000000f")})
			return err
		}, "InvalidVolume.NotFound", "The volume 'vol-0000000000000000f' does not exist."},
		{"create without size", func() error {
			_, err := e.client.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("eu-west-1a")})
			return err
		}, "MissingParameter", "The request must contain the parameter size/snapshot"},
		{"create in another region's AZ", func() error {
			_, err := e.client.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)})
			return err
		}, "InvalidParameterValue", "Invalid availability zone: [us-east-1a]"},
		{"create too large", func() error {
			_, err := e.client.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("eu-west-1a"), Size: aws.Int32(20000), VolumeType: types.VolumeTypeGp3})
			return err
		}, "InvalidParameterValue", "Volume of 20000GiB is outside the range 1-16384GiB for volume type gp3."},
		{"create key without encryption", func() error {
			_, err := e.client.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("eu-west-1a"), Size: aws.Int32(1), KmsKeyId: aws.String("k")})
			return err
		}, "InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set."},
	}
	for _, tc := range cases {
		err := tc.call()
		if err == nil {
			t.Errorf("%s: no error, want %s", tc.name, tc.code)
			continue
		}
		code, msg := apiError(t, err)
		if code != tc.code || msg != tc.message {
			t.Errorf("%s:\n got %s: %s\nwant %s: %s", tc.name, code, msg, tc.code, tc.message)
		}
	}
	// Nothing above may have changed a volume.
	if v := e.describe(t, "vol-0000000000000000a"); !available(v) {
		t.Errorf("vol-...a after failed calls: %+v", v)
	}
}

// post sends a hand-made EC2 Query request, SigV4-scoped so awssim routes
// it, and returns the status and body.
func post(t *testing.T, url string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	cases := []struct {
		name string
		form url.Values
		code string
	}{
		{"unknown action", url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}}, "<Code>InvalidAction</Code>"},
		{"no action", url.Values{"Version": {"2016-11-15"}}, "<Code>MissingAction</Code>"},
		{"attach without volume", url.Values{"Action": {"AttachVolume"}, "InstanceId": {testID.InstanceID}, "Device": {"/dev/xvdf"}}, "<Code>MissingParameter</Code>"},
		{"attach without instance", url.Values{"Action": {"AttachVolume"}, "VolumeId": {"vol-00000000000000001"}, "Device": {"/dev/xvdf"}}, "<Code>MissingParameter</Code>"},
		{"detach malformed", url.Values{"Action": {"DetachVolume"}, "VolumeId": {"vol-../../etc"}}, "<Code>InvalidVolumeID.Malformed</Code>"},
		{"delete without volume", url.Values{"Action": {"DeleteVolume"}}, "<Code>MissingParameter</Code>"},
		{"create bad size", url.Values{"Action": {"CreateVolume"}, "Size": {"ten"}, "AvailabilityZone": {"eu-west-1a"}}, "<Code>InvalidParameterValue</Code>"},
		{"create bad bool", url.Values{"Action": {"CreateVolume"}, "Size": {"1"}, "AvailabilityZone": {"eu-west-1a"}, "Encrypted": {"yes"}}, "<Code>InvalidParameterValue</Code>"},
		{"describe bad max", url.Values{"Action": {"DescribeVolumes"}, "MaxResults": {"1"}}, "<Code>InvalidParameterValue</Code>"},
	}
	for _, tc := range cases {
		status, body := post(t, e.url, tc.form)
		if status != http.StatusBadRequest || !strings.Contains(body, tc.code) || !strings.Contains(body, "<Response><Errors><Error>") {
			t.Errorf("%s: %d %s", tc.name, status, body)
		}
	}
}

func TestFaultSeenBySDK(t *testing.T) {
	t.Parallel()
	e := start(t, otherExists+`
faults:
  ec2.AttachVolume: {count: 2, code: RequestLimitExceeded, status: 503}
`)
	id := e.createVolume(t, "eu-west-1a")
	noRetry := newClient(e.url, 1)
	in := &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(otherInstance), Device: aws.String("/dev/xvdf")}
	_, err := noRetry.AttachVolume(context.Background(), in)
	if code, _ := apiError(t, err); code != "RequestLimitExceeded" {
		t.Fatalf("first AttachVolume: %v", err)
	}
	// The standard retryer rides out the second failure.
	if _, err := e.client.AttachVolume(context.Background(), in); err != nil {
		t.Fatalf("AttachVolume with retries: %v", err)
	}
	var failed int
	for _, c := range e.sim.Calls() {
		if c.Operation == "AttachVolume" && c.Code == "RequestLimitExceeded" && c.Status == 503 {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("call log has %d injected failures, want 2: %+v", failed, e.sim.Calls())
	}
}

func TestReleaseAfter(t *testing.T) {
	t.Parallel()
	e := start(t, fmt.Sprintf(`
ec2:
  attach_delay: 300ms
  volumes:
    - {id: vol-0123456789abcdef1, attached_to: %s, release_after: 1s}
`, otherInstance))
	const id = "vol-0123456789abcdef1"
	if v := e.describe(t, id); !attached(v) || aws.ToString(v.Attachments[0].InstanceId) != otherInstance {
		t.Fatalf("seeded volume: %+v", v)
	}
	in := &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(testID.InstanceID), Device: aws.String("/dev/xvdg")}
	_, err := e.client.AttachVolume(context.Background(), in)
	if code, _ := apiError(t, err); code != "VolumeInUse" {
		t.Fatalf("attach while held elsewhere: %v", err)
	}
	var sawDetaching bool
	e.waitFor(t, id, "released", func(v types.Volume) bool {
		for _, a := range v.Attachments {
			sawDetaching = sawDetaching || a.State == types.VolumeAttachmentStateDetaching
		}
		return available(v)
	})
	if !sawDetaching {
		t.Error("the release never showed the attachment detaching")
	}
	if _, err := e.client.AttachVolume(context.Background(), in); err != nil {
		t.Fatalf("attach after release: %v", err)
	}
	e.waitFor(t, id, "attached", attached)
}

func TestSeedRejects(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	cases := map[string]string{
		"unknown key":        "ec2:\n  volumes:\n    - {id: vol-00000000000000001, colour: red}\n",
		"malformed id":       "ec2:\n  volumes:\n    - {id: vol-1}\n",
		"malformed instance": "ec2:\n  volumes:\n    - {id: vol-00000000000000001, attached_to: i-other}\n",
		"bad link":           "ec2:\n  volumes:\n    - {id: vol-00000000000000001, links: [uuid]}\n",
		"bad state":          "ec2:\n  volumes:\n    - {id: vol-00000000000000001, state: lost}\n",
		"release unattached": "ec2:\n  volumes:\n    - {id: vol-00000000000000001, release_after: 1s}\n",
		"bad delay":          "ec2:\n  attach_delay: soon\n",
		"bad az":             "ec2:\n  volumes:\n    - {id: vol-00000000000000001, az: us-east-1a}\n",
	}
	for name, doc := range cases {
		if err := e.sim.ApplyScenario([]byte(doc)); err == nil {
			t.Errorf("%s: scenario accepted", name)
		}
	}
	out, err := e.client.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{})
	if err != nil || len(out.Volumes) != 0 {
		t.Errorf("rejected scenarios left volumes: %v, %v", out, err)
	}
}

func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for range 5 {
				out, err := e.client.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("eu-west-1a"), Size: aws.Int32(1)})
				if err != nil {
					errs <- err
					return
				}
				if _, err := e.client.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}); err != nil {
					errs <- err
				}
				if _, err := e.client.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: out.VolumeId}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := ec2sim.New(testID, "", "/"); err == nil {
		t.Error("New accepted an empty data directory")
	}
	if _, err := ec2sim.New(simapi.Identity{Region: "eu-west-1", AZ: "eu-west-1a"}, t.TempDir(), "/"); err == nil {
		t.Error("New accepted an identity without instance id")
	}
}

// TestPackageDocScenario keeps the package comment's example working.
func TestPackageDocScenario(t *testing.T) {
	t.Parallel()
	e := start(t, `
ec2:
  attach_delay: 300ms
  create_delay: 0s
  instances:
    - {id: i-0bbbbccccddddeeee, az: eu-west-1b}
  volumes:
    - id: vol-0123456789abcdef0
      size_gib: 1
      az: eu-west-1a
      type: gp3
      encrypted: true
      kms_key_id: arn:aws:kms:eu-west-1:111122223333:key/1234
      kms_revoked: true
      attached_to: i-0aaaabbbbccccdddd
      device: /dev/xvdf
      release_after: 10s
      links: [by-id, name]
      tags: {Name: monitoring-data}
    - id: vol-0123456789abcdef1
      state: error
`)
	out, err := e.client.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Volumes) != 2 || out.Volumes[0].State != types.VolumeStateInUse || out.Volumes[1].State != types.VolumeStateError {
		t.Errorf("volumes = %+v", out.Volumes)
	}
}

// TestAttachKnownInstances attaches only to instances EC2 would know: the
// simulated one, one the scenario lists, or one holding a seeded volume;
// they stay known across a restart.
func TestAttachKnownInstances(t *testing.T) {
	t.Parallel()
	const (
		listed = "i-0bbbbccccddddeeee"
		holder = "i-0ccccddddeeeeffff"
	)
	e := start(t, fmt.Sprintf(`
ec2:
  instances:
    - {id: %s, az: eu-west-1a}
  volumes:
    - {id: vol-00000000000000001}
    - {id: vol-00000000000000002}
    - {id: vol-00000000000000003}
    - {id: vol-00000000000000004}
    - {id: vol-00000000000000005}
    - {id: vol-00000000000000006}
    - {id: vol-0000000000000000a, attached_to: %s, release_after: 50ms}
`, listed, holder))
	tests := []struct {
		volume, instance string
		restart          bool
		wantCode         string
	}{
		{volume: "vol-00000000000000001", instance: testID.InstanceID},
		{volume: "vol-00000000000000002", instance: listed},
		{volume: "vol-00000000000000003", instance: holder},
		{volume: "vol-00000000000000004", instance: "i-0ffffffffffffffff", wantCode: "InvalidInstanceID.NotFound"},
		{volume: "vol-00000000000000005", instance: holder, restart: true},
		{volume: "vol-00000000000000006", instance: "i-0ffffffffffffffff", restart: true, wantCode: "InvalidInstanceID.NotFound"},
	}
	// The holder lets go of its volume; it still exists afterwards.
	e.waitFor(t, "vol-0000000000000000a", "released", available)
	restarted := false
	for i, tt := range tests {
		if tt.restart && !restarted {
			if err := e.close(); err != nil {
				t.Fatal(err)
			}
			e.open(t)
			restarted = true
		}
		_, err := e.client.AttachVolume(context.Background(), &ec2.AttachVolumeInput{
			VolumeId: aws.String(tt.volume), InstanceId: aws.String(tt.instance), Device: aws.String(fmt.Sprintf("/dev/xvd%c", 'f'+i)),
		})
		if tt.wantCode == "" {
			if err != nil {
				t.Errorf("attach %s to %s (restart %v): %v", tt.volume, tt.instance, tt.restart, err)
			}
			continue
		}
		if code, msg := apiError(t, err); code != tt.wantCode || msg != "The instance ID '"+tt.instance+"' does not exist" {
			t.Errorf("attach %s to %s (restart %v): %s %q, want %s", tt.volume, tt.instance, tt.restart, code, msg, tt.wantCode)
		}
	}
}
