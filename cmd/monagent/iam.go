package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/spf13/cobra"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/iampolicy"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/retry"
)

// keyNone is --kms-key-id's word for a volume that needs no key grant.
const keyNone = "none"

// iamFlags name facts of the policy, so that they are not looked up.
type iamFlags struct {
	offline         bool
	region          string
	account         string
	volumeID        string
	bucket          string
	kmsKey          string
	instanceProfile string
}

func iamPolicyCmd(g *globals, stdout, stderr io.Writer) *cobra.Command {
	f := &iamFlags{}
	c := &cobra.Command{
		Use:   "iam-policy",
		Short: "Print the least-privilege IAM policy of the instance role for this configuration (JSON)",
		Long: `Print the IAM policy document the instance role needs for this configuration:
the exact actions on the exact SSM parameters, volume, stack, bucket prefix and
KMS key a run touches. The document goes to stdout; notes on what is wider than
exact, and why, go to stderr.

On the instance it reads instance metadata (region, account, instance profile),
the SSM parameters naming the volume and the bucket, and the volume (its KMS key):
read-only calls. --offline makes no AWS call at all; then the facts come from
the flags and the configuration, and what is still unknown becomes a wildcard
scoped to the account, each named in a note. See docs/iam.md.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return iamPolicy(cmd.Context(), g, f, stdout, stderr)
		},
	}
	fl := c.Flags()
	fl.BoolVar(&f.offline, "offline", false, "make no AWS call, instance metadata included: facts from the flags and the configuration only")
	fl.StringVar(&f.region, "region", "", "region of the ARNs (offline: required unless the configuration sets region)")
	fl.StringVar(&f.account, "account", "", "12-digit account id of the ARNs (offline: required)")
	fl.StringVar(&f.volumeID, "volume-id", "", "the data volume, instead of reading volume.id_parameter")
	fl.StringVar(&f.bucket, "bucket", "", "the bundle's bucket, instead of reading bundle.bucket_parameter")
	fl.StringVar(&f.kmsKey, "kms-key-id", "", `the data volume's KMS key ARN or id, instead of asking EC2; "none" for a volume that needs no key grant`)
	fl.StringVar(&f.instanceProfile, "instance-profile", "", "the role's instance profile ARN, instead of reading instance metadata")
	return c
}

// iamPolicy gathers the facts, builds the document and prints it.
func iamPolicy(ctx context.Context, g *globals, f *iamFlags, stdout, stderr io.Writer) error {
	if err := f.validate(); err != nil {
		return usageError(err)
	}
	gather := f.online
	if f.offline {
		gather = f.offlineFacts
	}
	cfg, facts, notes, err := gather(ctx, g)
	if err != nil {
		return err
	}
	doc, more, err := iampolicy.Build(cfg, facts)
	if err != nil {
		// Every fact was checked on its way in: what is left is a value
		// of the configuration, such as a stack ARN.
		return usageError(fmt.Errorf("iam-policy: %w", err))
	}
	for _, n := range append(notes, more...) {
		fmt.Fprintln(stderr, "monagent iam-policy: note:", n)
	}
	b, err := doc.JSON()
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}

// validate checks each flag on its own, before anything is read.
func (f *iamFlags) validate() error {
	checks := []struct {
		flag, value string
		check       func(string) error
	}{
		{"--region", f.region, iampolicy.CheckRegion},
		{"--account", f.account, iampolicy.CheckAccount},
		{"--volume-id", f.volumeID, iampolicy.CheckVolumeID},
		{"--bucket", f.bucket, iampolicy.CheckBucket},
		{"--instance-profile", f.instanceProfile, iampolicy.CheckInstanceProfile},
	}
	for _, c := range checks {
		if c.value == "" {
			continue
		}
		if err := c.check(c.value); err != nil {
			return fmt.Errorf("%s: %w", c.flag, err)
		}
	}
	// Its form only: a key id becomes an ARN once the region and the
	// account are known.
	if f.kmsKey != "" && f.kmsKey != keyNone {
		if _, err := iampolicy.KeyARN("aws", "us-east-1", "000000000000", f.kmsKey); err != nil {
			return fmt.Errorf("--kms-key-id: %w; or %q for a volume that needs no key grant", err, keyNone)
		}
	}
	return nil
}

// agree refuses a flag that contradicts the configuration: the policy is
// for what the agent will touch, and the agent follows the configuration.
func (f *iamFlags) agree(cfg *config.Config) error {
	for _, c := range []struct{ flag, value, key, configured string }{
		{"--volume-id", f.volumeID, "volume.id", cfg.Volume.ID},
		{"--bucket", f.bucket, "bundle.bucket", cfg.Bundle.Bucket},
	} {
		if c.value != "" && c.configured != "" && c.value != c.configured {
			return usageError(fmt.Errorf("%s %q: the configuration sets %s to %q, which the agent uses; drop %s, or change %s",
				c.flag, c.value, c.key, c.configured, c.flag, c.key))
		}
	}
	return nil
}

// key is --kms-key-id as a fact; the zero Key when it is not given.
func (f *iamFlags) key(region, account string) (iampolicy.Key, error) {
	switch f.kmsKey {
	case "":
		return iampolicy.Key{}, nil
	case keyNone:
		return iampolicy.Key{None: true}, nil
	}
	arn, err := iampolicy.KeyARN(iampolicy.Partition(region), region, account, f.kmsKey)
	if err != nil {
		return iampolicy.Key{}, usageError(fmt.Errorf("--kms-key-id: %w; or %q for a volume that needs no key grant", err, keyNone))
	}
	return iampolicy.Key{ARN: arn}, nil
}

// offlineFacts makes no AWS call: what the flags and the configuration do
// not say stays unknown, and Build makes it a wildcard with a note.
func (f *iamFlags) offlineFacts(_ context.Context, g *globals) (*config.Config, iampolicy.Facts, []string, error) {
	var none iampolicy.Facts
	loaded, err := config.Load(g.configPath)
	if err != nil {
		return nil, none, nil, err
	}
	region := f.region
	if region == "" {
		region = loaded.Region
	}
	if region == "" {
		return nil, none, nil, usageError(fmt.Errorf("--offline needs the region: pass --region (such as eu-west-1), or set region in %s", g.configPath))
	}
	if f.account == "" {
		return nil, none, nil, usageError(errors.New("--offline needs the account: pass --account with its 12 digits " +
			"(aws sts get-caller-identity --query Account)"))
	}
	// The instance is not known: a placeholder in a parameter name matches any.
	cfg, err := loaded.Expand(config.Vars{InstanceID: "*", Region: region, AZ: "*", PrivateIP: "*"})
	if err != nil {
		return nil, none, nil, err
	}
	if err := f.agree(cfg); err != nil {
		return nil, none, nil, err
	}
	key, err := f.key(region, f.account)
	if err != nil {
		return nil, none, nil, err
	}
	facts := iampolicy.Facts{
		Region:          region,
		Account:         f.account,
		VolumeID:        f.volumeID,
		Bucket:          f.bucket,
		InstanceProfile: f.instanceProfile,
		Key:             key,
	}
	return cfg, facts, nil, nil
}

// online reads on the instance what the flags do not say: instance
// metadata, the volume id and bucket parameters, and the volume.
func (f *iamFlags) online(ctx context.Context, g *globals) (*config.Config, iampolicy.Facts, []string, error) {
	var none iampolicy.Facts
	a, err := newApp(ctx, g, io.Discard)
	if err != nil {
		return nil, none, nil, err
	}
	h, err := a.discover(ctx)
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		return nil, none, nil, err
	case err != nil:
		return nil, none, nil, fmt.Errorf("%w (away from the instance, use iam-policy --offline with --region and --account)", err)
	}
	if err := f.agree(h.Config); err != nil {
		return nil, none, nil, err
	}
	facts := iampolicy.Facts{Region: h.AWS.Region, InstanceProfile: f.instanceProfile}
	if f.region != "" && f.region != facts.Region {
		return nil, none, nil, usageError(fmt.Errorf("--region %q: this instance's agent calls AWS in %s (configuration, AWS_REGION "+
			"or instance metadata); drop --region, or use --offline for another region", f.region, facts.Region))
	}
	var notes []string
	client := imds.NewClient(a.aws)
	if facts.Account, err = f.onlineAccount(ctx, client); err != nil {
		return nil, none, nil, err
	}
	if facts.InstanceProfile == "" {
		var note string
		facts.InstanceProfile, note = instanceProfile(ctx, client)
		if note != "" {
			notes = append(notes, note)
		}
	}
	if facts.VolumeID, facts.Bucket, err = f.fromParameters(ctx, h); err != nil {
		return nil, none, nil, err
	}
	if facts.Key, err = f.key(facts.Region, facts.Account); err != nil {
		return nil, none, nil, err
	}
	if f.kmsKey == "" {
		var note string
		if facts.Key, note, err = volumeKey(ctx, h.EC2, facts.VolumeID); err != nil {
			return nil, none, nil, err
		}
		notes = append(notes, note)
	}
	return h.Config, facts, notes, nil
}

