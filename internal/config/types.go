// Package config decodes and validates monagent's YAML configuration.
package config

import "time"

// DefaultPath is where the agent looks for its configuration.
const DefaultPath = "/etc/monagent/config.yaml"

// Config is the whole configuration file.
type Config struct {
	// Cloud says where the host runs: aws (instance metadata, EBS, SSM,
	// the stack signal), none (a plain host: identity from the host,
	// secrets kept locally, no volume attach and no signal), or auto
	// (aws when instance metadata answers, none otherwise).
	Cloud     string            `yaml:"cloud"`
	Prefix    string            `yaml:"prefix"`
	Region    string            `yaml:"region"`
	Stack     Stack             `yaml:"stack"`
	Volume    Volume            `yaml:"volume"`
	Packages  Packages          `yaml:"packages"`
	Docker    Docker            `yaml:"docker"`
	Bundle    Bundle            `yaml:"bundle"`
	Env       map[string]EnvVar `yaml:"env"`
	Compose   Compose           `yaml:"compose"`
	Endpoints map[string]string `yaml:"endpoints"`
	Metrics   Metrics           `yaml:"metrics"`
	Smoke     Smoke             `yaml:"smoke"`
	AWS       AWS               `yaml:"aws"`
	// Secrets is where the host keeps what it generates for itself and
	// what an operator gives it without SSM.
	Secrets Secrets `yaml:"secrets"`
	// Certificates are self-signed TLS pairs the env step keeps, by name.
	Certificates map[string]Certificate `yaml:"certificates"`
	// Templates are stack files rendered from the bundle's templates.
	Templates []Template `yaml:"templates"`
	Backup    Backup     `yaml:"backup"`
	// Example marks the file the package installs: monagent changes
	// nothing while it is set. On a first boot the unit runs before
	// user-data has written the host's configuration; it must not act on
	// the example's environment (another stack's volume and secrets).
	Example bool `yaml:"example"`
}

// Stack names the CloudFormation resource that waits for the bootstrap signal.
type Stack struct {
	Name     string `yaml:"name"`
	Resource string `yaml:"resource"`
}

// Volume is the data volume and where it is mounted.
type Volume struct {
	// Kind is ebs (an EBS volume attached by id), device (a local block
	// device at Device) or directory (MountPoint is a directory on the
	// root disk). "" means ebs on AWS, directory with cloud: none.
	Kind          string   `yaml:"kind"`
	ID            string   `yaml:"id"`
	IDParameter   string   `yaml:"id_parameter"`
	Device        string   `yaml:"device"`
	MountPoint    string   `yaml:"mount_point"`
	FSType        string   `yaml:"fs_type"`
	MountOptions  string   `yaml:"mount_options"`
	Owner         string   `yaml:"owner"`
	WaitAvailable Duration `yaml:"wait_available"`
	AttachTimeout Duration `yaml:"attach_timeout"`
	DeviceTimeout Duration `yaml:"device_timeout"`
}

// Packages controls the optional OS update.
type Packages struct {
	Update bool `yaml:"update"`
}

// Docker is the engine and Compose plugin installation.
type Docker struct {
	User          string        `yaml:"user"`
	ReadyTimeout  Duration      `yaml:"ready_timeout"`
	ComposePlugin ComposePlugin `yaml:"compose_plugin"`
}

// ComposePlugin pins the Compose v2 plugin.
type ComposePlugin struct {
	Version         string   `yaml:"version"`
	URL             string   `yaml:"url"`
	SHA256          string   `yaml:"sha256"`
	DownloadTimeout Duration `yaml:"download_timeout"`
}

// Bundle is the stack bundle in S3.
type Bundle struct {
	Bucket          string `yaml:"bucket"`
	BucketParameter string `yaml:"bucket_parameter"`
	KeyPrefix       string `yaml:"key_prefix"`
	Dir             string `yaml:"dir"`
	// Source, when set, is a local directory the bundle is copied from
	// instead of S3.
	Source string `yaml:"source"`
	// VersionParameter, when set, is an SSM parameter whose value changes
	// when the bundle does (bumped after the upload): while it and the
	// installed files are unchanged, a run does not list the bucket.
	VersionParameter string `yaml:"version_parameter"`
	// Keep lists paths under Dir that the bundle never deletes or
	// overwrites, beyond .env and the secret files, which are always kept.
	Keep []string `yaml:"keep"`
}

// EnvVar says where one .env key gets its value.
type EnvVar struct {
	Value     *string  `yaml:"value"`
	Parameter string   `yaml:"parameter"`
	Optional  bool     `yaml:"optional"`
	Services  []string `yaml:"services"`
	Generate  string   `yaml:"generate"`
	File      string   `yaml:"file"`
	FileOwner string   `yaml:"file_owner"`
	Env       *bool    `yaml:"env"`
}

