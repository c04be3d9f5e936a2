package simapi

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDecodeStrict(t *testing.T) {
	type section struct {
		Name  string `yaml:"name"`
		Count int    `yaml:"count"`
	}
	tests := []struct {
		name, doc string
		want      section
		wantErr   string
	}{
		{name: "known keys", doc: "s: {name: a, count: 2}\n", want: section{Name: "a", Count: 2}},
		{name: "misspelt key", doc: "s: {name: a, cuont: 2}\n", wantErr: "cuont"},
		{name: "wrong type", doc: "s: {count: many}\n", wantErr: "many"},
		{name: "empty section", doc: "s:\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var top map[string]yaml.Node
			if err := yaml.Unmarshal([]byte(tt.doc), &top); err != nil {
				t.Fatal(err)
			}
			node := top["s"]
			var got section
			err := DecodeStrict(&node, &got)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("DecodeStrict = %v, want an error naming %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatalf("DecodeStrict: %v", err)
			case tt.wantErr == "" && got != tt.want:
				t.Errorf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
}
