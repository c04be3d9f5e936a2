package simapi

import (
	"bytes"
	"errors"
	"io"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes a scenario section into v, rejecting keys v does not
// have, so that a misspelt key fails the scenario instead of silently
// seeding (or injecting) nothing. An empty section leaves v as it is.
func DecodeStrict(node *yaml.Node, v any) error {
	// yaml.Node.Decode has no strict mode; a Decoder has, so the node goes
	// back through YAML text.
	b, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
