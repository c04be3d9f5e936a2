package config

import (
	"strings"
	"testing"
)

// local is the smallest valid configuration of a host off AWS.
const local = "prefix: p\ncloud: none\nbundle: {source: /usr/share/monagent/examples/acgs, dir: /opt/acgs}\n"

// acgsEnv declares the keys the acgs profile's keys refer to.
const acgsEnv = `env:
  PROMETHEUS_PASSWORD: {generate: password}
  BACKUP_ENCRYPTION_KEY: {generate: age, file: backup/age.key, env: false}
  SMTP_PASSWORD: {optional: true}
`

// TestProfileErrors: every error names the key, the value as written (when
// there is one) and what to write instead.
func TestProfileErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		key   string
		value string // Error.Value
		msg   string // part of Error()
		want  string // part of Error.Want: the fix
	}{
		// cloud
		{"cloud unknown", "prefix: p\ncloud: azure\n", "cloud", "azure", `cloud: "azure" is not a cloud`, "aws, none"},
		{"cloud case", "prefix: p\ncloud: None\n", "cloud", "None", "is not a cloud", "or auto"},
		{"stack name off AWS", local + "stack: {name: Monitoring-Compute}\n", "stack.name", "Monitoring-Compute", "is set while cloud is none", "no stack to signal"},

		// volume.kind
		{"volume kind unknown", local + "volume: {kind: nfs}\n", "volume.kind", "nfs", "is not a volume kind", "ebs, device"},
		{"volume kind ebs off AWS", local + "volume: {kind: ebs}\n", "volume.kind", "ebs", "is ebs while cloud is none", "device or directory"},
		{"directory mount point relative", local + "volume: {kind: directory, mount_point: var/lib/acgs}\n", "volume.mount_point", "var/lib/acgs", "is not an absolute path", "/var/lib/acgs"},
		{"directory owner", local + "volume: {kind: directory, mount_point: /var/lib/acgs, owner: 'acgs:acgs'}\n", "volume.owner", "acgs:acgs", "is not an owner", "uid:gid"},
		{"device path", local + "volume: {kind: device, device: /srv/disk}\n", "volume.device", "/srv/disk", "is not a device path", "/dev/xvdf"},
		{"device fs type", local + "volume: {kind: device, device: /dev/sdb, fs_type: btrfs}\n", "volume.fs_type", "btrfs", "is not a supported file system", "xfs or ext4"},
		{"device nofail", local + "volume: {kind: device, device: /dev/sdb, mount_options: defaults}\n", "volume.mount_options", "defaults", "lacks nofail", "nofail"},

		// bundle.source
		{"source missing off AWS", "prefix: p\ncloud: none\n", "bundle.source", "", "is empty while cloud is none", "/usr/share/monagent/examples/acgs"},
		{"source relative", "prefix: p\ncloud: none\nbundle: {source: examples/acgs}\n", "bundle.source", "examples/acgs", "is not an absolute path", "an absolute path"},
		{"source is the stack dir", "prefix: p\ncloud: none\nbundle: {source: /opt/acgs, dir: /opt/acgs}\n", "bundle.source", "/opt/acgs", "overlaps bundle.dir (/opt/acgs)", "a directory apart"},
		{"source inside the stack dir", "prefix: p\ncloud: none\nbundle: {source: /opt/acgs/src, dir: /opt/acgs}\n", "bundle.source", "/opt/acgs/src", "overlaps bundle.dir", "a directory apart"},
		{"stack dir inside the source", "prefix: p\ncloud: none\nbundle: {source: /opt, dir: /opt/acgs}\n", "bundle.source", "/opt", "overlaps bundle.dir", "a directory apart"},
		{"source with a bucket", "prefix: p\nbundle: {source: /srv/acgs, bucket: scripts}\n", "bundle.bucket", "scripts", "is set together with bundle.source", "one of them"},

		// secrets
		{"secrets file on AWS", "prefix: p\nsecrets: {file: /etc/acgs/operator.env}\n", "secrets.file", "/etc/acgs/operator.env", "is set while cloud is aws", "SSM parameters"},
		{"secrets file with cloud aws", "prefix: p\ncloud: aws\nsecrets: {file: /etc/acgs/operator.env}\n", "secrets.file", "/etc/acgs/operator.env", "is set while cloud is aws", "SSM parameters"},
		{"auto without volume kind", "prefix: p\ncloud: auto\n", "volume.kind", "", "is empty while cloud is auto", "ebs, device or directory"},
		{"operator file is the env file", local + "compose: {env_file: /etc/acgs/monitoring.env}\nsecrets: {file: /etc/acgs/monitoring.env}\n", "secrets.file",
			"/etc/acgs/monitoring.env", "is also the environment file", "erased"},
		{"backup in the data dir", local + "env:\n  K: {generate: age}\nbackup: {location: /data/monitoring/backups, key_env: K}\n", "backup.location",
			"/data/monitoring/backups", "overlaps compose.data_dir", "/var/backups/acgs-monitoring"},
		{"secrets file relative", local + "secrets: {file: operator.env}\n", "secrets.file", "operator.env", "is not an absolute path", "/etc/acgs/operator.env"},
		{"secrets file in the source", local + "secrets: {file: /usr/share/monagent/examples/acgs/operator.env}\n", "secrets.file",
			"/usr/share/monagent/examples/acgs/operator.env", "is inside bundle.source", "outside bundle.source"},
		{"secrets dir in the source", local + "secrets: {dir: /usr/share/monagent/examples/acgs/secrets}\n", "secrets.dir",
			"/usr/share/monagent/examples/acgs/secrets", "is inside bundle.source", "outside bundle.source"},
		{"secrets dir in the stack dir", local + "secrets: {dir: /opt/acgs/secrets}\n", "secrets.dir", "/opt/acgs/secrets", "is inside bundle.dir (/opt/acgs)", "a directory of its own"},

		// compose.env_file
		{"env file relative", local + "compose: {env_file: acgs.env}\n", "compose.env_file", "acgs.env", "is not an absolute path", "/etc/acgs/acgs.env"},
		{"env file unclean", local + "compose: {env_file: /etc/acgs/../acgs.env}\n", "compose.env_file", "/etc/acgs/../acgs.env", "is not a clean path", "/etc/acgs.env"},
		{"env file in the source", local + "compose: {env_file: /usr/share/monagent/examples/acgs/.env}\n", "compose.env_file",
			"/usr/share/monagent/examples/acgs/.env", "is inside bundle.source", "outside bundle.source"},

		// endpoints
		{"endpoints off AWS", local + "endpoints:\n  /p/loki/endpoint: http://x\n", "endpoints", "", "is set while cloud is none", "no endpoints"},

		// certificates
		{"certificate owner name", local + "certificates:\n  prometheus: {key_file: certs/p.key, cert_file: certs/p.crt, owner: nobody}\n",
			"certificates.prometheus.owner", "nobody", "is not a numeric uid:gid", "65534:65534"},
		{"certificate files the same", local + "certificates:\n  prometheus: {key_file: certs/p.pem, cert_file: certs/p.pem}\n",
			"certificates.prometheus.cert_file", "certs/p.pem", "is also written by certificates.prometheus.key_file", "a file of its own"},
		{"certificates sharing a file", local + "certificates:\n  a: {key_file: certs/a.key, cert_file: certs/ca.crt}\n  b: {key_file: certs/b.key, cert_file: certs/ca.crt}\n",
			"certificates.b.cert_file", "certs/ca.crt", "is also written by certificates.a.cert_file", "a file of its own"},
		{"certificate over an env file", local + "env:\n  TOKEN: {file: certs/p.key}\ncertificates:\n  p: {key_file: certs/p.key, cert_file: certs/p.crt}\n",
			"certificates.p.key_file", "certs/p.key", "is also written by env.TOKEN.file", "a file of its own"},
		{"certificate key file missing", local + "certificates:\n  p: {cert_file: certs/p.crt}\n", "certificates.p.key_file", "", "is empty", "certs/prometheus.key"},
		{"certificate file escapes", local + "certificates:\n  p: {key_file: ../p.key, cert_file: certs/p.crt}\n", "certificates.p.key_file", "../p.key", "is not inside the stack directory", "without '..'"},
		{"certificate IP", local + "certificates:\n  p: {key_file: certs/p.key, cert_file: certs/p.crt, ips: [10.0.0.5, 10.0.0.256]}\n",
			"certificates.p.ips[1]", "10.0.0.256", "is not an IP address", "10.0.0.5 or {private_ip}"},
		{"certificate DNS name", local + "certificates:\n  p: {key_file: certs/p.key, cert_file: certs/p.crt, dns_names: ['https://prometheus']}\n",
			"certificates.p.dns_names[0]", "https://prometheus", "is not a DNS name", "monitoring.example.com"},
		{"certificate DNS name with a placeholder", local + "certificates:\n  p: {key_file: certs/p.key, cert_file: certs/p.crt, dns_names: ['{instance_id}:9090']}\n",
			"certificates.p.dns_names[0]", "{instance_id}:9090", "is not a DNS name", "monitoring.example.com"},
		{"certificate name", local + "certificates:\n  '../p': {key_file: certs/p.key, cert_file: certs/p.crt}\n", "certificates.../p", "../p", "is not a certificate name", "such as prometheus"},

		// templates
		{"template is its own target", local + "templates:\n  - {source: prometheus/web.yml, target: prometheus/web.yml}\n",
			"templates[0].target", "prometheus/web.yml", "is the template itself", "without .tmpl"},
		{"template target twice", local + "templates:\n  - {source: a.tmpl, target: a.yml}\n  - {source: b.tmpl, target: a.yml}\n",
			"templates[1].target", "a.yml", "is also the target of templates[0]", "one template per file"},
		{"template over a certificate", local + "certificates:\n  p: {key_file: certs/p.key, cert_file: certs/p.crt}\ntemplates:\n  - {source: p.tmpl, target: certs/p.crt}\n",
			"templates[0].target", "certs/p.crt", "is also written by certificates.p.cert_file", "a file of its own"},
		{"template over an env file", local + "env:\n  TOKEN: {file: prometheus/token}\ntemplates:\n  - {source: t.tmpl, target: prometheus/token}\n",
			"templates[0].target", "prometheus/token", "is also written by env.TOKEN.file", "a file of its own"},
		{"template owner without secret", local + "templates:\n  - {source: a.tmpl, target: a.yml, owner: '65534:65534'}\n",
			"templates[0].owner", "65534:65534", "is set on a template that is not secret", "secret: true"},
		{"template owner name", local + "templates:\n  - {source: a.tmpl, target: a.yml, secret: true, owner: nobody}\n",
			"templates[0].owner", "nobody", "is not a numeric uid:gid", "65534:65534"},
		{"template source absolute", local + "templates:\n  - {source: /etc/a.tmpl, target: a.yml}\n", "templates[0].source", "/etc/a.tmpl", "is an absolute path", "relative to bundle.dir"},

		// backup
		{"backup keep zero", local + "backup: {keep: 0}\n", "backup.keep", "0", "is out of range", "from 1 to 1000"},
		{"backup keep too many", local + "backup: {keep: 1001}\n", "backup.keep", "1001", "is out of range", "from 1 to 1000"},
		{"backup location relative", local + acgsEnv + "backup: {location: backups}\n", "backup.location", "backups", "is not a backup location", "s3://BUCKET/PREFIX/"},
		{"backup location http", local + acgsEnv + "backup: {location: 'https://example.com/b'}\n", "backup.location", "https://example.com/b", "is not a backup location", "s3://BUCKET/PREFIX/"},
		{"backup location S3 off AWS", local + acgsEnv + "backup: {location: 's3://backups/acgs/'}\n", "backup.location", "s3://backups/acgs/", "is in S3 while cloud is none", "a local directory"},
		{"backup location S3 without bucket", "prefix: p\n" + acgsEnv + "backup: {location: 's3://'}\n", "backup.location", "s3://", "does not name an S3 bucket", "s3://BUCKET/PREFIX/"},
		{"backup location S3 bad bucket", "prefix: p\n" + acgsEnv + "backup: {location: 's3://Backups_Bucket/x/'}\n", "backup.location", "s3://Backups_Bucket/x/", "does not name an S3 bucket", "s3://BUCKET/PREFIX/"},
		{"backup location unclean", local + acgsEnv + "backup: {location: /var/backups/../acgs}\n", "backup.location", "/var/backups/../acgs", "is not a clean path", "/var/acgs"},
		{"backup key not in env", local + "backup: {location: /var/backups/acgs}\n", "backup.key_env", "BACKUP_ENCRYPTION_KEY", "is not a key of env", "generate: age"},
		{"backup key not age", local + "env:\n  BACKUP_ENCRYPTION_KEY: {generate: base64_32}\nbackup: {location: /var/backups/acgs}\n",
			"backup.key_env", "BACKUP_ENCRYPTION_KEY", "names a key without generate: age", "generate: age on env.BACKUP_ENCRYPTION_KEY"},
		{"backup key literal", local + "env:\n  K: {value: AGE-SECRET-KEY-1XYZ}\nbackup: {location: /var/backups/acgs, key_env: K}\n",
			"backup.key_env", "K", "names a key without generate: age", "generate: age on env.K"},
		{"backup stop service", local + acgsEnv + "backup: {location: /var/backups/acgs, stop_services: ['grafana db']}\n",
			"backup.stop_services[0]", "grafana db", "is not a service name", "a service in the compose file"},

		// generators
		{"generate unknown", local + "env:\n  A: {generate: uuid}\n", "env.A.generate", "uuid", "is not a generator", "hex32, base64_32, password or age"},
		{"generate with a value off AWS", local + "env:\n  A: {value: x, generate: age}\n", "env.A.generate", "age", "is set without parameter", "a parameter to store"},

		// smoke.profile
		{"smoke profile unknown", local + "smoke: {profile: acgs2}\n", "smoke.profile", "acgs2", "is not a smoke profile", "seed"},
		{"acgs without alertmanager", local + "smoke: {profile: acgs}\n", "smoke.alertmanager_url", "", "is not an http(s) URL", "https://127.0.0.1:9093"},
		{"acgs alertmanager url", local + "smoke: {profile: acgs, alertmanager_url: '127.0.0.1:9093'}\n", "smoke.alertmanager_url", "127.0.0.1:9093", "is not an http(s) URL", "https://127.0.0.1:9093"},
		{"acgs password key unknown", local + acgsEnv + "smoke: {profile: acgs, alertmanager_url: 'https://127.0.0.1:9093', user: acgs_monitor, password_key: PROM_PW}\n",
			"smoke.password_key", "PROM_PW", "is not a key of env", "PROMETHEUS_PASSWORD"},
		{"acgs password key without user", local + acgsEnv + "smoke: {profile: acgs, alertmanager_url: 'https://127.0.0.1:9093', password_key: PROMETHEUS_PASSWORD}\n",
			"smoke.user", "", "is empty while smoke.password_key is set", "acgs_monitor"},
		{"acgs queries", local + "smoke: {profile: acgs, alertmanager_url: 'https://127.0.0.1:9093', queries: 0}\n", "smoke.queries", "0", "is out of range", "from 1 to 1000"},
		{"acgs queries too many", local + "smoke: {profile: acgs, alertmanager_url: 'https://127.0.0.1:9093', queries: 5000}\n", "smoke.queries", "5000", "is out of range", "from 1 to 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			e := findError(t, err, tc.key)
			if e.Value != tc.value {
				t.Errorf("Value = %q, want %q (%v)", e.Value, tc.value, e)
			}
			if tc.value != "" && !strings.Contains(e.Error(), `"`+tc.value+`"`) {
				t.Errorf("error %q does not quote the value %q", e.Error(), tc.value)
			}
			if !strings.Contains(e.Error(), tc.msg) {
				t.Errorf("error = %q\nwant it to contain %q", e.Error(), tc.msg)
			}
			if !strings.Contains(e.Want, tc.want) || !strings.Contains(e.Error(), "; want "+e.Want) {
				t.Errorf("error = %q (want %q)\nwant the fix to contain %q", e.Error(), e.Want, tc.want)
			}
			if !strings.HasPrefix(e.Error(), "config: "+tc.key+": ") {
				t.Errorf("error %q does not start with its key", e.Error())
			}
			if e.Line == 0 && tc.value != "" {
				t.Errorf("error %v has no line for a value written in the file", e)
			}
		})
	}
}