// onlineAccount is the account of the instance identity document; --account
// stands in when the document cannot be read, and must agree when it can.
func (f *iamFlags) onlineAccount(ctx context.Context, c *awsimds.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, imds.Timeout)
	defer cancel()
	doc, err := c.GetInstanceIdentityDocument(ctx, &awsimds.GetInstanceIdentityDocumentInput{})
	switch {
	case err != nil && f.account != "":
		return f.account, nil
	case err != nil:
		return "", fmt.Errorf("instance metadata: read the account from dynamic/instance-identity/document: %w; pass --account", err)
	case f.account != "" && f.account != doc.AccountID:
		return "", usageError(fmt.Errorf("--account %q: this instance is in account %s (instance identity document); "+
			"drop --account, or use --offline for another account", f.account, doc.AccountID))
	}
	return doc.AccountID, nil
}

// instanceProfile is the ARN of the instance's profile, or "" and why not.
func instanceProfile(ctx context.Context, c *awsimds.Client) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, imds.Timeout)
	defer cancel()
	info, err := c.GetIAMInfo(ctx, &awsimds.GetIAMInfoInput{})
	var re *smithyhttp.ResponseError
	switch {
	case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound:
		return "", "instance metadata has no meta-data/iam/info: this instance was launched without an instance profile"
	case err != nil:
		return "", fmt.Sprintf("the instance profile was not read from instance metadata (meta-data/iam/info): %v", err)
	case iampolicy.CheckInstanceProfile(info.InstanceProfileArn) != nil:
		return "", fmt.Sprintf("instance metadata names instance profile %q, which is not an instance profile ARN", info.InstanceProfileArn)
	}
	return info.InstanceProfileArn, ""
}

