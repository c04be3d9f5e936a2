package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// autoVolume asks cloud: auto for an explicit volume.kind: its default
// differs on and off AWS, and the data must not move with the answer.
func (k *checker) autoVolume() {
	if k.c.Cloud == CloudAuto && k.c.Volume.Kind == "" {
		k.fail("volume.kind", "", "is empty while cloud is auto", "ebs, device or directory: the default differs on and off AWS, and the data must not follow it")
	}
}

func (k *checker) secrets() {
	s := k.c.Secrets
	k.absDir("secrets.dir", s.Dir, "/var/lib/monagent/secrets")
	if within(k.sample("secrets.dir", s.Dir), k.sample("bundle.dir", k.c.Bundle.Dir)) {
		k.fail("secrets.dir", s.Dir, "is inside bundle.dir ("+k.c.Bundle.Dir+"), which the bundle step replaces",
			"a directory of its own, such as /var/lib/monagent/secrets")
	}
	k.outsideSource("secrets.dir", s.Dir)
	if s.File == "" {
		return
	}
	k.absDir("secrets.file", s.File, "/etc/acgs/operator.env")
	k.outsideSource("secrets.file", s.File)
	file := k.sample("secrets.file", s.File)
	if file == k.sample("compose.env_file", k.c.EnvFilePath()) {
		k.fail("secrets.file", s.File, "is also the environment file (compose.env_file), which every run rewrites",
			"a file of its own, such as /etc/acgs/operator.env: the operator's secrets would be erased")
	}
	if within(file, k.sample("secrets.dir", s.Dir)) {
		k.fail("secrets.file", s.File, "is inside secrets.dir ("+s.Dir+"), the host's generated secrets", "a file of its own, such as /etc/acgs/operator.env")
	}
	if k.c.Cloud == CloudAWS {
		k.fail("secrets.file", s.File, "is set while cloud is aws", `"", or cloud: none or auto: on AWS the operator's secrets are SSM parameters`)
	}
}

// outsideSource refuses a path of secrets inside bundle.source: the
// bundle step copies every file there into the stack directory, 0644.
func (k *checker) outsideSource(key, p string) {
	src := k.c.Bundle.Source
	if src == "" || p == "" {
		return
	}
	if within(k.sample(key, p), k.sample("bundle.source", src)) {
		k.fail(key, p, "is inside bundle.source ("+src+"), which the bundle step copies into the stack directory readable by all",
			"a path outside bundle.source")
	}
}

// envFiles maps the file of each env key to the key that writes it.
func (k *checker) envFiles() map[string]string {
	files := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(k.c.Env)) {
		if f := k.c.Env[name].File; f != "" {
			if _, dup := files[f]; !dup {
				files[f] = "env." + name + ".file"
			}
		}
	}
	return files
}

func (k *checker) certificates() {
	// A file written twice by the env step never converges: each run
	// writes one content over the other.
	files := k.envFiles()
	for _, name := range slices.Sorted(maps.Keys(k.c.Certificates)) {
		key := "certificates." + name
		c := k.c.Certificates[name]
		if !serviceRE.MatchString(name) {
			k.fail(key, name, "is not a certificate name", "letters, digits, '.', '_' and '-', such as prometheus")
		}
		for _, f := range []struct{ key, path, example string }{
			{key + ".key_file", c.KeyFile, "certs/prometheus.key"},
			{key + ".cert_file", c.CertFile, "certs/prometheus.crt"},
		} {
			k.relPath(f.key, f.path, f.example)
			if other, dup := files[f.path]; dup && f.path != "" {
				k.fail(f.key, f.path, "is also written by "+other, "a file of its own")
			}
			files[f.path] = f.key
		}
		if c.Owner != "" && !isUIDGID(k.sample(key+".owner", c.Owner)) {
			k.fail(key+".owner", c.Owner, "is not a numeric uid:gid", "uid:gid in numbers, such as 65534:65534")
		}
		for i, d := range c.DNSNames {
			if sd := k.sample(key, d); sd == "" || strings.ContainsAny(sd, " /:") {
				k.fail(fmt.Sprintf("%s.dns_names[%d]", key, i), d, "is not a DNS name", "a host name such as prometheus or monitoring.example.com")
			}
		}
		for i, ip := range c.IPs {
			if net.ParseIP(k.sample(key, ip)) == nil {
				k.fail(fmt.Sprintf("%s.ips[%d]", key, i), ip, "is not an IP address", "an address such as 10.0.0.5 or {private_ip}")
			}
		}
	}
}