// Valid configurations, and what they mean.
func TestProfileValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"cloud default", "prefix: p\n", func(t *testing.T, c *Config) {
			if c.Cloud != CloudAWS || c.Local() || c.VolumeKind() != VolumeEBS {
				t.Errorf("cloud %q, local %v, volume kind %q; want aws, false, ebs", c.Cloud, c.Local(), c.VolumeKind())
			}
		}},
		{"cloud auto keeps the AWS defaults", "prefix: p\ncloud: auto\nvolume: {kind: ebs}\n", func(t *testing.T, c *Config) {
			if c.Local() || len(c.Endpoints) != 2 || len(c.Env) != 4 || c.VolumeKind() != VolumeEBS {
				t.Errorf("cloud auto: local %v, %d endpoints, %d env keys, volume %s", c.Local(), len(c.Endpoints), len(c.Env), c.VolumeKind())
			}
		}},
		{"cloud none drops the seed's AWS defaults", local, func(t *testing.T, c *Config) {
			if !c.Local() {
				t.Error("Local() = false")
			}
			if len(c.Endpoints) != 0 {
				t.Errorf("endpoints %v: the seed's defaults are SSM parameters", c.Endpoints)
			}
			if len(c.Env) != 0 {
				t.Errorf("env %v: the seed's defaults are SSM parameters", c.Env)
			}
			if c.VolumeKind() != VolumeDirectory {
				t.Errorf("volume kind %q, want directory", c.VolumeKind())
			}
			if p := c.Parameters(); len(p) != 0 {
				t.Errorf("Parameters() = %v off AWS", p)
			}
		}},
		{"cloud none keeps what the file writes", local + "env:\n  GRAFANA_ADMIN_USER: {value: admin}\n", func(t *testing.T, c *Config) {
			if len(c.Env) != 1 || *c.Env["GRAFANA_ADMIN_USER"].Value != "admin" {
				t.Errorf("env %v", c.Env)
			}
		}},
		{"cloud none, empty endpoints written", local + "endpoints: {}\n", func(t *testing.T, c *Config) {
			if len(c.Endpoints) != 0 {
				t.Errorf("endpoints %v", c.Endpoints)
			}
		}},
		{"cloud none, values from the local store", local + "env:\n  SMTP_PASSWORD: {optional: true, services: [alertmanager]}\n  GRAFANA_ADMIN_PASSWORD: {}\n  PROMETHEUS_PASSWORD: {generate: password}\n  WITH_PARAM: {parameter: /p/only/on/aws}\n", func(t *testing.T, c *Config) {
			if len(c.Env) != 4 || c.Env["GRAFANA_ADMIN_PASSWORD"].Value != nil {
				t.Errorf("env %v", c.Env)
			}
		}},
		{"directory needs only a mount point", local + "volume: {kind: directory, mount_point: /var/lib/acgs, id_parameter: '', device: '', fs_type: '', mount_options: ''}\n", func(t *testing.T, c *Config) {
			if c.VolumeKind() != VolumeDirectory || c.Volume.MountPoint != "/var/lib/acgs" {
				t.Errorf("volume %+v", c.Volume)
			}
		}},
		{"device without a volume id", local + "volume: {kind: device, device: /dev/sdb, id_parameter: ''}\n", func(t *testing.T, c *Config) {
			if c.VolumeKind() != VolumeDevice || c.Volume.Device != "/dev/sdb" {
				t.Errorf("volume %+v", c.Volume)
			}
		}},
		{"device on AWS", "prefix: p\nvolume: {kind: device, device: /dev/nvme1n1, id_parameter: ''}\n", func(t *testing.T, c *Config) {
			if c.VolumeKind() != VolumeDevice {
				t.Errorf("volume kind %q", c.VolumeKind())
			}
		}},
		{"the acgs profile", local + acgsEnv + `compose: {env_file: /etc/acgs/acgs.env}
secrets: {file: /etc/acgs/operator.env}
certificates:
  prometheus: {key_file: certs/prometheus.key, cert_file: certs/prometheus.crt, owner: '65534:65534', dns_names: [prometheus], ips: ['{private_ip}', '10.0.0.5']}
templates:
  - {source: prometheus/web.yml.tmpl, target: prometheus/web.yml}
  - {source: alertmanager/alertmanager.yml.tmpl, target: alertmanager/alertmanager.yml, secret: true, owner: '65534:65534'}
backup: {location: /var/backups/acgs, keep: 14, stop_services: [grafana], prometheus_service: prometheus}
smoke: {profile: acgs, alertmanager_url: 'https://127.0.0.1:9093', prometheus_url: 'https://127.0.0.1:9090', user: acgs_monitor, password_key: PROMETHEUS_PASSWORD, ca_file: certs/prometheus.crt, queries: 20}
`, func(t *testing.T, c *Config) {
			if c.EnvFilePath() != "/etc/acgs/acgs.env" || c.Smoke.Profile != ProfileACGS || c.Backup.Keep != 14 || len(c.Templates) != 2 {
				t.Errorf("config %+v", c)
			}
			if ips := c.Certificates["prometheus"].IPs; len(ips) != 2 || ips[0] != "{private_ip}" {
				t.Errorf("certificate IPs %v: placeholders are expanded by the host, not Parse", ips)
			}
		}},
		{"backup in S3 on AWS", "prefix: p\nenv:\n  BACKUP_ENCRYPTION_KEY: {parameter: /p/backup/key, generate: age}\nbackup: {location: 's3://{prefix}-backups/acgs/'}\n", func(t *testing.T, c *Config) {
			if c.Backup.Location != "s3://p-backups/acgs/" {
				t.Errorf("location %q", c.Backup.Location)
			}
		}},
		{"no backup location needs no key", local + "backup: {keep: 3}\n", func(t *testing.T, c *Config) {
			if _, ok := c.Env[c.Backup.KeyEnv]; ok {
				t.Errorf("env %v", c.Env)
			}
		}},
		{"env file path default", local, func(t *testing.T, c *Config) {
			if c.EnvFilePath() != "/opt/acgs/.env" {
				t.Errorf("EnvFilePath() = %q", c.EnvFilePath())
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tc.check(t, c)
		})
	}
}

// Defaults() is the configuration on AWS: cloud none in code needs the
// same care as in a file (Validate checks a Config built in code).
func TestValidateLocalInCode(t *testing.T) {
	c := Defaults()
	c.Cloud = CloudNone
	err := c.Validate()
	for _, key := range []string{"bundle.source", "endpoints"} {
		findError(t, err, key)
	}
	c.Bundle.Source = "/usr/share/monagent/examples/acgs"
	c.Endpoints = map[string]string{}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	if c.VolumeKind() != VolumeDirectory {
		t.Errorf("VolumeKind() = %q off AWS with no kind written, want directory", c.VolumeKind())
	}
	c.Volume.Kind = VolumeEBS
	findError(t, c.Validate(), "volume.kind")
}
