package config

import (
	"fmt"
	"maps"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

var (
	prefixRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	volumeIDRE  = regexp.MustCompile(`^vol-([0-9a-f]{8}|[0-9a-f]{17})$`)
	parameterRE = regexp.MustCompile(`^/[A-Za-z0-9_./-]*$`)
	userRE      = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	uidGidRE    = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)
	sha256RE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	versionRE   = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)
	bucketRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	stackRE     = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]{0,127}|arn:[A-Za-z0-9:/._-]+)$`)
	logicalIDRE = regexp.MustCompile(`^[A-Za-z0-9]{1,255}$`)
	serviceRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	projectRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
)

// Validate reports every invalid value in c as Parse would, for a Config
// built in code; what Parse and Load return is already valid.
func (c *Config) Validate() error {
	return join(check(c, nil), "")
}

// checker collects validation errors. lines says where each key was
// written, and is nil for a Config that did not come from a file.
type checker struct {
	c       *Config
	sampler *Config // c, with a usable prefix even when c's is invalid
	lines   map[string]int
	errs    []*Error
}

func check(c *Config, lines map[string]int) []*Error {
	k := &checker{c: c, lines: lines}
	sampler := *c
	if !prefixRE.MatchString(c.Prefix) {
		// One bad prefix is one error, not another in every parameter.
		sampler.Prefix = DefaultPrefix
	}
	k.sampler = &sampler
	k.cloud()
	k.prefix()
	k.region()
	k.stack()
	k.volume()
	k.docker()
	k.bundle()
	k.env()
	k.compose()
	k.endpoints()
	k.metrics()
	k.smoke()
	k.aws()
	k.secrets()
	k.autoVolume()
	k.certificates()
	k.templates()
	k.backup()
	return k.errs
}

func (k *checker) fail(key, value, problem, want string) {
	k.errs = append(k.errs, newError(key, value, problem, want, k.line(key)))
}

// line is where key was written or, for a key left out, its section.
func (k *checker) line(key string) int {
	for key != "" {
		if l, ok := k.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func (k *checker) sample(key, s string) string { return k.sampler.sample(key, s) }

func (k *checker) cloud() {
	switch c := k.c.Cloud; c {
	case CloudAWS, CloudAuto:
	case CloudNone:
		if k.c.Stack.Name != "" {
			k.fail("stack.name", k.c.Stack.Name, "is set while cloud is none", `"": without AWS there is no stack to signal`)
		}
	default:
		k.fail("cloud", c, "is not a cloud", "aws, none (a host off AWS: local secrets, no volume attach, no signal) or auto")
	}
}

func (k *checker) prefix() {
	p := k.c.Prefix
	switch {
	case p == "":
		k.fail("prefix", "", "is missing", "the SSM namespace of the stack, such as "+DefaultPrefix)
	case strings.HasPrefix(p, "/"):
		k.fail("prefix", p, "starts with a slash", "the name alone, such as "+DefaultPrefix+"; parameters add the slashes")
	case !prefixRE.MatchString(p):
		k.fail("prefix", p, "is not safe in an SSM parameter path", "letters, digits, '_', '.' and '-' only")
	}
}

func (k *checker) region() {
	if r := k.c.Region; r != "" && !regionRE.MatchString(r) {
		k.fail("region", r, "is not an AWS region", `a region such as eu-west-1, or "" to read it from instance metadata`)
	}
}

func (k *checker) stack() {
	s := k.c.Stack
	_, resourceWritten := k.lines["stack.resource"]
	switch {
	case s.Name != "" && s.Resource == "":
		k.fail("stack.resource", "", "is empty while stack.name is set", "the logical id of the resource that waits for the signal, such as MonitoringAsg")
	case s.Name == "" && s.Resource != "" && resourceWritten:
		k.fail("stack.name", "", "is empty while stack.resource is set", "the stack's name, or neither (then bootstrap sends no signal)")
	}
	if s.Name != "" && !stackRE.MatchString(k.sample("stack.name", s.Name)) {
		k.fail("stack.name", s.Name, "is not a CloudFormation stack name", "letters, digits and '-', starting with a letter, or a stack ARN")
	}
	if s.Resource != "" && !logicalIDRE.MatchString(k.sample("stack.resource", s.Resource)) {
		k.fail("stack.resource", s.Resource, "is not a logical resource id", "letters and digits only, such as MonitoringAsg")
	}
}

func (k *checker) volume() {
	v := k.c.Volume
	kind := k.c.VolumeKind()
	switch {
	case kind != VolumeEBS && kind != VolumeDevice && kind != VolumeDirectory:
		k.fail("volume.kind", v.Kind, "is not a volume kind", "ebs, device (a local block device) or directory (a directory on the root disk)")
		return
	case kind == VolumeEBS && k.c.Local():
		k.fail("volume.kind", v.Kind, "is ebs while cloud is none", "device or directory: without AWS no volume can be attached")
		return
	case kind == VolumeDirectory:
		k.absDir("volume.mount_point", v.MountPoint, "/var/lib/acgs")
		k.owner("volume.owner", v.Owner)
		return
	}
	switch {
	case kind == VolumeDevice:
	case v.ID != "" && !IsVolumeID(v.ID):
		k.fail("volume.id", v.ID, "is not a volume id", `"vol-" followed by 8 or 17 lowercase hex digits`)
	case v.ID == "" && v.IDParameter == "":
		k.fail("volume.id_parameter", "", "is empty while volume.id is empty too", "the SSM parameter holding the volume id, such as /{prefix}/ebs/volume-id, or volume.id")
	}
	if v.IDParameter != "" {
		k.parameter("volume.id_parameter", v.IDParameter)
	}
	if d := k.sample("volume.device", v.Device); !strings.HasPrefix(d, "/dev/") || path.Clean(d) != d {
		k.fail("volume.device", v.Device, "is not a device path", "a clean path under /dev, such as /dev/xvdf")
	}
	k.absDir("volume.mount_point", v.MountPoint, "/data")
	if v.FSType != "xfs" && v.FSType != "ext4" {
		k.fail("volume.fs_type", v.FSType, "is not a supported file system", "xfs or ext4")
	}
	k.mountOptions(v.MountOptions)
	k.owner("volume.owner", v.Owner)
	k.duration("volume.wait_available", v.WaitAvailable)
	k.duration("volume.attach_timeout", v.AttachTimeout)
	k.duration("volume.device_timeout", v.DeviceTimeout)
}

// mountOptions insists on nofail: fstab names a volume that may be
// detached, and without nofail a missing volume stops the boot.
func (k *checker) mountOptions(o string) {
	switch {
	case o == "" || strings.IndexFunc(o, unicode.IsSpace) >= 0:
		k.fail("volume.mount_options", o, "is not an fstab options field", "comma-separated options without spaces, such as defaults,nofail")
	case !strings.Contains(","+o+",", ",nofail,"):
		k.fail("volume.mount_options", o, "lacks nofail", "options that include nofail, so a missing volume cannot stop the boot")
	}
}

func (k *checker) docker() {
	d := k.c.Docker
	if d.User != "" && !userRE.MatchString(k.sample("docker.user", d.User)) {
		k.fail("docker.user", d.User, "is not a user name", `a user name such as ec2-user, or "" to add no user to the docker group`)
	}
	k.duration("docker.ready_timeout", d.ReadyTimeout)
	p := d.ComposePlugin
	if !versionRE.MatchString(p.Version) {
		k.fail("docker.compose_plugin.version", p.Version, "is not a release version", "a Compose release tag such as v2.24.0")
	}
	if u, err := url.Parse(k.sample(urlKey, p.URL)); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		k.fail(urlKey, p.URL, "is not an http(s) URL", "the download URL of the plugin binary, such as "+rawDefaults().Docker.ComposePlugin.URL)
	}
	if p.SHA256 != "" && !sha256RE.MatchString(p.SHA256) {
		k.fail("docker.compose_plugin.sha256", p.SHA256, "is not a SHA-256 digest", `64 hex digits (sha256sum of the plugin binary), or "" when not configured`)
	}
	k.duration("docker.compose_plugin.download_timeout", p.DownloadTimeout)
}

func (k *checker) bundle() {
	b := k.c.Bundle
	switch {
	case b.Source != "":
		k.absDir("bundle.source", b.Source, "/usr/share/monagent/examples/acgs")
		if b.Bucket != "" {
			k.fail("bundle.bucket", b.Bucket, "is set together with bundle.source", "one of them: the bucket, or a local source directory")
		}
		if within(k.sample("bundle.source", b.Source), k.sample("bundle.dir", b.Dir)) || within(k.sample("bundle.dir", b.Dir), k.sample("bundle.source", b.Source)) {
			k.fail("bundle.source", b.Source, "overlaps bundle.dir ("+b.Dir+")", "a directory apart from the stack directory the bundle is copied to")
		}
	case k.c.Local():
		k.fail("bundle.source", "", "is empty while cloud is none", "the local directory holding the stack bundle, such as /usr/share/monagent/examples/acgs")
	case b.Bucket == "" && b.BucketParameter == "":
		k.fail("bundle.bucket_parameter", "", "is empty while bundle.bucket is empty too", "the SSM parameter holding the bucket name, such as /{prefix}/ssm/scripts-bucket-name, or bundle.bucket")
	case b.Bucket != "" && !bucketRE.MatchString(k.sample("bundle.bucket", b.Bucket)):
		k.fail("bundle.bucket", b.Bucket, "is not an S3 bucket name", "the bare bucket name, such as monitoring-scripts (no s3:// and no key)")
	}
	if b.BucketParameter != "" {
		k.parameter("bundle.bucket_parameter", b.BucketParameter)
	}
	if v := b.VersionParameter; v != "" {
		k.parameter("bundle.version_parameter", v)
		if b.Source != "" {
			k.fail("bundle.version_parameter", v, "is set together with bundle.source", `"": a local bundle is not listed from S3`)
		}
	}
	if strings.HasPrefix(b.KeyPrefix, "/") {
		k.fail("bundle.key_prefix", b.KeyPrefix, "starts with a slash", "a key prefix without a leading slash, such as scripts/")
	}
	k.absDir("bundle.dir", b.Dir, "/opt/monitoring")
	for i, p := range b.Keep {
		k.relPath(fmt.Sprintf("bundle.keep[%d]", i), p, "grafana/plugins")
	}
}

func (k *checker) env() {
	files := make(map[string]string)
	for _, name := range slices.Sorted(maps.Keys(k.c.Env)) {
		key := "env." + name
		if !isIdentifier(name) {
			k.fail(key, name, "is not a shell identifier", "letters, digits and '_', not starting with a digit")
		}
		e := k.c.Env[name]
		k.envSource(key, e)
		k.envFile(key, e, files)
	}
}

// envSource checks where the value of one .env key comes from.
func (k *checker) envSource(key string, e EnvVar) {
	hasParam := e.Parameter != ""
	if k.c.Local() {
		// Without SSM a value comes from the local store by its key: the
		// parameter, if written, is only for when the profile runs on AWS.
		hasParam = e.Value == nil
	}
	switch {
	case e.Value != nil && e.Parameter != "":
		k.fail(key, "", "has both value and parameter", "exactly one of them")
	case e.Value == nil && !hasParam:
		k.fail(key, "", "has neither value nor parameter", "exactly one: value: TEXT, or parameter: /{prefix}/NAME")
	case e.Parameter != "":
		k.parameter(key+".parameter", e.Parameter)
	}
	if g := e.Generate; g != "" {
		switch {
		case !slices.Contains([]string{GenerateHex32, GenerateBase64, GeneratePassword, GenerateAge}, g):
			k.fail(key+".generate", g, "is not a generator", GenerateHex32+", "+GenerateBase64+", "+GeneratePassword+" or "+GenerateAge)
		case !hasParam:
			k.fail(key+".generate", g, "is set without parameter", "a parameter to store the generated value in")
		case e.Optional:
			k.fail(key+".generate", g, "is set together with optional: true", "one of them: generate creates a missing value, optional leaves its services out")
		}
	}
	if e.Optional && !hasParam {
		k.fail(key+".optional", "true", "is set without parameter", "optional only with parameter; a literal value is never missing")
	}
	if len(e.Services) > 0 && !e.Optional {
		k.fail(key+".services", strings.Join(e.Services, ", "), "is set without optional: true", "optional: true, or no services")
	}
	for i, s := range e.Services {
		if !serviceRE.MatchString(k.sample(key, s)) {
			k.fail(key+".services["+strconv.Itoa(i)+"]", s, "is not a service name", "the name of a service in the compose file")
		}
	}
}

// envFile checks the secret file of one .env key; files maps each file
// already claimed to the key claiming it.
func (k *checker) envFile(key string, e EnvVar, files map[string]string) {
	if e.File != "" {
		k.relPath(key+".file", e.File, "prometheus/secrets/metrics-token")
		if other, dup := files[e.File]; dup {
			k.fail(key+".file", e.File, "is also written by "+other, "one key per file")
		}
		files[e.File] = key
	}
	if e.FileOwner != "" {
		if e.File == "" {
			k.fail(key+".file_owner", e.FileOwner, "is set without file", "file: PATH, or no file_owner")
		}
		if !isUIDGID(k.sample(key, e.FileOwner)) {
			k.fail(key+".file_owner", e.FileOwner, "is not a numeric uid:gid", "uid:gid in numbers, such as 65534:65534")
		}
	}
	if !e.InEnv() && e.File == "" && key != "env."+k.c.Backup.KeyEnv {
		k.fail(key+".env", "false", "keeps the value out of .env while no file is set", "file: PATH, or env: true; otherwise the value goes nowhere")
	}
}

func (k *checker) compose() {
	c := k.c.Compose
	if !projectRE.MatchString(k.sample("compose.project", c.Project)) {
		k.fail("compose.project", c.Project, "is not a Compose project name", "lower-case letters, digits, '-' and '_', such as monitoring")
	}
	k.relPath("compose.file", c.File, "docker-compose.yml")
	k.duration("compose.health_timeout", c.HealthTimeout)
	k.duration("compose.settle", c.Settle)
	if c.Settle.Duration >= c.HealthTimeout.Duration && c.HealthTimeout.Duration > 0 {
		k.fail("compose.settle", c.Settle.String(), "is not shorter than compose.health_timeout ("+c.HealthTimeout.String()+")",
			"a settle time well within the health timeout, such as 10s")
	}
	if c.EnvFile != "" {
		k.absDir("compose.env_file", c.EnvFile, "/etc/acgs/acgs.env")
		k.outsideSource("compose.env_file", c.EnvFile)
	}
	if c.DataDir == "" {
		return
	}
	k.absDir("compose.data_dir", c.DataDir, "/data/monitoring")
	mp := k.sample("volume.mount_point", k.c.Volume.MountPoint)
	if dir := k.sample("compose.data_dir", c.DataDir); dir == mp || !within(dir, mp) {
		k.fail("compose.data_dir", c.DataDir, "is not below volume.mount_point ("+k.c.Volume.MountPoint+")",
			"a directory on the data volume, such as "+path.Join(k.c.Volume.MountPoint, "monitoring")+": the stack's data must outlive the instance")
	}
}

func (k *checker) endpoints() {
	if k.c.Local() && len(k.c.Endpoints) > 0 {
		k.fail("endpoints", "", "is set while cloud is none", "no endpoints: they are SSM parameters, and there is no SSM without AWS")
		return
	}
	for _, name := range slices.Sorted(maps.Keys(k.c.Endpoints)) {
		key := "endpoints." + name
		k.parameter(key, name)
		if k.c.Endpoints[name] == "" {
			k.fail(key, "", "has an empty value", "the value to store, such as http://{private_ip}:3100/loki/api/v1/push")
		}
	}
}

// metrics keeps the textfile directory out of the stack directory: the
// bundle step replaces that directory whole.
func (k *checker) metrics() {
	m, stack := k.c.Metrics, k.sample("bundle.dir", k.c.Bundle.Dir)
	const example = "/var/lib/node_exporter/textfile_collector"
	k.absDir("metrics.textfile_dir", m.TextfileDir, example)
	if dir := k.sample("metrics.textfile_dir", m.TextfileDir); within(dir, stack) {
		k.fail("metrics.textfile_dir", m.TextfileDir, "is inside bundle.dir ("+k.c.Bundle.Dir+"), which the bundle step replaces",
			"a directory outside it, such as "+example+", with metrics.textfile_link pointing a path in the stack at it")
	}
	if m.TextfileLink == "" {
		return
	}
	k.absDir("metrics.textfile_link", m.TextfileLink, "/opt/monitoring/node-exporter/textfile")
	link, dir := k.sample("metrics.textfile_link", m.TextfileLink), k.sample("metrics.textfile_dir", m.TextfileDir)
	if within(link, dir) || within(dir, link) {
		k.fail("metrics.textfile_link", m.TextfileLink, "overlaps metrics.textfile_dir", `a path of its own, or "" for no link`)
	}
}

// within reports whether p is dir or a path below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func (k *checker) smoke() {
	s := k.c.Smoke
	k.duration("smoke.timeout", s.Timeout)
	if s.Attempts < 1 || s.Attempts > 20 {
		k.fail("smoke.attempts", strconv.Itoa(s.Attempts), "is out of range", "a whole number from 1 to 20")
	}
	for key, u := range map[string]string{"smoke.grafana_url": s.GrafanaURL, "smoke.prometheus_url": s.PrometheusURL,
		"smoke.loki_url": s.LokiURL, "smoke.tempo_url": s.TempoURL, "smoke.node_exporter_url": s.NodeExporterURL,
		"smoke.promtail_url": s.PromtailURL} {
		if p, err := url.Parse(k.sample(key, u)); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			k.fail(key, u, "is not an http(s) URL", "the service's base URL as seen from the host, such as http://127.0.0.1:9090")
		}
	}
	k.smokeProfile()
	if s.MinDatasources < 0 || s.MinDashboards < 0 {
		k.fail("smoke.min_datasources", "", "is negative", "a count of zero or more")
	}
	if s.DiskWarnPercent < 1 || s.DiskFailPercent > 100 || s.DiskWarnPercent > s.DiskFailPercent {
		k.fail("smoke.disk_warn_percent", strconv.Itoa(s.DiskWarnPercent), "is not below smoke.disk_fail_percent within 1..100",
			"two percentages, warn below fail, such as 85 and 95")
	}
}

func (k *checker) aws() {
	k.duration("aws.call_timeout", k.c.AWS.CallTimeout)
	if n := k.c.AWS.MaxAttempts; n < 1 || n > 100 {
		k.fail("aws.max_attempts", strconv.Itoa(n), "is out of range", "a whole number from 1 to 100")
	}
}

// parameter checks an SSM parameter name, once its placeholders are filled.
func (k *checker) parameter(key, raw string) {
	p := k.sample(key, raw)
	switch {
	case !strings.HasPrefix(p, "/"):
		k.fail(key, raw, "does not start with /", "a full SSM parameter name, such as /{prefix}/ebs/volume-id")
	case !parameterRE.MatchString(p) || strings.Contains(p, "//"):
		k.fail(key, raw, "is not an SSM parameter name", "segments of letters, digits, '_', '.' and '-' joined by single slashes")
	}
}

func (k *checker) absDir(key, raw, example string) {
	p := k.sample(key, raw)
	switch {
	case !path.IsAbs(p):
		k.fail(key, raw, "is not an absolute path", "an absolute path such as "+example)
	case strings.IndexFunc(p, isSpaceOrControl) >= 0:
		k.fail(key, raw, "contains white space or control characters", "a path without them, such as "+example)
	case path.Clean(p) != p:
		k.fail(key, raw, "is not a clean path", "it written as "+path.Clean(p))
	case p == "/":
		k.fail(key, raw, "is the root directory", "a directory of its own, such as "+example)
	}
}

// relPath checks a path inside the stack directory: it must not reach out.
func (k *checker) relPath(key, raw, example string) {
	p := k.sample(key, raw)
	clean := path.Clean(p)
	switch {
	case p == "":
		k.fail(key, "", "is empty", "a path relative to bundle.dir, such as "+example)
	case path.IsAbs(p):
		k.fail(key, raw, "is an absolute path", "a path relative to bundle.dir, such as "+example)
	case clean == "." || clean == ".." || strings.HasPrefix(clean, "../"):
		k.fail(key, raw, "is not inside the stack directory", "a path relative to bundle.dir, without '..', such as "+example)
	case strings.IndexFunc(p, isSpaceOrControl) >= 0:
		k.fail(key, raw, "contains white space or control characters", "a path without them, such as "+example)
	case clean != p:
		k.fail(key, raw, "is not a clean path", "a path without '..', '.' or doubled slashes, such as "+example)
	}
}

// owner checks a file owner: a user name or a numeric uid:gid.
func (k *checker) owner(key, raw string) {
	if s := k.sample(key, raw); !userRE.MatchString(s) && !isUIDGID(s) {
		k.fail(key, raw, "is not an owner", "a user name such as ec2-user, or numeric uid:gid such as 1000:1000")
	}
}

func isUIDGID(s string) bool {
	m := uidGidRE.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	_, uerr := strconv.ParseUint(m[1], 10, 32)
	_, gerr := strconv.ParseUint(m[2], 10, 32)
	return uerr == nil && gerr == nil
}

func (k *checker) duration(key string, d Duration) {
	if d.Duration <= 0 {
		k.fail(key, d.String(), "is not positive", "a duration greater than zero, such as 90s")
	}
}

// IsVolumeID reports whether s is an EBS volume id: the old 8-digit and
// the current 17-digit forms.
func IsVolumeID(s string) bool { return volumeIDRE.MatchString(s) }

// isIdentifier reports whether s is a shell variable name, which is also
// the syntax of a placeholder name.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case i > 0 && '0' <= r && r <= '9':
		default:
			return false
		}
	}
	return true
}

func isSpaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }
