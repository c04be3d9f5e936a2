package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

func apiError(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }

// fakeEC2 answers DescribeVolumes with vol and AttachVolume with attach.
type fakeEC2 struct {
	vol      types.Volume
	describe error
	attach   error
	attached bool // AttachVolume was called without DryRun
}

func (f *fakeEC2) DescribeVolumes(_ context.Context, in *ec2.DescribeVolumesInput, _ ...func(*ec2.Options)) (*ec2.DescribeVolumesOutput, error) {
	if f.describe != nil {
		return nil, f.describe
	}
	if aws.ToBool(in.DryRun) {
		return nil, apiError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}
	return &ec2.DescribeVolumesOutput{Volumes: []types.Volume{f.vol}}, nil
}

func (f *fakeEC2) AttachVolume(_ context.Context, in *ec2.AttachVolumeInput, _ ...func(*ec2.Options)) (*ec2.AttachVolumeOutput, error) {
	if !aws.ToBool(in.DryRun) {
		f.attached = true
	}
	if f.attach != nil {
		return nil, f.attach
	}
	return nil, apiError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
}

func TestCredentials(t *testing.T) {
	static := credentials.NewStaticCredentialsProvider("AKID", "secret", "")
	region := Region{Name: "eu-west-1", From: "from instance metadata", Instance: "eu-west-1"}
	tests := []struct {
		name     string
		creds    aws.CredentialsProvider
		describe error
		region   Region
		status   Status
		usable   bool
		want     string
	}{
		{"accepted", static, nil, region, OK, true, "region eu-west-1 (from instance metadata), credentials from StaticCredentials accepted"},
		{"no provider", nil, nil, region, Fail, false, "no AWS credentials provider: the instance needs an instance profile"},
		{"rejected", static, apiError("AuthFailure", "AWS was not able to validate the provided access credentials"), region, Fail, false,
			"are rejected by EC2"},
		{"role lacks the permission", static, apiError("UnauthorizedOperation", "no"), region, Fail, true,
			"the role may not call ec2:DescribeVolumes"},
		{"unreachable", static, errors.New("dial tcp 10.0.0.1:443: connect: connection refused"), region, Fail, false,
			"EC2 in eu-west-1 cannot be reached"},
		{"another region", static, nil, Region{Name: "us-east-1", From: "set by region or AWS_REGION", Instance: "eu-west-1"}, Warn, true,
			"but the instance is in eu-west-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, usable := Credentials(context.Background(), aws.Config{Credentials: tt.creds}, &fakeEC2{describe: tt.describe}, tt.region, "i-0123456789abcdef0")
			if c.Name != "aws" || c.Status != tt.status || usable != tt.usable || !strings.Contains(c.Detail, tt.want) {
				t.Fatalf("%+v usable %t\nwant status %d usable %t with %q", c, usable, tt.status, tt.usable, tt.want)
			}
		})
	}
}

func TestKMS(t *testing.T) {
	const (
		volID = "vol-0a1b2c3d4e5f60718"
		me    = "i-0123456789abcdef0"
		key   = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	)
	encrypted := types.Volume{VolumeId: aws.String(volID), Encrypted: aws.Bool(true), KmsKeyId: aws.String(key), State: types.VolumeStateAvailable}
	attached := func(to string) types.Volume {
		v := encrypted
		v.State = types.VolumeStateInUse
		v.Attachments = []types.VolumeAttachment{{InstanceId: aws.String(to), State: types.VolumeAttachmentStateAttached}}
		return v
	}
	revoked := apiError("VolumeInUse", "Client.CustomerKeyHasBeenRevoked: Volume "+volID+" is encrypted with KMS key "+key+", which is not accessible.")
	tests := []struct {
		name    string
		vol     types.Volume
		attach  error
		lastErr string
		status  Status
		want    []string
	}{
		{"not encrypted", types.Volume{VolumeId: aws.String(volID), Encrypted: aws.Bool(false)}, nil, "", OK, []string{"not encrypted"}},
		{"attached here", attached(me), nil, "", OK, []string{key + ": usable, " + volID + " is attached to this instance"}},
		{"dry run accepted", encrypted, nil, "", OK, []string{"EC2 accepts an attach", "kms:CreateGrant"}},
		{"revoked", encrypted, revoked, "", Fail, []string{"which this instance cannot use (Client.CustomerKeyHasBeenRevoked",
			"kms:CreateGrant, kms:Decrypt, kms:DescribeKey, kms:GenerateDataKeyWithoutPlaintext, kms:ReEncryptFrom, kms:ReEncryptTo", "seed section 4"}},
		{"the last run failed on it", encrypted, nil, "volume: " + volID + " cannot be attached because it is encrypted with KMS key " + key + ", which this instance cannot use", Fail,
			[]string{"the last run's attach failed on it"}},
		{"the last run failed on another volume", encrypted, nil, "volume: vol-0fffffffffffffff0 ... KMS key ... which this instance cannot use", OK,
			[]string{"EC2 accepts an attach"}},
		{"held by another instance", attached("i-0fedcba9876543210"), nil, "", Warn, []string{"not checked", "i-0fedcba9876543210"}},
		{"not authorised", encrypted, apiError("UnauthorizedOperation", "no"), "", Fail, []string{"may not attach", "ec2:AttachVolume"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeEC2{vol: tt.vol, attach: tt.attach}
			c := KMS(context.Background(), api, Volume{ID: volID, InstanceID: me, Device: "/dev/xvdf", LastError: tt.lastErr})
			if c.Name != "ebs kms" || c.Status != tt.status {
				t.Fatalf("%+v, want status %d", c, tt.status)
			}
			for _, w := range tt.want {
				if !strings.Contains(c.Detail, w) {
					t.Errorf("%q lacks %q", c.Detail, w)
				}
			}
			if api.attached {
				t.Error("AttachVolume was called without DryRun")
			}
		})
	}
}

type fakeS3 struct {
	keys       []string
	list, head error
}

func (f fakeS3) ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	if f.list != nil {
		return nil, f.list
	}
	out := &s3.ListObjectsV2Output{}
	for _, k := range f.keys {
		out.Contents = append(out.Contents, s3types.Object{Key: aws.String(k)})
	}
	return out, nil
}

func (f fakeS3) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return &s3.HeadObjectOutput{}, f.head
}

func TestBundle(t *testing.T) {
	tests := []struct {
		name   string
		api    fakeS3
		status Status
		want   string
	}{
		{"readable", fakeS3{keys: []string{"scripts/docker-compose.yml"}}, OK, "s3://b/scripts/ lists and its objects read"},
		{"no bucket", fakeS3{list: apiError("NoSuchBucket", "The specified bucket does not exist")}, Fail, "cannot list s3://b/scripts/: the bucket does not exist"},
		{"empty", fakeS3{}, Fail, "s3://b/scripts/ holds no objects: upload the stack bundle there"},
		{"list denied", fakeS3{list: apiError("AccessDenied", "Access Denied")}, Fail, "the instance role needs s3:ListBucket on arn:aws:s3:::b"},
		{"get denied", fakeS3{keys: []string{"scripts/a"}, head: apiError("Forbidden", "Forbidden")}, Fail,
			"cannot read s3://b/scripts/a (Forbidden): the instance role needs s3:GetObject on arn:aws:s3:::b/scripts/*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Bundle(context.Background(), tt.api, "b", "scripts")
			if c.Name != "s3 bundle" || c.Status != tt.status || !strings.Contains(c.Detail, tt.want) {
				t.Fatalf("%+v\nwant status %d with %q", c, tt.status, tt.want)
			}
		})
	}
}
