// Package iampolicy builds the least-privilege IAM policy document of a
// monagent host's instance role: the actions a run makes, on the exact
// resources it makes them on, from plain facts (the expanded
// configuration, the account and region, the data volume, its KMS key).
// It makes no AWS calls; cmd/monagent gathers the facts.
//
// Decisions, each also told to the operator in a note:
//
//   - ec2:DescribeVolumes has no resource-level permissions: its statement
//     is the only one on "*", and its Sid says why.
//   - ec2:AttachVolume needs the volume and the instance. The instance
//     changes with every replacement the Auto Scaling group makes, and the
//     role is the launch template's, shared by every instance it launches:
//     the current instance's ARN would break the next replacement, so the
//     instance side is instance/* of the account and region, restricted to
//     instances launched with the role's instance profile (ec2:InstanceProfile)
//     when that profile is known. The volume side is a statement of its own,
//     as the volume has no ec2:InstanceProfile and would never match.
//   - A volume encrypted with a KMS key gets the six permissions of seed
//     section 4 on that key, whatever the key: DescribeVolumes names the
//     key but not whether AWS or the customer manages it. Granted on the
//     AWS-managed aws/ebs key they are inert (its key policy delegates
//     nothing to IAM); left out for a customer-managed key they are the
//     production incident of seed section 4. kms:CreateGrant is limited to
//     grants for AWS resources (kms:GrantIsForAWSResource), in a statement
//     of its own since the other five requests never carry that key.
//   - A fact not known (offline, or read from SSM at run time) becomes a
//     wildcard scoped to the account, and a note says which flag names it.
package iampolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/monagent/monagent/internal/config"
)

// Version is the policy language version; policy variables such as ${*}
// need it.
const Version = "2012-10-17"

// KMSPermissions are the six permissions of seed section 4 that the role
// needs on a customer-managed key to attach a volume encrypted with it.
var KMSPermissions = []string{
	"kms:CreateGrant",
	"kms:Decrypt",
	"kms:DescribeKey",
	"kms:GenerateDataKeyWithoutPlaintext",
	"kms:ReEncryptFrom",
	"kms:ReEncryptTo",
}

// Document is an IAM policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement; monagent's statements all allow.
type Statement struct {
	Sid       string    `json:"Sid"`
	Effect    string    `json:"Effect"`
	Action    []string  `json:"Action"`
	Resource  []string  `json:"Resource"`
	Condition Condition `json:"Condition,omitempty"`
}

// Condition maps a condition operator (StringLike, Bool, ArnEquals, ...)
// to its keys and their values.
type Condition map[string]map[string]string

// JSON is the document indented for people, with a final newline.
func (d *Document) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Key is what is known of the data volume's KMS key. The zero value is
// "not known", which grants the permissions on any key of the account
// used through EC2: leaving them out is never the safe guess.
type Key struct {
	// ARN is the key's ARN (key/..., not an alias).
	ARN string
	// None says the volume needs no key permissions: it is not encrypted,
	// or the operator says its key is the AWS-managed aws/ebs.
	None bool
}

// Facts are what the configuration does not say.
type Facts struct {
	// Partition is "aws", "aws-cn", ...; "" is the region's.
	Partition string
	// Region is where the agent's AWS clients go.
	Region string
	// Account is the 12-digit account id of the instance.
	Account string
	// VolumeID is the data volume; "" when not known: any volume of the
	// account.
	VolumeID string
	// InstanceProfile is the ARN of the instance profile of the role;
	// "" when not known: any instance of the account.
	InstanceProfile string
	// Bucket is the bundle's bucket; "" when not known: any bucket of
	// the account.
	Bucket string
	// Key is the data volume's KMS key.
	Key Key
}

