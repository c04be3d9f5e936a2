package ssmsim

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
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
		s.params[p.Name] = append(s.params[p.Name], p)
	}
	for _, versions := range s.params {
		slices.SortFunc(versions, func(a, b *parameter) int { return cmp.Compare(a.Version, b.Version) })
	}
	return nil
}

// saveLocked writes every version of every parameter to the data file
// atomically, mode 0600: values are secrets. s.mu must be held.
func (s *Service) saveLocked() error {
	list := []*parameter{}
	for _, name := range slices.Sorted(maps.Keys(s.params)) {
		list = append(list, s.params[name]...)
	}
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
		// A scenario says what the parameter is: one of another type is
		// replaced, where PutParameter would refuse the type change.
		if err := s.dropOtherType(sp.Name, sp.Type); err != nil {
			return fmt.Errorf("ssm: parameters[%d] (%s): %w", i, sp.Name, err)
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

// dropOtherType deletes parameter name if it exists with a type other than
// typ.
func (s *Service) dropOtherType(name, typ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.current(name)
	if cur == nil || cur.Type == typ {
		return nil
	}
	old := s.params[name]
	delete(s.params, name)
	if err := s.saveLocked(); err != nil {
		s.restoreLocked(name, old)
		return err
	}
	return nil
}
