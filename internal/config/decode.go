package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxAliases bounds alias dereferences: each one re-walks a subtree, so
// a small file could otherwise cost time out of all proportion to its size.
const maxAliases = 100

const (
	nullTag  = "!!null"
	strTag   = "!!str"
	boolTag  = "!!bool"
	intTag   = "!!int"
	floatTag = "!!float"
	timeTag  = "!!timestamp"
)

var durationType = reflect.TypeFor[Duration]()

// MaxSize bounds the configuration file: a real one is a few KiB, and
// a file of megabytes is a mistake that must not cost minutes to parse.
const MaxSize = 1 << 20

// Load reads the configuration file at path and parses it with Parse.
// Every error names the file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, readError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, readError(path, err)
	}
	c, errs := parse(data)
	if len(errs) > 0 {
		return nil, join(errs, path)
	}
	return c, nil
}

func readError(path string, err error) *Error {
	problem := "cannot be read"
	if errors.Is(err, fs.ErrNotExist) {
		problem = "does not exist"
	} else if pe, ok := errors.AsType[*fs.PathError](err); ok {
		problem = "cannot be read: " + pe.Err.Error()
	}
	return &Error{File: path, Problem: problem, Want: "a YAML configuration file (see docs/configuration.md)", Err: err}
}

// Parse decodes a configuration document over the defaults, validates it
// and expands {prefix}. Keys left out keep their defaults; an env or
// endpoints mapping that is written replaces the default one wholly.
// The error, if any, is an *Error or an errors.Join of them, reporting
// every problem found.
func Parse(data []byte) (*Config, error) {
	c, errs := parse(data)
	if len(errs) > 0 {
		return nil, join(errs, "")
	}
	return c, nil
}

func parse(data []byte) (*Config, []*Error) {
	if len(data) > MaxSize {
		return nil, []*Error{{Problem: fmt.Sprintf("is larger than %d bytes", MaxSize),
			Want: "a configuration file of at most 1 MiB (a real one is a few KiB)"}}
	}
	root, err := parseNode(data)
	if err != nil {
		return nil, []*Error{err}
	}
	c := rawDefaults()
	d := decoder{lines: make(map[string]int)}
	d.decode("", root, reflect.ValueOf(c).Elem())
	localDefaults(c, d.lines)
	// sha256sum prints lower case; accept a digest pasted in upper case.
	c.Docker.ComposePlugin.SHA256 = strings.ToLower(c.Docker.ComposePlugin.SHA256)
	out, xerrs := c.expandLoad(d.lines)
	if errs := slices.Concat(d.errs, xerrs, check(c, d.lines)); len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// parseNode returns the root mapping of the single document in data.
func parseNode(data []byte) (root *yaml.Node, e *Error) {
	defer func() {
		// A malformed file must fail the load, not crash the agent, even
		// if the YAML library panics on it.
		if r := recover(); r != nil {
			root, e = nil, &Error{Problem: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, emptyError()
		}
		return nil, syntaxError(err, data)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err, data)
	default:
		return nil, &Error{Problem: "holds more than one YAML document", Want: "a single document", Line: extra.Line}
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, emptyError()
	}
	root = doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Value: written(root), Problem: "is " + kindOf(root) + " at the top level",
			Want: "a mapping of settings, such as prefix: monitoring-production", Line: root.Line}
	}
	return root, nil
}

func emptyError() *Error {
	return &Error{Problem: "no settings: the document is empty", Want: "a YAML mapping of settings, at least prefix: NAME"}
}

var (
	yamlLine    = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	placeholder = regexp.MustCompile(`\{[a-z_]+\}`)
)

// syntaxError turns the YAML library's "yaml: line N: msg" into an Error
// carrying the line, and explains the likeliest cause of a broken flow
// mapping: an unquoted {placeholder} inside {...} or [...].
func syntaxError(err error, data []byte) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if isParserProblem(msg) {
		// The parser, unlike the scanner, counts lines from 0 and leaves
		// out line "0".
		line++
	}
	e := &Error{Problem: "invalid YAML: " + msg, Line: line, Err: err}
	if strings.HasPrefix(msg, "did not find expected ','") && placeholder.Match(data) {
		e.Want = "strings with {placeholders} quoted inside {...} and [...], such as {parameter: '/{prefix}/name'}"
	}
	return e
}