var (
	accountRE  = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE   = regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+)+-[0-9]+$`)
	volumeRE   = regexp.MustCompile(`^vol-([0-9a-f]{8}|[0-9a-f]{17})$`)
	bucketRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	keyIDRE    = regexp.MustCompile(`^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	keyARNRE   = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$`)
	profileRE  = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/[A-Za-z0-9+=,.@_/-]+$`)
	stackARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:cloudformation:[a-z0-9-]+:[0-9]{12}:stack/[A-Za-z][A-Za-z0-9-]*/[A-Za-z0-9-]+$`)
)

// Partition is the partition of region: aws-cn for cn-*, aws-us-gov for
// us-gov-*, the ISO partitions for theirs, aws for the rest.
func Partition(region string) string {
	for _, p := range []struct{ prefix, partition string }{
		{"cn-", "aws-cn"},
		{"us-gov-", "aws-us-gov"},
		{"us-isob-", "aws-iso-b"},
		{"us-isof-", "aws-iso-f"},
		{"us-iso-", "aws-iso"},
		{"eu-isoe-", "aws-iso-e"},
		{"eusc-", "aws-eusc"},
	} {
		if strings.HasPrefix(region, p.prefix) {
			return p.partition
		}
	}
	return "aws"
}

// dnsSuffix is the domain of the partition's service endpoints, as
// kms:ViaService names them.
func dnsSuffix(partition string) string {
	switch partition {
	case "aws-cn":
		return "amazonaws.com.cn"
	case "aws-iso":
		return "c2s.ic.gov"
	case "aws-iso-b":
		return "sc2s.sgov.gov"
	case "aws-iso-e":
		return "cloud.adc-e.uk"
	case "aws-iso-f":
		return "csp.hci.ic.gov"
	case "aws-eusc":
		return "amazonaws.eu"
	}
	return "amazonaws.com"
}

// CheckRegion reports whether region is an AWS region name.
func CheckRegion(region string) error {
	if !regionRE.MatchString(region) {
		return fmt.Errorf("%q is not an AWS region; want a region such as eu-west-1", region)
	}
	return nil
}

// CheckAccount reports whether account is an AWS account id.
func CheckAccount(account string) error {
	if !accountRE.MatchString(account) {
		return fmt.Errorf("%q is not an AWS account id; want its 12 digits, such as 123456789012", account)
	}
	return nil
}

// CheckVolumeID reports whether id is an EBS volume id.
func CheckVolumeID(id string) error {
	if !volumeRE.MatchString(id) {
		return fmt.Errorf("%q is not a volume id; want vol- and 8 or 17 lowercase hex digits", id)
	}
	return nil
}

// CheckBucket reports whether name is an S3 bucket name.
func CheckBucket(name string) error {
	if !bucketRE.MatchString(name) {
		return fmt.Errorf("%q is not an S3 bucket name; want the bare name, such as monitoring-production-scripts", name)
	}
	return nil
}

// CheckInstanceProfile reports whether arn is an instance profile ARN.
func CheckInstanceProfile(arn string) error {
	if !profileRE.MatchString(arn) {
		return fmt.Errorf("%q is not an instance profile ARN; want arn:aws:iam::<account>:instance-profile/<name> "+
			"(aws iam list-instance-profiles-for-role --role-name <role> --query 'InstanceProfiles[].Arn')", arn)
	}
	return nil
}

// KeyARN turns a KMS key id or key ARN into the key's ARN. An alias is an
// error: a statement on an alias ARN grants nothing on the key behind it.
func KeyARN(partition, region, account, key string) (string, error) {
	switch {
	case keyARNRE.MatchString(key):
		return key, nil
	case keyIDRE.MatchString(key):
		return fmt.Sprintf("arn:%s:kms:%s:%s:key/%s", partition, region, account, key), nil
	case strings.HasPrefix(key, "alias/") || strings.Contains(key, ":alias/"):
		return "", fmt.Errorf("%q is an alias, and a policy on an alias grants nothing on its key; want the key's ARN: "+
			"aws kms describe-key --key-id %s --query KeyMetadata.Arn", key, key)
	}
	return "", fmt.Errorf("%q is not a KMS key ARN or key id; want arn:aws:kms:<region>:<account>:key/<key id>, "+
		"as aws ec2 describe-volumes --query 'Volumes[].KmsKeyId' shows it", key)
}

// Generated lists the parameters the env step creates when absent.
func Generated(c *config.Config) []string {
	var names []string
	for _, v := range c.Env {
		if v.Parameter != "" && v.Generate != "" {
			names = append(names, v.Parameter)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Endpoints lists the parameters the endpoints step writes.
func Endpoints(c *config.Config) []string {
	names := make([]string, 0, len(c.Endpoints))
	for n := range c.Endpoints {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Build returns the policy for c, an expanded configuration, and f, with
// notes for the operator: what is wider than exact, and why. volume.id and
// bundle.bucket, when set, are the facts. Offline, an instance placeholder
// in a parameter name may be expanded to "*".
func Build(c *config.Config, f Facts) (*Document, []string, error) {
	if c.Local() {
		return nil, nil, errors.New("cloud is none: this host calls no AWS API and needs no policy")
	}
	for _, v := range []struct {
		fact       *string
		key, value string
	}{
		{&f.VolumeID, "volume.id", c.Volume.ID},
		{&f.Bucket, "bundle.bucket", c.Bundle.Bucket},
	} {
		switch {
		case v.value == "":
		case *v.fact == "":
			*v.fact = v.value
		case *v.fact != v.value:
			return nil, nil, fmt.Errorf("%s is %s, but %s was given; the agent uses %s", v.key, v.value, *v.fact, v.value)
		}
	}
	b, err := newBuilder(f)
	if err != nil {
		return nil, nil, err
	}
	b.parameters(c)
	if c.VolumeKind() == config.VolumeEBS {
		b.volume()
	}
	if err := b.stack(c.Stack); err != nil {
		return nil, nil, err
	}
	if c.Bundle.Source == "" {
		b.bundle(c.Bundle.KeyPrefix)
	}
	b.writes(c)
	if err := b.backups(c.Backup.Location); err != nil {
		return nil, nil, err
	}
	return &Document{Version: Version, Statement: b.stmts}, b.notes, nil
}

type builder struct {
	f     Facts
	stmts []Statement
	notes []string
}

func newBuilder(f Facts) (*builder, error) {
	if err := CheckRegion(f.Region); err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	if err := CheckAccount(f.Account); err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}
	if f.Partition == "" {
		f.Partition = Partition(f.Region)
	}
	checks := []struct {
		name, value string
		check       func(string) error
	}{
		{"volume id", f.VolumeID, CheckVolumeID},
		{"bucket", f.Bucket, CheckBucket},
		{"instance profile", f.InstanceProfile, CheckInstanceProfile},
	}
	for _, c := range checks {
		if c.value == "" {
			continue
		}
		if err := c.check(c.value); err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	if f.Key.ARN != "" {
		if f.Key.None {
			return nil, fmt.Errorf("KMS key: both %s and none given; want one of them", f.Key.ARN)
		}
		arn, err := KeyARN(f.Partition, f.Region, f.Account, f.Key.ARN)
		if err != nil {
			return nil, fmt.Errorf("KMS key: %w", err)
		}
		f.Key.ARN = arn
	}
	return &builder{f: f}, nil
}

func (b *builder) add(s Statement) {
	s.Effect = "Allow"
	b.stmts = append(b.stmts, s)
}

func (b *builder) note(format string, args ...any) {
	if n := fmt.Sprintf(format, args...); !slices.Contains(b.notes, n) {
		b.notes = append(b.notes, n)
	}
}

// arn is an ARN of a regional service in the account.
func (b *builder) arn(service, resource string) string {
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", b.f.Partition, service, b.f.Region, b.f.Account, resource)
}

func (b *builder) parameterARNs(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, b.arn("ssm", "parameter/"+strings.TrimPrefix(n, "/")))
		if strings.Contains(n, "*") {
			b.note("SSM parameter %s uses an instance placeholder that is not known offline: it is a wildcard", n)
		}
	}
	return out
}

// parameters: every parameter the run reads, in one batched GetParameters;
// GetParameter reads back a generated secret someone else created first.
func (b *builder) parameters(c *config.Config) {
	names := c.Parameters()
	if len(names) == 0 {
		return
	}
	b.add(Statement{
		Sid:      "ReadConfiguredParameters",
		Action:   []string{"ssm:GetParameter", "ssm:GetParameters"},
		Resource: b.parameterARNs(names),
	})
}

func (b *builder) volume() {
	b.add(Statement{
		Sid:      "DescribeVolumesHasNoResourceLevelPermissions",
		Action:   []string{"ec2:DescribeVolumes"},
		Resource: []string{"*"},
	})
	vol := b.arn("ec2", "volume/"+b.f.VolumeID)
	if b.f.VolumeID == "" {
		vol = b.arn("ec2", "volume/*")
		b.note("the volume id is read from SSM at run time and was not given: AttachVolume is allowed on any volume of "+
			"account %s in %s; pass --volume-id to name it", b.f.Account, b.f.Region)
	}
	b.add(Statement{Sid: "AttachDataVolume", Action: []string{"ec2:AttachVolume"}, Resource: []string{vol}})
	instances := Statement{
		Sid:      "AttachToInstancesOfThisProfile",
		Action:   []string{"ec2:AttachVolume"},
		Resource: []string{b.arn("ec2", "instance/*")},
	}
	if b.f.InstanceProfile != "" {
		instances.Condition = Condition{"ArnEquals": {"ec2:InstanceProfile": b.f.InstanceProfile}}
	} else {
		instances.Sid = "AttachToInstancesOfTheAccount"
		b.note("the instance profile is not known: AttachVolume is allowed on any instance of account %s in %s; "+
			"pass --instance-profile ARN to allow only instances launched with the role's profile", b.f.Account, b.f.Region)
	}
	b.add(instances)
	b.key()
}

// key: the six permissions of seed section 4, CreateGrant only for grants
// to AWS resources (EBS's grant at attach time).
func (b *builder) key() {
	k := b.f.Key
	if k.None {
		return
	}
	use, grant := Statement{Sid: "UseVolumeKmsKey"}, Statement{Sid: "CreateGrantForEbsOnVolumeKmsKey"}
	grant.Condition = Condition{"Bool": {"kms:GrantIsForAWSResource": "true"}}
	if k.ARN != "" {
		use.Resource, grant.Resource = []string{k.ARN}, []string{k.ARN}
	} else {
		// Not known: any key of the account, used through EC2 only.
		anyKey := b.arn("kms", "key/*")
		via := map[string]string{"kms:ViaService": "ec2." + b.f.Region + "." + dnsSuffix(b.f.Partition)}
		use.Sid, grant.Sid = "UseAnyKmsKeyThroughEc2", "CreateGrantForEbsOnAnyKmsKeyThroughEc2"
		use.Resource, grant.Resource = []string{anyKey}, []string{anyKey}
		use.Condition = Condition{"StringEquals": via}
		grant.Condition["StringEquals"] = via
		b.note("the data volume's KMS key is not known: the six KMS permissions are granted on any key of account %s, "+
			"through EC2 in %s only; pass --kms-key-id ARN to name the key, or --kms-key-id none for a volume that is not "+
			"encrypted or uses the AWS-managed aws/ebs key", b.f.Account, b.f.Region)
	}
	use.Action = slices.DeleteFunc(slices.Clone(KMSPermissions), func(a string) bool { return a == "kms:CreateGrant" })
	grant.Action = []string{"kms:CreateGrant"}
	b.add(use)
	b.add(grant)
}

// stack: SignalResource on the stack; by name, any stack id of that name.
func (b *builder) stack(s config.Stack) error {
	if !s.Signals() {
		return nil
	}
	res := b.arn("cloudformation", "stack/"+s.Name+"/*")
	if strings.HasPrefix(s.Name, "arn:") {
		if !stackARNRE.MatchString(s.Name) {
			return fmt.Errorf("stack.name: %q is not a CloudFormation stack ARN; want arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>, or the stack's name", s.Name)
		}
		res = s.Name
	}
	b.add(Statement{Sid: "SignalStack", Action: []string{"cloudformation:SignalResource"}, Resource: []string{res}})
	return nil
}

// bundle: list the prefix, read the objects under it.
func (b *builder) bundle(prefix string) {
	bucket := b.f.Bucket
	var owner map[string]string
	if bucket == "" {
		bucket = "*"
		owner = map[string]string{"aws:ResourceAccount": b.f.Account}
		b.note("the bundle's bucket is read from SSM at run time and was not given: s3:ListBucket and s3:GetObject "+
			"are allowed on any bucket of account %s under the key prefix; pass --bucket to name it", b.f.Account)
	}
	bucketARN := fmt.Sprintf("arn:%s:s3:::%s", b.f.Partition, bucket)
	list := Statement{Sid: "ListBundlePrefix", Action: []string{"s3:ListBucket"}, Resource: []string{bucketARN}}
	get := Statement{Sid: "GetBundleObjects", Action: []string{"s3:GetObject"}, Resource: []string{bucketARN + "/" + escape(prefix) + "*"}}
	if prefix != "" {
		// ListObjectsV2 always sends the prefix; without one the key is
		// absent and StringLike would never match.
		list.Condition = Condition{"StringLike": {"s3:prefix": escape(prefix) + "*"}}
	}
	if owner != nil {
		if list.Condition == nil {
			list.Condition = Condition{}
		}
		list.Condition["StringEquals"] = owner
		get.Condition = Condition{"StringEquals": owner}
	}
	b.add(list)
	b.add(get)
}

// backups: the archives under backup.location's prefix, when it is in
// S3: listed, read, written and pruned (backup.keep).
func (b *builder) backups(location string) error {
	rest, ok := strings.CutPrefix(location, "s3://")
	if !ok {
		return nil
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if err := CheckBucket(bucket); err != nil {
		return fmt.Errorf("backup.location: %w", err)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	bucketARN := fmt.Sprintf("arn:%s:s3:::%s", b.f.Partition, bucket)
	list := Statement{Sid: "ListBackups", Action: []string{"s3:ListBucket"}, Resource: []string{bucketARN}}
	if prefix != "" {
		list.Condition = Condition{"StringLike": {"s3:prefix": escape(prefix) + "*"}}
	}
	b.add(list)
	b.add(Statement{Sid: "KeepBackups", Action: []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
		Resource: []string{bucketARN + "/" + escape(prefix) + "*"}})
	return nil
}

// writes: the generated secrets (created once, without overwrite) and the
// endpoints this host publishes.
func (b *builder) writes(c *config.Config) {
	if names := Generated(c); len(names) > 0 {
		b.add(Statement{Sid: "CreateGeneratedSecrets", Action: []string{"ssm:PutParameter"}, Resource: b.parameterARNs(names)})
	}
	if names := Endpoints(c); len(names) > 0 {
		b.add(Statement{Sid: "PublishEndpoints", Action: []string{"ssm:PutParameter"}, Resource: b.parameterARNs(names)})
	}
}

// escape makes s literal in an ARN or a StringLike value: *, ? and $ are
// IAM's wildcards and variables.
func escape(s string) string {
	return strings.NewReplacer("$", "${$}", "*", "${*}", "?", "${?}").Replace(s)
}
