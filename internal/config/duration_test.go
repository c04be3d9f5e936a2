package config

import (
	"encoding/json"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"90s", 90 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"'5m'", 5 * time.Minute, false},
		{"120", 0, true},
		{"soon", 0, true},
		{"[1]", 0, true},
	}
	for _, tc := range tests {
		var d Duration
		err := yaml.Unmarshal([]byte(tc.in), &d)
		if (err != nil) != tc.wantErr || d.Duration != tc.want {
			t.Errorf("Unmarshal(%q) = %v, %v; want %v, error %v", tc.in, d, err, tc.want, tc.wantErr)
		}
	}
}

func TestDurationMarshal(t *testing.T) {
	d := Duration{150 * time.Second}
	y, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
	}{d})
	if err != nil || string(y) != "d: 2m30s\n" {
		t.Errorf("yaml.Marshal = %q, %v; want d: 2m30s", y, err)
	}
	j, err := json.Marshal(d)
	if err != nil || string(j) != `"2m30s"` {
		t.Errorf("json.Marshal = %s, %v; want \"2m30s\"", j, err)
	}
	var back Duration
	if err := json.Unmarshal(j, &back); err != nil || back != d {
		t.Errorf("json round trip = %v, %v; want %v", back, err, d)
	}
	if err := json.Unmarshal([]byte(`150`), &back); err == nil {
		t.Error("json.Unmarshal accepted a bare number")
	}
}
