package config

import (
	"path/filepath"
	"testing"
)

// TestACGSExample keeps the ACGS profile's example valid, on AWS and off.
func TestACGSExample(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "acgs", "monagent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cloud != CloudAuto || c.Smoke.Profile != ProfileACGS || c.VolumeKind() != VolumeDirectory || len(c.Endpoints) != 0 {
		t.Errorf("example: cloud %s, profile %s, volume %s, %d endpoints", c.Cloud, c.Smoke.Profile, c.VolumeKind(), len(c.Endpoints))
	}
	if got := c.EnvFilePath(); got != "/etc/acgs/monitoring.env" {
		t.Errorf("env file %s, want the guide's /etc/acgs/monitoring.env", got)
	}
	if c.Env["PROMETHEUS_PASSWORD"].Generate != GeneratePassword || c.Env[c.Backup.KeyEnv].Generate != GenerateAge {
		t.Error("the example's Prometheus password or backup key is not generated")
	}
	local := *c
	local.Cloud = CloudNone
	if err := local.Validate(); err != nil {
		t.Errorf("the example is not valid off AWS: %v", err)
	}
}
