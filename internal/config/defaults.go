package config

import "time"

// DefaultPrefix is the SSM namespace of the seed's production stack.
const DefaultPrefix = "monitoring-production"

// Defaults returns the configuration used when the file sets nothing but
// the required prefix, with {prefix} expanded to DefaultPrefix. Instance
// placeholders such as {private_ip} are left for Expand.
func Defaults() *Config {
	raw := rawDefaults()
	raw.Prefix = DefaultPrefix
	c, errs := raw.expandLoad(nil)
	if len(errs) > 0 {
		// The defaults are constants; TestDefaultsValid keeps this unreachable.
		panic(join(errs, ""))
	}
	return c
}

// rawDefaults is Defaults before {prefix} expansion, and without the
// prefix itself: a file must name its prefix, because running one
// environment's host against another's parameters is the worst mistake
// a default could make, and the defaults follow the prefix the file names.
func rawDefaults() *Config {
	return &Config{
		Cloud:        CloudAWS,
		Secrets:      Secrets{Dir: "/var/lib/monagent/secrets"},
		Backup:       Backup{KeyEnv: "BACKUP_ENCRYPTION_KEY", Keep: 7, StopServices: []string{}},
		Certificates: map[string]Certificate{},
		Templates:    []Template{},
		Stack:        Stack{Resource: "MonitoringAsg"},
		Volume: Volume{
			IDParameter:   "/{prefix}/ebs/volume-id",
			Device:        "/dev/xvdf",
			MountPoint:    "/data",
			FSType:        "xfs",
			MountOptions:  "defaults,nofail",
			Owner:         "ec2-user",
			WaitAvailable: Duration{120 * time.Second},
			AttachTimeout: Duration{120 * time.Second},
			DeviceTimeout: Duration{60 * time.Second},
		},
		Docker: Docker{
			User:         "ec2-user",
			ReadyTimeout: Duration{300 * time.Second},
			ComposePlugin: ComposePlugin{
				Version:         "v2.24.0",
				URL:             "https://github.com/docker/compose/releases/download/{version}/docker-compose-linux-x86_64",
				DownloadTimeout: Duration{5 * time.Minute},
			},
		},
		Bundle: Bundle{
			BucketParameter: "/{prefix}/ssm/scripts-bucket-name",
			KeyPrefix:       "scripts/",
			Dir:             "/opt/monitoring",
			Keep:            []string{},
		},
		Env: defaultEnv(),
		Compose: Compose{
			Project:       "monitoring",
			File:          "docker-compose.yml",
			HealthTimeout: Duration{180 * time.Second},
			Settle:        Duration{10 * time.Second},
		},
		Endpoints: map[string]string{
			"/{prefix}/loki/endpoint":  "http://{private_ip}:3100/loki/api/v1/push",
			"/{prefix}/tempo/endpoint": "http://{private_ip}:4317",
		},
		// The textfile directory lives outside bundle.dir, which the bundle
		// step replaces; the seed stack's node-exporter mounts the link.
		Metrics: Metrics{
			TextfileDir:  "/var/lib/node_exporter/textfile_collector",
			TextfileLink: "/opt/monitoring/node-exporter/textfile",
		},
		Smoke: Smoke{
			Timeout:             Duration{2 * time.Minute},
			Attempts:            6,
			GrafanaURL:          "http://127.0.0.1:3000",
			PrometheusURL:       "http://127.0.0.1:9090",
			LokiURL:             "http://127.0.0.1:3100",
			TempoURL:            "http://127.0.0.1:3200",
			NodeExporterURL:     "http://127.0.0.1:9100",
			PromtailURL:         "http://127.0.0.1:9080",
			MinDatasources:      4,
			MinDashboards:       9,
			RequiredJobs:        []string{"prometheus", "node-exporter"},
			OptionalServices:    []string{"github-actions-exporter"},
			OptionalDatasources: []string{},
			DiskWarnPercent:     85,
			DiskFailPercent:     95,
			Profile:             ProfileSeed,
			Queries:             20,
		},
		AWS: AWS{
			CallTimeout: Duration{30 * time.Second},
			MaxAttempts: 8,
		},
	}
}

// defaultEnv is the .env mapping of the seed's SSM document.
func defaultEnv() map[string]EnvVar {
	admin := "admin"
	no := false
	return map[string]EnvVar{
		"GRAFANA_ADMIN_USER":     {Value: &admin},
		"GRAFANA_ADMIN_PASSWORD": {Parameter: "/{prefix}/grafana/admin-password"},
		"GITHUB_TOKEN": {
			Parameter: "/{prefix}/github/api-token",
			Optional:  true,
			Services:  []string{"github-actions-exporter"},
		},
		"METRICS_TOKEN": {
			Parameter: "/{prefix}/prometheus/metrics-bearer-token",
			Generate:  GenerateHex32,
			File:      "prometheus/secrets/metrics-token",
			FileOwner: "65534:65534",
			Env:       &no,
		},
	}
}
