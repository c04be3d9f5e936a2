package ssmsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/rig/awssim/simapi"
	"gopkg.in/yaml.v3"
)

// underPath lists, sorted, the names under path after the name after
// (exclusive). Non-recursive means direct children only. s.mu must be held.
func (s *Service) underPath(path string, recursive bool, after string) []string {
	prefix := strings.TrimSuffix(path, "/") + "/"
	var names []string
	for name := range s.params {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || rest == "" || (!recursive && strings.Contains(rest, "/")) {
			continue
		}
		if after != "" && name <= after {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// load reads the parameters a previous run persisted, if any.
func (s *Service) load() error {
	b, err := os.ReadFile(s.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ssmsim: %w", err)
	}
	var list []*parameter
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("ssmsim: %s: %w", s.file, err)
	}
	for i, p := range list {
		if p == nil || p.Name == "" {
			return fmt.Errorf("ssmsim: %s: entry %d has no name", s.file, i)
		}
		s.params[p.Name] = p
	}
	return nil
}

// saveLocked writes every parameter to the data file atomically, mode 0600:
// values are secrets. s.mu must be held.
func (s *Service) saveLocked() error {
	list := make([]*parameter, 0, len(s.params))
	for _, p := range s.params {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("encode parameters: %w", err)
	}
	if err := atomicfile.WriteFile(s.file, b, 0o600); err != nil {
		return fmt.Errorf("save parameters: %w", err)
	}
	return nil
}

// seedSection is the scenario's "ssm:" section.
type seedSection struct {
	Parameters []seedParameter `yaml:"parameters"`
}

type seedParameter struct {
	Name        string `yaml:"name"`
	Value       string `yaml:"value"`
	Type        string `yaml:"type"` // String when left out
	KeyID       string `yaml:"key_id"`
	Description string `yaml:"description"`
}

// Seed creates or overwrites the parameters of a scenario's "ssm:" section:
//
//	parameters:
//	  - {name: /p/db/password, value: s3cret, type: SecureString}
func (s *Service) Seed(section *yaml.Node) error {
	var sec seedSection
	if err := simapi.DecodeStrict(section, &sec); err != nil {
		return fmt.Errorf("ssm: %w", err)
	}
	for i, sp := range sec.Parameters {
		if sp.Type == "" {
			sp.Type = "String"
		}
		in, _ := json.Marshal(map[string]any{
			"Name": sp.Name, "Value": sp.Value, "Type": sp.Type,
			"KeyId": sp.KeyID, "Description": sp.Description, "Overwrite": true,
		})
		if _, aerr := s.putParameter(in); aerr != nil {
			return fmt.Errorf("ssm: parameters[%d] (%s): %w", i, sp.Name, aerr)
		}
	}
	return nil
}
