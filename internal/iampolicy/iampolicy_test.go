package iampolicy_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/iampolicy"
)

const (
	account = "123456789012"
	region  = "eu-west-1"
	volID   = "vol-0a1b2c3d4e5f60718"
	bucket  = "monitoring-production-scripts"
	keyARN  = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	profile = "arn:aws:iam::123456789012:instance-profile/monitoring"
)

// Resources the default configuration names.
const (
	ssmARN     = "arn:aws:ssm:eu-west-1:123456789012:parameter/monitoring-production/"
	volumeARN  = "arn:aws:ec2:eu-west-1:123456789012:volume/" + volID
	instances  = "arn:aws:ec2:eu-west-1:123456789012:instance/*"
	stackARN   = "arn:aws:cloudformation:eu-west-1:123456789012:stack/Monitoring-Compute-production/*"
	bucketARN  = "arn:aws:s3:::" + bucket
	objectsARN = bucketARN + "/scripts/*"
)

// stmt is a statement as a policy reader sees it: parsed back from JSON.
type stmt struct {
	Sid       string
	Effect    string
	Action    []string
	Resource  []string
	Condition map[string]map[string]string
}

// parse checks the document's shape and returns its statements by Sid.
func parse(t *testing.T, doc *iampolicy.Document) map[string]stmt {
	t.Helper()
	b, err := doc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Version   string
		Statement []stmt
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("not a policy document: %v\n%s", err, b)
	}
	if d.Version != "2012-10-17" {
		t.Errorf("Version %q", d.Version)
	}
	out := map[string]stmt{}
	for _, s := range d.Statement {
		if s.Sid == "" || strings.Trim(s.Sid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Errorf("Sid %q: want letters and digits only", s.Sid)
		}
		if _, dup := out[s.Sid]; dup {
			t.Errorf("Sid %s twice", s.Sid)
		}
		if s.Effect != "Allow" || len(s.Action) == 0 || len(s.Resource) == 0 {
			t.Errorf("statement %s: Effect %q, %d actions, %d resources", s.Sid, s.Effect, len(s.Action), len(s.Resource))
		}
		for _, a := range s.Action {
			if strings.Contains(a, "*") {
				t.Errorf("statement %s: action %q has a wildcard", s.Sid, a)
			}
		}
		if slices.Contains(s.Resource, "*") && !slices.Equal(s.Action, []string{"ec2:DescribeVolumes"}) {
			t.Errorf("statement %s: Resource * for %v, which supports resource-level permissions", s.Sid, s.Action)
		}
		out[s.Sid] = s
	}
	return out
}

func loadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, err = c.Expand(config.Vars{InstanceID: "i-0123456789abcdef0", Region: region, AZ: "eu-west-1a", PrivateIP: "10.0.0.10"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const defaultYAML = "prefix: monitoring-production\nstack:\n  name: Monitoring-Compute-production\n"

// defaultReads are the parameters the default configuration reads.
var defaultReads = []string{
	ssmARN + "ebs/volume-id",
	ssmARN + "github/api-token",
	ssmARN + "grafana/admin-password",
	ssmARN + "loki/endpoint",
	ssmARN + "prometheus/metrics-bearer-token",
	ssmARN + "ssm/scripts-bucket-name",
	ssmARN + "tempo/endpoint",
}

var kmsUse = []string{"kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"}

func facts() iampolicy.Facts {
	return iampolicy.Facts{Region: region, Account: account, VolumeID: volID, Bucket: bucket, InstanceProfile: profile,
		Key: iampolicy.Key{ARN: keyARN}}
}

// want is one statement expected by Sid: its actions, resources and
// conditions (nil for none).
type want struct {
	actions, resources []string
	condition          map[string]map[string]string
}

func TestBuild(t *testing.T) {
	base := map[string]want{
		"ReadConfiguredParameters":                     {[]string{"ssm:GetParameter", "ssm:GetParameters"}, defaultReads, nil},
		"DescribeVolumesHasNoResourceLevelPermissions": {[]string{"ec2:DescribeVolumes"}, []string{"*"}, nil},
		"AttachDataVolume":                             {[]string{"ec2:AttachVolume"}, []string{volumeARN}, nil},
		"AttachToInstancesOfThisProfile": {[]string{"ec2:AttachVolume"}, []string{instances},
			map[string]map[string]string{"ArnEquals": {"ec2:InstanceProfile": profile}}},
		"UseVolumeKmsKey": {kmsUse, []string{keyARN}, nil},
		"CreateGrantForEbsOnVolumeKmsKey": {[]string{"kms:CreateGrant"}, []string{keyARN},
			map[string]map[string]string{"Bool": {"kms:GrantIsForAWSResource": "true"}}},
		"SignalStack": {[]string{"cloudformation:SignalResource"}, []string{stackARN}, nil},
		"ListBundlePrefix": {[]string{"s3:ListBucket"}, []string{bucketARN},
			map[string]map[string]string{"StringLike": {"s3:prefix": "scripts/*"}}},
		"GetBundleObjects":       {[]string{"s3:GetObject"}, []string{objectsARN}, nil},
		"CreateGeneratedSecrets": {[]string{"ssm:PutParameter"}, []string{ssmARN + "prometheus/metrics-bearer-token"}, nil},
		"PublishEndpoints":       {[]string{"ssm:PutParameter"}, []string{ssmARN + "loki/endpoint", ssmARN + "tempo/endpoint"}, nil},
	}
	// with returns base changed: a nil want removes a statement.
	with := func(changes map[string]*want) map[string]want {
		out := maps.Clone(base)
		for sid, w := range changes {
			if w == nil {
				delete(out, sid)
			} else {
				out[sid] = *w
			}
		}
		return out
	}
	without := func(names ...string) []string {
		return slices.DeleteFunc(slices.Clone(defaultReads), func(s string) bool {
			return slices.ContainsFunc(names, func(n string) bool { return s == ssmARN+n })
		})
	}
	tests := []struct {
		name  string
		yaml  string
		facts func(*iampolicy.Facts)
		want  map[string]want
		notes []string // substrings, one note each
	}{
		{name: "default configuration with stack, parameters and a customer-managed key", yaml: defaultYAML, want: base},
		{
			name: "no stack: nothing to signal",
			yaml: "prefix: monitoring-production\n",
			want: with(map[string]*want{"SignalStack": nil}),
		},
		{
			name: "stack by ARN: that stack exactly",
			yaml: "prefix: monitoring-production\nstack:\n  name: arn:aws:cloudformation:eu-west-1:123456789012:stack/Mon/0f1e2d3c-aaaa-bbbb-cccc-0123456789ab\n",
			want: with(map[string]*want{"SignalStack": {[]string{"cloudformation:SignalResource"},
				[]string{"arn:aws:cloudformation:eu-west-1:123456789012:stack/Mon/0f1e2d3c-aaaa-bbbb-cccc-0123456789ab"}, nil}}),
		},
		{
			name:  "volume.id set: its parameter is not read",
			yaml:  defaultYAML + "volume:\n  id: vol-0123456789abcdef0\n",
			facts: func(f *iampolicy.Facts) { f.VolumeID = "" },
			want: with(map[string]*want{
				"ReadConfiguredParameters": {[]string{"ssm:GetParameter", "ssm:GetParameters"}, without("ebs/volume-id"), nil},
				"AttachDataVolume": {[]string{"ec2:AttachVolume"},
					[]string{"arn:aws:ec2:eu-west-1:123456789012:volume/vol-0123456789abcdef0"}, nil},
			}),
		},
		{
			name:  "bundle.bucket set: its parameter is not read",
			yaml:  defaultYAML + "bundle:\n  bucket: other-bucket\n  key_prefix: stack/v2/\n",
			facts: func(f *iampolicy.Facts) { f.Bucket = "" },
			want: with(map[string]*want{
				"ReadConfiguredParameters": {[]string{"ssm:GetParameter", "ssm:GetParameters"}, without("ssm/scripts-bucket-name"), nil},
				"ListBundlePrefix": {[]string{"s3:ListBucket"}, []string{"arn:aws:s3:::other-bucket"},
					map[string]map[string]string{"StringLike": {"s3:prefix": "stack/v2/*"}}},
				"GetBundleObjects": {[]string{"s3:GetObject"}, []string{"arn:aws:s3:::other-bucket/stack/v2/*"}, nil},
			}),
		},
		{
			name: "key prefix with IAM wildcard characters is literal",
			yaml: defaultYAML + "bundle:\n  key_prefix: 'a*b?c$/'\n",
			want: with(map[string]*want{
				"ListBundlePrefix": {[]string{"s3:ListBucket"}, []string{bucketARN},
					map[string]map[string]string{"StringLike": {"s3:prefix": "a${*}b${?}c${$}/*"}}},
				"GetBundleObjects": {[]string{"s3:GetObject"}, []string{bucketARN + "/a${*}b${?}c${$}/*"}, nil},
			}),
		},
		{
			name: "empty key prefix: the whole bucket, no prefix condition",
			yaml: defaultYAML + "bundle:\n  key_prefix: ''\n",
			want: with(map[string]*want{
				"ListBundlePrefix": {[]string{"s3:ListBucket"}, []string{bucketARN}, nil},
				"GetBundleObjects": {[]string{"s3:GetObject"}, []string{bucketARN + "/*"}, nil},
			}),
		},
		{
			name: "two generated secrets, no endpoints, a literal value",
			yaml: defaultYAML + `env:
  ADMIN: {value: admin}
  A: {parameter: /x/a, generate: hex32}
  B: {parameter: /x/b, generate: base64_32}
  C: {parameter: /x/c}
endpoints: {}
`,
			want: with(map[string]*want{
				"ReadConfiguredParameters": {[]string{"ssm:GetParameter", "ssm:GetParameters"}, []string{
					"arn:aws:ssm:eu-west-1:123456789012:parameter/monitoring-production/ebs/volume-id",
					"arn:aws:ssm:eu-west-1:123456789012:parameter/monitoring-production/ssm/scripts-bucket-name",
					"arn:aws:ssm:eu-west-1:123456789012:parameter/x/a",
					"arn:aws:ssm:eu-west-1:123456789012:parameter/x/b",
					"arn:aws:ssm:eu-west-1:123456789012:parameter/x/c",
				}, nil},
				"CreateGeneratedSecrets": {[]string{"ssm:PutParameter"}, []string{
					"arn:aws:ssm:eu-west-1:123456789012:parameter/x/a",
					"arn:aws:ssm:eu-west-1:123456789012:parameter/x/b",
				}, nil},
				"PublishEndpoints": nil,
			}),
		},
		{
			name: "nothing read from SSM and nothing written",
			yaml: "prefix: p\nvolume:\n  id: vol-0123456789abcdef0\nbundle:\n  bucket: b-b-b\nenv:\n  A: {value: x}\nendpoints: {}\n",
			facts: func(f *iampolicy.Facts) {
				f.VolumeID, f.Bucket = "", ""
			},
			want: with(map[string]*want{
				"ReadConfiguredParameters": nil,
				"CreateGeneratedSecrets":   nil,
				"PublishEndpoints":         nil,
				"SignalStack":              nil,
				"AttachDataVolume": {[]string{"ec2:AttachVolume"},
					[]string{"arn:aws:ec2:eu-west-1:123456789012:volume/vol-0123456789abcdef0"}, nil},
				"ListBundlePrefix": {[]string{"s3:ListBucket"}, []string{"arn:aws:s3:::b-b-b"},
					map[string]map[string]string{"StringLike": {"s3:prefix": "scripts/*"}}},
				"GetBundleObjects": {[]string{"s3:GetObject"}, []string{"arn:aws:s3:::b-b-b/scripts/*"}, nil},
			}),
		},
		{
			name:  "volume not encrypted with a key to grant: no KMS statement",
			yaml:  defaultYAML,
			facts: func(f *iampolicy.Facts) { f.Key = iampolicy.Key{None: true} },
			want:  with(map[string]*want{"UseVolumeKmsKey": nil, "CreateGrantForEbsOnVolumeKmsKey": nil}),
		},
		{
			name:  "key id given: its ARN in the account and region",
			yaml:  defaultYAML,
			facts: func(f *iampolicy.Facts) { f.Key = iampolicy.Key{ARN: "1234abcd-12ab-34cd-56ef-1234567890ab"} },
			want:  base,
		},
		{
			name: "key not known: any key of the account, through EC2 only",
			yaml: defaultYAML,
			facts: func(f *iampolicy.Facts) {
				f.Key = iampolicy.Key{}
			},
			want: with(map[string]*want{
				"UseVolumeKmsKey":                 nil,
				"CreateGrantForEbsOnVolumeKmsKey": nil,
				"UseAnyKmsKeyThroughEc2": {kmsUse, []string{"arn:aws:kms:eu-west-1:123456789012:key/*"},
					map[string]map[string]string{"StringEquals": {"kms:ViaService": "ec2.eu-west-1.amazonaws.com"}}},
				"CreateGrantForEbsOnAnyKmsKeyThroughEc2": {[]string{"kms:CreateGrant"}, []string{"arn:aws:kms:eu-west-1:123456789012:key/*"},
					map[string]map[string]string{
						"Bool":         {"kms:GrantIsForAWSResource": "true"},
						"StringEquals": {"kms:ViaService": "ec2.eu-west-1.amazonaws.com"},
					}},
			}),
			notes: []string{"KMS key is not known"},
		},
		{
			name: "offline: volume, bucket and instance profile not known",
			yaml: defaultYAML,
			facts: func(f *iampolicy.Facts) {
				f.VolumeID, f.Bucket, f.InstanceProfile = "", "", ""
			},
			want: with(map[string]*want{
				"AttachDataVolume":               {[]string{"ec2:AttachVolume"}, []string{"arn:aws:ec2:eu-west-1:123456789012:volume/*"}, nil},
				"AttachToInstancesOfThisProfile": nil,
				"AttachToInstancesOfTheAccount":  {[]string{"ec2:AttachVolume"}, []string{instances}, nil},
				"ListBundlePrefix": {[]string{"s3:ListBucket"}, []string{"arn:aws:s3:::*"},
					map[string]map[string]string{
						"StringLike":   {"s3:prefix": "scripts/*"},
						"StringEquals": {"aws:ResourceAccount": account},
					}},
				"GetBundleObjects": {[]string{"s3:GetObject"}, []string{"arn:aws:s3:::*/scripts/*"},
					map[string]map[string]string{"StringEquals": {"aws:ResourceAccount": account}}},
			}),
			notes: []string{"volume id is read from SSM", "instance profile is not known", "bucket is read from SSM"},
		},
		{
			name: "China: the aws-cn partition in every ARN",
			yaml: "prefix: p\nstack:\n  name: S\nvolume:\n  id: vol-0123456789abcdef0\nbundle:\n  bucket: b-b-b\nenv:\n  A: {parameter: /p/a}\nendpoints: {}\n",
			facts: func(f *iampolicy.Facts) {
				f.Region, f.VolumeID, f.Bucket, f.InstanceProfile = "cn-north-1", "", "", "arn:aws-cn:iam::123456789012:instance-profile/m"
				f.Key = iampolicy.Key{}
			},
			want: map[string]want{
				"ReadConfiguredParameters": {[]string{"ssm:GetParameter", "ssm:GetParameters"},
					[]string{"arn:aws-cn:ssm:cn-north-1:123456789012:parameter/p/a"}, nil},
				"DescribeVolumesHasNoResourceLevelPermissions": {[]string{"ec2:DescribeVolumes"}, []string{"*"}, nil},
				"AttachDataVolume": {[]string{"ec2:AttachVolume"},
					[]string{"arn:aws-cn:ec2:cn-north-1:123456789012:volume/vol-0123456789abcdef0"}, nil},
				"AttachToInstancesOfThisProfile": {[]string{"ec2:AttachVolume"}, []string{"arn:aws-cn:ec2:cn-north-1:123456789012:instance/*"},
					map[string]map[string]string{"ArnEquals": {"ec2:InstanceProfile": "arn:aws-cn:iam::123456789012:instance-profile/m"}}},
				"UseAnyKmsKeyThroughEc2": {kmsUse, []string{"arn:aws-cn:kms:cn-north-1:123456789012:key/*"},
					map[string]map[string]string{"StringEquals": {"kms:ViaService": "ec2.cn-north-1.amazonaws.com.cn"}}},
				"CreateGrantForEbsOnAnyKmsKeyThroughEc2": {[]string{"kms:CreateGrant"}, []string{"arn:aws-cn:kms:cn-north-1:123456789012:key/*"},
					map[string]map[string]string{
						"Bool":         {"kms:GrantIsForAWSResource": "true"},
						"StringEquals": {"kms:ViaService": "ec2.cn-north-1.amazonaws.com.cn"},
					}},
				"SignalStack": {[]string{"cloudformation:SignalResource"},
					[]string{"arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/S/*"}, nil},
				"ListBundlePrefix": {[]string{"s3:ListBucket"}, []string{"arn:aws-cn:s3:::b-b-b"},
					map[string]map[string]string{"StringLike": {"s3:prefix": "scripts/*"}}},
				"GetBundleObjects": {[]string{"s3:GetObject"}, []string{"arn:aws-cn:s3:::b-b-b/scripts/*"}, nil},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := facts()
			if tt.facts != nil {
				tt.facts(&f)
			}
			doc, notes, err := iampolicy.Build(loadConfig(t, tt.yaml), f)
			if err != nil {
				t.Fatal(err)
			}
			got := parse(t, doc)
			if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tt.want)); !slices.Equal(g, w) {
				t.Fatalf("statements\n got %v\nwant %v", g, w)
			}
			for sid, w := range tt.want {
				s := got[sid]
				if !slices.Equal(s.Action, w.actions) {
					t.Errorf("%s: actions %v, want %v", sid, s.Action, w.actions)
				}
				if !slices.Equal(s.Resource, w.resources) {
					t.Errorf("%s: resources\n got %v\nwant %v", sid, s.Resource, w.resources)
				}
				if !maps.EqualFunc(s.Condition, w.condition, maps.Equal) {
					t.Errorf("%s: condition %v, want %v", sid, s.Condition, w.condition)
				}
			}
			for _, n := range tt.notes {
				if !slices.ContainsFunc(notes, func(s string) bool { return strings.Contains(s, n) }) {
					t.Errorf("no note says %q: %q", n, notes)
				}
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		facts func(*iampolicy.Facts)
		want  []string // substrings of the error
	}{
		{"bad account", defaultYAML, func(f *iampolicy.Facts) { f.Account = "1234" }, []string{"account", `"1234"`, "12 digits"}},
		{"bad region", defaultYAML, func(f *iampolicy.Facts) { f.Region = "Ireland" }, []string{"region", `"Ireland"`, "eu-west-1"}},
		{"alias for the key", defaultYAML, func(f *iampolicy.Facts) { f.Key.ARN = "alias/monitoring-ebs" },
			[]string{"alias/monitoring-ebs", "alias", "describe-key"}},
		{"alias ARN for the key", defaultYAML, func(f *iampolicy.Facts) {
			f.Key.ARN = "arn:aws:kms:eu-west-1:123456789012:alias/monitoring-ebs"
		}, []string{"alias", "key's ARN"}},
		{"key and none", defaultYAML, func(f *iampolicy.Facts) { f.Key.None = true }, []string{"none", keyARN}},
		{"bad volume id", defaultYAML, func(f *iampolicy.Facts) { f.VolumeID = "vol-xyz" }, []string{"volume id", `"vol-xyz"`, "hex"}},
		{"volume id against volume.id", defaultYAML + "volume:\n  id: vol-0123456789abcdef0\n", nil,
			[]string{"volume.id", "vol-0123456789abcdef0", volID}},
		{"bad instance profile", defaultYAML, func(f *iampolicy.Facts) { f.InstanceProfile = "monitoring" },
			[]string{"instance profile", `"monitoring"`, "instance-profile/"}},
		{"bad stack ARN", "prefix: p\nstack:\n  name: arn:aws:sns:eu-west-1:123456789012:topic\n", nil,
			[]string{"stack.name", "arn:aws:sns", "stack/<name>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := facts()
			if tt.facts != nil {
				tt.facts(&f)
			}
			_, _, err := iampolicy.Build(loadConfig(t, tt.yaml), f)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestPartition(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-1":       "aws",
		"us-east-1":       "aws",
		"cn-north-1":      "aws-cn",
		"us-gov-west-1":   "aws-us-gov",
		"us-iso-east-1":   "aws-iso",
		"us-isob-east-1":  "aws-iso-b",
		"eu-isoe-west-1":  "aws-iso-e",
		"us-isof-south-1": "aws-iso-f",
	} {
		if got := iampolicy.Partition(region); got != want {
			t.Errorf("Partition(%s) = %s, want %s", region, got, want)
		}
	}
}

func TestKeyARN(t *testing.T) {
	tests := []struct{ in, want string }{
		{keyARN, keyARN},
		{"1234abcd-12ab-34cd-56ef-1234567890ab", keyARN},
		{"mrk-1234abcd12ab34cd56ef1234567890ab", "arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"},
		{"arn:aws:kms:eu-west-1:999988887777:key/1234abcd-12ab-34cd-56ef-1234567890ab",
			"arn:aws:kms:eu-west-1:999988887777:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
		{"alias/aws/ebs", ""},
		{"", ""},
		{"key/1234", ""},
	}
	for _, tt := range tests {
		got, err := iampolicy.KeyARN("aws", region, account, tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("KeyARN(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// The ACGS profile on AWS: a local bundle and data directory need no S3
// read nor EC2; its backups in S3 need the prefix listed, read, written
// and pruned, nothing else of the bucket.
func TestBuildBackups(t *testing.T) {
	yaml := `prefix: acgs
cloud: auto
volume: {kind: directory, mount_point: /var/lib/acgs}
bundle: {source: /usr/share/monagent/examples/acgs/stack, dir: /opt/acgs-1/monitoring}
env:
  BACKUP_ENCRYPTION_KEY: {parameter: /acgs/backup/age-identity, generate: age}
endpoints: {}
backup: {location: "s3://acgs-backups/hosts/", key_env: BACKUP_ENCRYPTION_KEY}
`
	doc, _, err := iampolicy.Build(loadConfig(t, yaml), iampolicy.Facts{Region: region, Account: account, Key: iampolicy.Key{None: true}})
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, doc)
	for _, sid := range []string{"ListBundlePrefix", "GetBundleObjects", "DescribeVolumesHasNoResourceLevelPermissions"} {
		if _, ok := got[sid]; ok {
			t.Errorf("statement %s for a host with a local bundle and data directory", sid)
		}
	}
	list, keep := got["ListBackups"], got["KeepBackups"]
	if !slices.Equal(list.Resource, []string{"arn:aws:s3:::acgs-backups"}) || list.Condition["StringLike"]["s3:prefix"] != "hosts/*" {
		t.Errorf("ListBackups = %+v", list)
	}
	if !slices.Equal(keep.Action, []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}) ||
		!slices.Equal(keep.Resource, []string{"arn:aws:s3:::acgs-backups/hosts/*"}) {
		t.Errorf("KeepBackups = %+v", keep)
	}

	local, err := config.Parse([]byte(strings.Replace(strings.Replace(yaml, "cloud: auto", "cloud: none", 1), `"s3://acgs-backups/hosts/"`, "/var/backups/acgs", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := iampolicy.Build(local, facts()); err == nil || !strings.Contains(err.Error(), "cloud is none") {
		t.Errorf("a policy for a host without AWS: %v", err)
	}
}
