// Package config decodes and validates monagent's YAML configuration.
package config

import "time"

// DefaultPath is where the agent looks for its configuration.
const DefaultPath = "/etc/monagent/config.yaml"

// Config is the whole configuration file.
type Config struct {
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
}

// AWS tunes every AWS call.
type AWS struct {
	CallTimeout Duration `yaml:"call_timeout"`
	MaxAttempts int      `yaml:"max_attempts"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "5m").
type Duration struct{ time.Duration }
