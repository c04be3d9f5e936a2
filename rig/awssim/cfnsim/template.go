package cfnsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// AWS limits a TemplateBody to 51,200 bytes.
const maxTemplateBody = 51200

// maxTemplateNodes bounds the work of expanding YAML aliases, so that a
// small template cannot make the simulator build a huge tree.
const maxTemplateNodes = 100000

// Defaults of CreationPolicy.ResourceSignal, as AWS documents them.
const (
	defaultSignalCount   = 1
	defaultSignalTimeout = 5 * time.Minute
	maxSignalTimeout     = 12 * time.Hour
)

// template is the part of a CloudFormation template the simulator acts on.
type template struct {
	Description string
	Parameters  map[string]*string // name → Default (nil: none)
	Resources   []resourceSpec     // sorted by logical id
}

// resourceSpec is one resource; Count and Timeout are unresolved values
// (a number, a string or a {"Ref": param}) when Signal is set.
type resourceSpec struct {
	LogicalID string
	Type      string
	Signal    bool
	Count     any
	Timeout   any
}

// templateError is a "Template format error" that CreateStack reports as a
// ValidationError.
type templateError struct{ msg string }

func (e *templateError) Error() string { return "Template format error: " + e.msg }

func templateErrorf(format string, args ...any) error {
	return &templateError{msg: fmt.Sprintf(format, args...)}
}

// parseTemplate reads a JSON or YAML template. YAML short-form intrinsic
// functions (!Ref, !Sub, !GetAtt, ...) become their long form
// ({"Ref": ...}, {"Fn::Sub": ...}) so that both syntaxes read the same.
func parseTemplate(body string) (*template, error) {
	var (
		root any
		err  error
	)
	if strings.HasPrefix(strings.TrimSpace(body), "{") {
		root, err = parseJSON(body)
	} else {
		root, err = parseYAML(body)
	}
	if err != nil {
		return nil, err
	}
	doc, ok := root.(map[string]any)
	if !ok {
		return nil, templateErrorf("the template must be a JSON object or a YAML mapping")
	}
	t := &template{Parameters: map[string]*string{}}
	if d, ok := doc["Description"].(string); ok {
		t.Description = d
	}
	if err := t.readParameters(doc["Parameters"]); err != nil {
		return nil, err
	}
	if err := t.readResources(doc["Resources"]); err != nil {
		return nil, err
	}
	return t, nil
}

func parseJSON(body string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, templateErrorf("JSON not well-formed. (%v)", err)
	}
	if dec.More() {
		return nil, templateErrorf("JSON not well-formed. (data after the top-level object)")
	}
	return v, nil
}

func parseYAML(body string) (any, error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(body), &n); err != nil {
		return nil, templateErrorf("YAML not well-formed. (%v)", err)
	}
	budget := maxTemplateNodes
	return fromYAML(&n, &budget)
}

// fromYAML turns a YAML node into the values encoding/json would produce,
// keeping scalars as strings.
func fromYAML(n *yaml.Node, budget *int) (any, error) {
	if *budget--; *budget < 0 {
		return nil, templateErrorf("template too large after expanding YAML aliases")
	}
	if fn, ok := intrinsic(n.Tag); ok {
		plain := *n
		plain.Tag = ""
		v, err := fromYAML(&plain, budget)
		if err != nil {
			return nil, err
		}
		return map[string]any{fn: v}, nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return fromYAML(n.Content[0], budget)
	case yaml.AliasNode:
		return fromYAML(n.Alias, budget)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := fromYAML(c, budget)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := fromYAML(n.Content[i+1], budget)
			if err != nil {
				return nil, err
			}
			out[n.Content[i].Value] = v
		}
		return out, nil
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return n.Value, nil
	}
	return nil, templateErrorf("unsupported YAML node at line %d", n.Line)
}

// intrinsic maps a YAML short-form tag to its long-form key: !Ref → Ref,
// !Sub → Fn::Sub. Standard tags (!!str) are not intrinsics.
func intrinsic(tag string) (string, bool) {
	if !strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "!!") || len(tag) < 2 {
		return "", false
	}
	switch name := tag[1:]; name {
	case "Ref", "Condition":
		return name, true
	default:
		return "Fn::" + name, true
	}
}

func (t *template) readParameters(v any) error {
	if v == nil {
		return nil
	}
	params, ok := v.(map[string]any)
	if !ok {
		return templateErrorf("Parameters must be an object")
	}
	for name, p := range params {
		decl, ok := p.(map[string]any)
		if !ok {
			return templateErrorf("[/Parameters/%s] parameter must be an object", name)
		}
		if _, ok := decl["Type"]; !ok {
			return templateErrorf("[/Parameters/%s] Every Parameters object must contain a Type member.", name)
		}
		var def *string
		if d, ok := decl["Default"]; ok {
			s := scalarString(d)
			def = &s
		}
		t.Parameters[name] = def
	}
	return nil
}