// fromParameters is the volume id and the bucket: from the flags, the
// configuration, or else the SSM parameters the run reads them from, in one
// call.
func (f *iamFlags) fromParameters(ctx context.Context, h *host.Host) (string, string, error) {
	c := h.Config
	type fact struct {
		value            *string
		key, param, flag string
		check            func(string) error
	}
	volID, bucket := firstOf(f.volumeID, c.Volume.ID), firstOf(f.bucket, c.Bundle.Bucket)
	var todo []fact
	if volID == "" {
		todo = append(todo, fact{&volID, "volume.id", c.Volume.IDParameter, "--volume-id", iampolicy.CheckVolumeID})
	}
	if bucket == "" {
		todo = append(todo, fact{&bucket, "bundle.bucket", c.Bundle.BucketParameter, "--bucket", iampolicy.CheckBucket})
	}
	if len(todo) == 0 {
		return volID, bucket, nil
	}
	var names, flags []string
	for _, t := range todo {
		names, flags = append(names, t.param), append(flags, t.flag)
	}
	found, _, err := h.Params.GetMany(ctx, names)
	if err != nil {
		return "", "", fmt.Errorf("%w (the role running this needs ssm:GetParameters on them; or pass %s)", err, strings.Join(flags, " and "))
	}
	for _, t := range todo {
		p, ok := found[t.param]
		if !ok {
			return "", "", retry.PermanentError(fmt.Errorf("SSM parameter %s (%s_parameter) does not exist; create it, set %s, or pass %s",
				t.param, t.key, t.key, t.flag))
		}
		v := strings.TrimSpace(p.Value)
		if err := t.check(v); err != nil {
			return "", "", retry.PermanentError(fmt.Errorf("SSM parameter %s (%s_parameter): %w; fix its value, set %s, or pass %s",
				t.param, t.key, err, t.key, t.flag))
		}
		*t.value = v
	}
	return volID, bucket, nil
}

// volumeKey asks EC2 for the volume's KMS key. Any key of an encrypted
// volume gets the grant: DescribeVolumes does not say who manages it, and
// the grant is inert on the AWS-managed aws/ebs key (docs/iam.md).
func volumeKey(ctx context.Context, api ec2.DescribeVolumesAPIClient, volID string) (iampolicy.Key, string, error) {
	out, err := api.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volID}})
	if err != nil {
		err = fmt.Errorf("describe volume %s for its KMS key: %w", volID, err)
		if retry.Code(err) == "InvalidVolume.NotFound" {
			return iampolicy.Key{}, "", retry.PermanentError(fmt.Errorf("%w (check volume.id, its parameter or --volume-id, and the region)", err))
		}
		return iampolicy.Key{}, "", fmt.Errorf("%w (the role running this needs ec2:DescribeVolumes; or pass --kms-key-id ARN, or %s)", err, keyNone)
	}
	for _, v := range out.Volumes {
		if aws.ToString(v.VolumeId) != volID {
			continue
		}
		key := aws.ToString(v.KmsKeyId)
		switch {
		case !aws.ToBool(v.Encrypted):
			return iampolicy.Key{None: true}, fmt.Sprintf("volume %s is not encrypted: no KMS permissions", volID), nil
		case key == "":
			return iampolicy.Key{}, fmt.Sprintf("volume %s is encrypted, but EC2 names no KMS key", volID), nil
		}
		return iampolicy.Key{ARN: key}, fmt.Sprintf("volume %s is encrypted with KMS key %s: the six KMS permissions of the "+
			"attach are granted on it. EC2 does not say whether AWS manages that key; if it is the AWS-managed aws/ebs key "+
			"(aws kms describe-key --key-id %s --query KeyMetadata.KeyManager answers AWS) they are not needed, and "+
			"--kms-key-id %s leaves them out", volID, key, key, keyNone), nil
	}
	return iampolicy.Key{}, "", retry.PermanentError(fmt.Errorf("volume %s does not exist (check volume.id, its parameter or --volume-id, and the region)", volID))
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