// Compose is the docker compose project.
type Compose struct {
	Project       string   `yaml:"project"`
	File          string   `yaml:"file"`
	HealthTimeout Duration `yaml:"health_timeout"`
	// Settle is how long every container must have run, unrestarted,
	// before the stack counts as up: a service that crashes a few seconds
	// after it starts is a restart loop, not a running service.
	Settle Duration `yaml:"settle"`
	// DataDir, on the data volume, holds a directory for each named volume
	// of the stack: its data outlives the instance. "" means
	// <volume.mount_point>/<project>.
	DataDir string `yaml:"data_dir"`
	// EnvFile is where the environment file is written, root-only; ""
	// means .env in bundle.dir. Compose reads it with --env-file.
	EnvFile string `yaml:"env_file"`
}

// Metrics is the node-exporter textfile output.
type Metrics struct {
	TextfileDir string `yaml:"textfile_dir"`
	// TextfileLink, when set, is kept as a symlink to TextfileDir, for a
	// stack whose node-exporter mounts the textfile directory from there.
	TextfileLink string `yaml:"textfile_link"`
}

// Smoke is what `monagent smoke` expects of the running stack: the seed's
// section 8, its figures as defaults.
type Smoke struct {
	Timeout          Duration `yaml:"timeout"`
	Attempts         int      `yaml:"attempts"`
	GrafanaURL       string   `yaml:"grafana_url"`
	PrometheusURL    string   `yaml:"prometheus_url"`
	LokiURL          string   `yaml:"loki_url"`
	TempoURL         string   `yaml:"tempo_url"`
	NodeExporterURL  string   `yaml:"node_exporter_url"`
	PromtailURL      string   `yaml:"promtail_url"`
	MinDatasources   int      `yaml:"min_datasources"`
	MinDashboards    int      `yaml:"min_dashboards"`
	RequiredJobs     []string `yaml:"required_jobs"`
	OptionalServices []string `yaml:"optional_services"`
	// OptionalDatasources may fail their health check with a warning
	// (CloudWatch without network access to AWS, say).
	OptionalDatasources []string `yaml:"optional_datasources"`
	DiskWarnPercent     int      `yaml:"disk_warn_percent"`
	DiskFailPercent     int      `yaml:"disk_fail_percent"`
	// Profile picks the checks: seed (the first guide's stack) or acgs
	// (Prometheus and Alertmanager behind TLS and basic auth, Grafana).
	Profile         string `yaml:"profile"`
	AlertmanagerURL string `yaml:"alertmanager_url"`
	// User and PasswordKey are the basic-auth login of Prometheus and
	// Alertmanager; the password is the value of env key PasswordKey.
	User        string `yaml:"user"`
	PasswordKey string `yaml:"password_key"`
	// CAFile verifies their certificates: a path in bundle.dir or absolute.
	CAFile string `yaml:"ca_file"`
	// Queries is how many `up` queries time the Prometheus p95.
	Queries int `yaml:"queries"`
}

// AWS tunes every AWS call.
type AWS struct {
	CallTimeout Duration `yaml:"call_timeout"`
	MaxAttempts int      `yaml:"max_attempts"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "5m").
type Duration struct{ time.Duration }

// Secrets is the host's own secret store.
type Secrets struct {
	// Dir holds generated secrets (0700, files 0600): with cloud: none
	// every generated value, and everywhere the bcrypt hashes and the TLS
	// pairs, which belong to the host.
	Dir string `yaml:"dir"`
	// File, with cloud: none, holds the operator's secrets as KEY=VALUE
	// lines by env key; it must be root-owned and 0600.
	File string `yaml:"file"`
}

// Certificate is a self-signed TLS pair written into the stack directory.
type Certificate struct {
	KeyFile  string `yaml:"key_file"`
	CertFile string `yaml:"cert_file"`
	// Owner of the key file, numeric uid:gid (the serving container's).
	Owner string `yaml:"owner"`
	// DNSNames and IPs are added to the host's own names: localhost,
	// 127.0.0.1, ::1, the host name and the private IP.
	DNSNames []string `yaml:"dns_names"`
	IPs      []string `yaml:"ips"`
}

// Template is a stack file rendered with Go's text/template.
type Template struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
	// Secret allows the value function and writes the target 0600 for
	// Owner; otherwise it is 0644 and may hold no secret value.
	Secret bool   `yaml:"secret"`
	Owner  string `yaml:"owner"`
}

// Backup is what `monagent backup` keeps, and where.
type Backup struct {
	// Location is s3://bucket/prefix/ or an absolute directory.
	Location string `yaml:"location"`
	// KeyEnv is the env key whose value is the age identity the archives
	// are encrypted to (generate: age).
	KeyEnv string `yaml:"key_env"`
	Keep   int    `yaml:"keep"`
	// Services whose data directories are copied while they are stopped
	// (Grafana's SQLite database); Prometheus is snapshotted live.
	StopServices []string `yaml:"stop_services"`
	// PrometheusService is the service whose data is taken by a TSDB
	// snapshot through the admin API at smoke.prometheus_url.
	PrometheusService string `yaml:"prometheus_service"`
}
