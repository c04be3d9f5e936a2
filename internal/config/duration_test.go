package config

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"90s", 90 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{" 5m ", 5 * time.Minute, false},
		{"120", 0, true},
		{"soon", 0, true},
	}
	for _, tc := range tests {
		d, err := parseDuration(tc.in)
		if (err != nil) != tc.wantErr || d != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, error %v", tc.in, d, err, tc.want, tc.wantErr)
		}
	}
}