func (k *checker) templates() {
	targets := map[string]int{}
	written := k.envFiles()
	for _, name := range slices.Sorted(maps.Keys(k.c.Certificates)) {
		c := k.c.Certificates[name]
		for f, key := range map[string]string{c.KeyFile: "certificates." + name + ".key_file", c.CertFile: "certificates." + name + ".cert_file"} {
			if _, dup := written[f]; !dup && f != "" {
				written[f] = key
			}
		}
	}
	for i, t := range k.c.Templates {
		key := "templates[" + strconv.Itoa(i) + "]"
		k.relPath(key+".source", t.Source, "prometheus/web.yml.tmpl")
		k.relPath(key+".target", t.Target, "prometheus/web.yml")
		if t.Source == t.Target && t.Source != "" {
			k.fail(key+".target", t.Target, "is the template itself", "a file of its own, such as the source without .tmpl")
		}
		if j, dup := targets[t.Target]; dup {
			k.fail(key+".target", t.Target, fmt.Sprintf("is also the target of templates[%d]", j), "one template per file")
		} else if other, dup := written[t.Target]; dup && t.Target != "" {
			k.fail(key+".target", t.Target, "is also written by "+other, "a file of its own")
		}
		targets[t.Target] = i
		switch {
		case t.Owner != "" && !isUIDGID(k.sample(key+".owner", t.Owner)):
			k.fail(key+".owner", t.Owner, "is not a numeric uid:gid", "uid:gid in numbers, such as 65534:65534")
		case t.Owner != "" && !t.Secret:
			k.fail(key+".owner", t.Owner, "is set on a template that is not secret", "secret: true (the file is then 0600 for that owner), or no owner (0644)")
		}
	}
}

func (k *checker) backup() {
	b := k.c.Backup
	if b.Keep < 1 || b.Keep > 1000 {
		k.fail("backup.keep", strconv.Itoa(b.Keep), "is out of range", "how many archives to keep, from 1 to 1000, such as 7")
	}
	const locationWant = "s3://BUCKET/PREFIX/ or an absolute directory such as /var/backups/acgs-monitoring"
	switch loc := k.sample("backup.location", b.Location); {
	case loc == "":
	case strings.HasPrefix(loc, "s3://"):
		if u, err := url.Parse(loc); err != nil || !bucketRE.MatchString(u.Host) {
			k.fail("backup.location", b.Location, "does not name an S3 bucket", locationWant)
		} else if k.c.Cloud == CloudNone {
			k.fail("backup.location", b.Location, "is in S3 while cloud is none", "a local directory such as /var/backups/acgs-monitoring")
		}
	case strings.HasPrefix(loc, "/"):
		k.absDir("backup.location", b.Location, "/var/backups/acgs-monitoring")
		for _, d := range []struct{ key, dir string }{{"compose.data_dir", k.c.StackDataDir()}, {"bundle.dir", k.c.Bundle.Dir},
			{"secrets.dir", k.c.Secrets.Dir}, {"bundle.source", k.c.Bundle.Source}} {
			if d.dir != "" && (within(loc, k.sample(d.key, d.dir)) || within(k.sample(d.key, d.dir), loc)) {
				k.fail("backup.location", b.Location, "overlaps "+d.key+" ("+d.dir+"): every archive would hold the ones before it",
					"a directory of its own, such as /var/backups/acgs-monitoring")
			}
		}
	default:
		k.fail("backup.location", b.Location, "is not a backup location", locationWant)
	}
	if b.Location == "" {
		return
	}
	v, ok := k.c.Env[b.KeyEnv]
	switch {
	case !ok:
		k.fail("backup.key_env", b.KeyEnv, "is not a key of env", "the env key holding the archives' age identity, declared with generate: age")
	case v.Generate != GenerateAge:
		k.fail("backup.key_env", b.KeyEnv, "names a key without generate: age", "generate: age on env."+b.KeyEnv+", so the key is made once and kept")
	}
	for i, s := range b.StopServices {
		if !serviceRE.MatchString(s) {
			k.fail(fmt.Sprintf("backup.stop_services[%d]", i), s, "is not a service name", "the name of a service in the compose file")
		}
	}
	if p := b.PrometheusService; p != "" && !serviceRE.MatchString(p) {
		k.fail("backup.prometheus_service", p, "is not a service name", "the name of the Prometheus service in the compose file")
	}
}

// smokeProfile checks the keys of the acgs smoke profile.
func (k *checker) smokeProfile() {
	s := k.c.Smoke
	switch s.Profile {
	case ProfileSeed:
		return
	case ProfileACGS:
	default:
		k.fail("smoke.profile", s.Profile, "is not a smoke profile", "seed (the first guide's stack) or acgs (TLS, basic auth, Alertmanager)")
		return
	}
	if p, err := url.Parse(k.sample("smoke.alertmanager_url", s.AlertmanagerURL)); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		k.fail("smoke.alertmanager_url", s.AlertmanagerURL, "is not an http(s) URL", "Alertmanager's base URL as seen from the host, such as https://127.0.0.1:9093")
	}
	if s.PasswordKey != "" {
		if _, ok := k.c.Env[s.PasswordKey]; !ok {
			k.fail("smoke.password_key", s.PasswordKey, "is not a key of env", "the env key holding the basic-auth password, such as PROMETHEUS_PASSWORD")
		}
		if s.User == "" {
			k.fail("smoke.user", "", "is empty while smoke.password_key is set", "the basic-auth user, such as acgs_monitor")
		}
	}
	if s.Queries < 1 || s.Queries > 1000 {
		k.fail("smoke.queries", strconv.Itoa(s.Queries), "is out of range", "how many queries time the p95, from 1 to 1000, such as 20")
	}
}