func (t *template) readResources(v any) error {
	res, ok := v.(map[string]any)
	if !ok || len(res) == 0 {
		return templateErrorf("At least one Resources member must be defined.")
	}
	ids := make([]string, 0, len(res))
	for id := range res {
		ids = append(ids, id)
	}
	// Real CloudFormation creates independent resources in parallel; a
	// sorted order keeps the simulator's events deterministic.
	sort.Strings(ids)
	for _, id := range ids {
		spec, err := readResource(id, res[id])
		if err != nil {
			return err
		}
		t.Resources = append(t.Resources, spec)
	}
	return nil
}

var logicalIDPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,255}$`)

func readResource(id string, v any) (resourceSpec, error) {
	if !logicalIDPattern.MatchString(id) {
		return resourceSpec{}, templateErrorf("Resource name %s is non alphanumeric.", id)
	}
	decl, ok := v.(map[string]any)
	if !ok {
		return resourceSpec{}, templateErrorf("[/Resources/%s] resource definition is malformed", id)
	}
	typ, ok := decl["Type"].(string)
	if !ok || typ == "" {
		return resourceSpec{}, templateErrorf("[/Resources/%s] Every Resources object must contain a Type member.", id)
	}
	spec := resourceSpec{LogicalID: id, Type: typ}
	policy, ok := decl["CreationPolicy"].(map[string]any)
	if !ok {
		return spec, nil
	}
	sig, ok := policy["ResourceSignal"]
	if !ok {
		return spec, nil
	}
	signal, ok := sig.(map[string]any)
	if !ok && sig != nil {
		return resourceSpec{}, templateErrorf("[/Resources/%s/CreationPolicy/ResourceSignal] must be an object", id)
	}
	spec.Signal = true
	spec.Count = signal["Count"]
	spec.Timeout = signal["Timeout"]
	return spec, nil
}

// signalPolicy is a resolved CreationPolicy.ResourceSignal.
type signalPolicy struct {
	Count   int
	Timeout time.Duration
}

// resolveSignal evaluates Count and Timeout against the stack's parameters.
func (r resourceSpec) resolveSignal(params map[string]string) (signalPolicy, error) {
	p := signalPolicy{Count: defaultSignalCount, Timeout: defaultSignalTimeout}
	if r.Count != nil {
		s, err := resolveScalar(r.Count, params)
		if err != nil {
			return p, fmt.Errorf("[/Resources/%s/CreationPolicy/ResourceSignal/Count] %w", r.LogicalID, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return p, templateErrorf("[/Resources/%s/CreationPolicy/ResourceSignal/Count] %q is not a positive integer", r.LogicalID, s)
		}
		p.Count = n
	}
	if r.Timeout != nil {
		s, err := resolveScalar(r.Timeout, params)
		if err != nil {
			return p, fmt.Errorf("[/Resources/%s/CreationPolicy/ResourceSignal/Timeout] %w", r.LogicalID, err)
		}
		d, err := parseISODuration(s)
		if err != nil {
			return p, templateErrorf("[/Resources/%s/CreationPolicy/ResourceSignal/Timeout] %v", r.LogicalID, err)
		}
		if d > maxSignalTimeout {
			return p, templateErrorf("[/Resources/%s/CreationPolicy/ResourceSignal/Timeout] %s exceeds the maximum of PT12H", r.LogicalID, s)
		}
		p.Timeout = d
	}
	return p, nil
}

// resolveScalar evaluates a literal or a {"Ref": param}.
func resolveScalar(v any, params map[string]string) (string, error) {
	switch v := v.(type) {
	case string, json.Number, float64, bool:
		return scalarString(v), nil
	case map[string]any:
		if name, ok := v["Ref"].(string); ok && len(v) == 1 {
			val, ok := params[name]
			if !ok {
				return "", templateErrorf("Unresolved resource dependencies [%s] in the Resources block of the template", name)
			}
			return val, nil
		}
	}
	return "", templateErrorf("awssim supports a literal or a Ref to a parameter here")
}

func scalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// parseISODuration reads the ISO 8601 durations CreationPolicy uses: PT15M,
// PT5S, PT1H30M, P1D.
func parseISODuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration such as PT15M", s)
	}
	units := []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", s, err)
		}
		d += time.Duration(n) * u
	}
	if d <= 0 {
		return 0, errors.New("the duration must be longer than zero")
	}
	return d, nil
}