// isParserProblem reports whether msg comes from the YAML parser rather
// than its scanner: the two report lines differently.
func isParserProblem(msg string) bool {
	switch msg {
	case "did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"did not find expected '-' indicator", "did not find expected <document start>",
		"did not find expected <stream-start>", "did not find expected key",
		"did not find expected node content", "found duplicate %TAG directive",
		"found duplicate %YAML directive", "found incompatible YAML document",
		"found undefined tag handle":
		return true
	}
	return false
}

// decoder walks the YAML node tree against the Config struct. Doing this
// by hand, rather than with yaml's own decoder, is what lets every error
// carry the dotted key and the line, and lets several be reported at once.
type decoder struct {
	lines   map[string]int // dotted key -> line where it is written
	errs    []*Error
	aliases int
}

func (d *decoder) fail(key string, n *yaml.Node, value, problem, want string) {
	d.errs = append(d.errs, newError(key, value, problem, want, n.Line))
}

// stopped reports whether the walk should give up: past maxErrors, more
// messages do not help, and past maxAliases more work does not either.
func (d *decoder) stopped() bool {
	return len(d.errs) > maxErrors || d.aliases > maxAliases
}

// decode stores n in v, which holds the default. A null leaves the default.
func (d *decoder) decode(key string, n *yaml.Node, v reflect.Value) {
	if d.stopped() {
		return
	}
	if n = d.resolve(key, n); n == nil || isNull(n) {
		return
	}
	if v.Type() == durationType {
		d.duration(key, n, v)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(key, n, v)
	case reflect.Map:
		d.mapping(key, n, v)
	case reflect.Slice:
		d.sequence(key, n, v)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(key, n, p.Elem())
		v.Set(p)
	case reflect.String, reflect.Bool, reflect.Int:
		d.scalar(key, n, v)
	default:
		panic(fmt.Sprintf("config: %s: no decoder for %s", key, v.Type()))
	}
}

// resolve follows aliases, counting them.
func (d *decoder) resolve(key string, n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		d.aliases++
		if d.aliases > maxAliases {
			d.fail(key, n, "", "uses too many aliases", fmt.Sprintf("at most %d", maxAliases))
			return nil
		}
		n = n.Alias
	}
	return n
}

func (d *decoder) structure(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(key, n, v.Type())
		return
	}
	names := fieldNames(v.Type())
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content) && !d.stopped(); i += 2 {
		name, ok := d.key(key, n.Content[i], seen)
		if !ok {
			continue
		}
		sub := joinKey(key, name)
		field := slices.Index(names, name)
		if field < 0 {
			d.fail(sub, n.Content[i], "", unknownProblem(name, names), "one of "+strings.Join(names, ", "))
			continue
		}
		d.lines[sub] = n.Content[i].Line
		d.decode(sub, n.Content[i+1], v.Field(field))
	}
}

// mapping replaces v with a new map: a written env or endpoints mapping
// stands on its own rather than merging into the defaults.
func (d *decoder) mapping(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(key, n, v.Type())
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content) && !d.stopped(); i += 2 {
		name, ok := d.key(key, n.Content[i], seen)
		if !ok {
			continue
		}
		sub := joinKey(key, name)
		d.lines[sub] = n.Content[i].Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(sub, n.Content[i+1], elem)
		m.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

func (d *decoder) sequence(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.mismatch(key, n, v.Type())
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		sub := fmt.Sprintf("%s[%d]", key, i)
		d.lines[sub] = item.Line
		d.decode(sub, item, s.Index(i))
	}
	v.Set(s)
}

// key returns the name of mapping key n, reporting keys that are not
// plain names and keys written twice.
func (d *decoder) key(parent string, n *yaml.Node, seen map[string]int) (string, bool) {
	if n = d.resolve(parent, n); n == nil {
		return "", false
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge":
		d.fail(joinKey(parent, n.Value), n, "", "is a merge key, which is not supported", "the keys written out")
		return "", false
	case n.Kind != yaml.ScalarNode || isNull(n):
		d.fail(parent, n, written(n), "has a key that is "+kindOf(n), "a plain name as the key")
		return "", false
	}
	if first, dup := seen[n.Value]; dup {
		d.fail(joinKey(parent, n.Value), n, "", fmt.Sprintf("is written twice (first on line %d)", first), "each key once")
		return "", false
	}
	seen[n.Value] = n.Line
	return n.Value, true
}

func (d *decoder) scalar(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.mismatch(key, n, v.Type())
		return
	}
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.String:
		switch tag {
		case strTag, intTag, floatTag, boolTag, timeTag:
			// Take the text as written: "1.10" must not become 1.1.
			v.SetString(n.Value)
			return
		}
	case reflect.Bool:
		var b bool
		if tag == boolTag && n.Decode(&b) == nil {
			v.SetBool(b)
			return
		}
	case reflect.Int:
		var i int
		if tag == intTag {
			if err := n.Decode(&i); err != nil {
				d.fail(key, n, n.Value, "is out of range", wantFor(v.Type()))
				return
			}
			v.SetInt(int64(i))
			return
		}
	}
	d.mismatch(key, n, v.Type())
}

func (d *decoder) duration(key string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.mismatch(key, n, v.Type())
		return
	}
	dur, err := parseDuration(n.Value)
	if err != nil {
		d.fail(key, n, n.Value, "is not a duration", wantFor(durationType))
		return
	}
	v.Set(reflect.ValueOf(Duration{dur}))
}

func (d *decoder) mismatch(key string, n *yaml.Node, t reflect.Type) {
	d.fail(key, n, written(n), "is "+kindOf(n), wantFor(t))
}

// fieldNames lists the YAML keys of struct type t, in field order.
func fieldNames(t reflect.Type) []string {
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = yamlName(t.Field(i))
	}
	return names
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}

// kindOf describes what n is, for "is a list; want ..." messages.
func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case strTag:
			return "a string"
		case intTag, floatTag:
			return "a number"
		case boolTag:
			return "a boolean"
		case nullTag:
			return "empty"
		case timeTag:
			return "a timestamp"
		}
		return "a value tagged " + n.ShortTag()
	}
	return "not a value"
}

// wantFor says what a value of type t is written as.
func wantFor(t reflect.Type) string {
	if t == durationType {
		return `a Go duration such as "90s" or "5m"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Struct:
		return "a mapping with keys " + strings.Join(fieldNames(t), ", ")
	case reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(wantFor(t.Elem()), "a ") + "s"
	case reflect.Pointer:
		return wantFor(t.Elem())
	}
	return t.String()
}

// unknownProblem suggests the known key closest to a misspelt one.
func unknownProblem(name string, known []string) string {
	best, bestDist := "", len(name)/2+1
	for _, k := range known {
		if dist := editDistance(name, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return "is not a known key"
	}
	return fmt.Sprintf("is not a known key (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// written renders n roughly as it was written, in flow style, for
// messages; it stops early so a large subtree costs little.
func written(n *yaml.Node) string {
	var b strings.Builder
	render(&b, n)
	return b.String()
}

func render(b *strings.Builder, n *yaml.Node) {
	if b.Len() > maxShown {
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		b.WriteString(n.Value)
	case yaml.AliasNode:
		b.WriteString("*" + n.Value)
	case yaml.DocumentNode:
		for _, c := range n.Content {
			render(b, c)
		}
	case yaml.SequenceNode:
		b.WriteString("[")
		for i, c := range n.Content {
			if i > 0 {
				b.WriteString(", ")
			}
			render(b, c)
		}
		b.WriteString("]")
	case yaml.MappingNode:
		b.WriteString("{")
		for i, c := range n.Content {
			switch {
			case i == 0:
			case i%2 == 1:
				b.WriteString(": ")
			default:
				b.WriteString(", ")
			}
			render(b, c)
		}
		b.WriteString("}")
	}
}

// localDefaults drops the defaults that only make sense on AWS from a file
// that says cloud: none and does not set them itself: the seed's endpoints
// and its SSM-backed .env mapping.
func localDefaults(c *Config, lines map[string]int) {
	if c.Cloud != CloudNone {
		return
	}
	if _, ok := lines["endpoints"]; !ok {
		c.Endpoints = map[string]string{}
	}
	if _, ok := lines["env"]; !ok {
		c.Env = map[string]EnvVar{}
	}
}
