package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// urlKey is the one string that may also use {version}, the plugin version.
const urlKey = "docker.compose_plugin.url"

// Vars are the facts about the instance that templates may use; the
// agent reads them from instance metadata.
type Vars struct {
	InstanceID string // {instance_id}
	Region     string // {region}
	AZ         string // {az}
	PrivateIP  string // {private_ip}
}

func (v Vars) get(name string) string {
	switch name {
	case "instance_id":
		return v.InstanceID
	case "region":
		return v.Region
	case "az":
		return v.AZ
	case "private_ip":
		return v.PrivateIP
	}
	return ""
}

// sampleVars stand in for the instance during validation, so that a
// template such as http://{private_ip}:3100 is checked as a URL.
func sampleVars() Vars {
	return Vars{InstanceID: "i-0123456789abcdef0", Region: "eu-west-1", AZ: "eu-west-1a", PrivateIP: "10.0.0.1"}
}

func isInstanceVar(name string) bool {
	switch name {
	case "instance_id", "region", "az", "private_ip":
		return true
	}
	return false
}

// problem is what is wrong with a string, before it is tied to a key.
type problem struct{ what, want string }

const placeholders = "{prefix}, {instance_id}, {region}, {az} or {private_ip}"

func unknownPlaceholder(name, key string) *problem {
	p := &problem{fmt.Sprintf("uses unknown placeholder {%s}", name), placeholders}
	switch {
	case name == "version":
		p.want = "{version} only in " + urlKey + "; elsewhere " + placeholders
	case strings.ToLower(name) != name:
		p.what += " (placeholders are lower case)"
	}
	return p
}

// Expand returns a copy of c with {instance_id}, {region}, {az} and
// {private_ip} replaced from v in every string, including endpoint
// parameter names. A placeholder whose variable is empty is an error
// naming the key that uses it.
func (c *Config) Expand(v Vars) (*Config, error) {
	r := rewriter{f: func(key, s string) (string, *problem) {
		return expandString(s, c.lookup(key, func(name string) (string, *problem) {
			if val := v.get(name); val != "" {
				return val, nil
			}
			return "", &problem{fmt.Sprintf("uses {%s}, which is not known for this instance", name),
				"a value for {" + name + "} from the instance metadata"}
		}))
	}}
	out := r.config(c)
	if len(r.errs) > 0 {
		return nil, join(r.errs, "")
	}
	return out, nil
}

// expandLoad returns a copy of c with {prefix}, and {version} in the
// plugin URL, expanded; the instance placeholders are kept for Expand.
func (c *Config) expandLoad(lines map[string]int) (*Config, []*Error) {
	keep := func(name string) (string, *problem) { return "{" + name + "}", nil }
	r := rewriter{lines: lines, f: func(key, s string) (string, *problem) {
		out, p := expandString(s, c.lookup(key, keep))
		if p != nil {
			return s, p
		}
		// Expand scans again: what the prefix brought in must not read
		// as a placeholder then.
		_, p = expandString(out, func(name string) (string, *problem) {
			if isInstanceVar(name) {
				return "", nil
			}
			return "", &problem{fmt.Sprintf("holds {%s} once {prefix} is expanded", name), "braces that do not form a placeholder"}
		})
		return out, p
	}}
	out := r.config(c)
	return out, r.errs
}

// sample is s with every placeholder given a plausible value, for
// validation; an unknown placeholder is reported by expandLoad, so here it
// becomes a harmless word rather than a second error.
func (c *Config) sample(key, s string) string {
	lookup := c.lookup(key, func(name string) (string, *problem) { return sampleVars().get(name), nil })
	out, _ := expandString(s, func(name string) (string, *problem) {
		if v, p := lookup(name); p == nil {
			return v, nil
		}
		return "x", nil
	})
	return out
}

// lookup resolves placeholder name in the string at key, leaving the
// instance placeholders to instance.
func (c *Config) lookup(key string, instance func(string) (string, *problem)) func(string) (string, *problem) {
	return func(name string) (string, *problem) {
		switch {
		case name == "prefix":
			return c.Prefix, nil
		case isInstanceVar(name):
			return instance(name)
		case name == "version" && key == urlKey:
			return c.Docker.ComposePlugin.Version, nil
		}
		return "", unknownPlaceholder(name, key)
	}
}

// maxExpanded bounds what placeholders bring into one string: a long
// prefix used many times would otherwise turn a small file into gigabytes.
const maxExpanded = 4096

// expandString replaces each {name} in s, where name is an identifier,
// with lookup(name). Other braces are text, and ${name} is left alone
// because Compose interpolates it in .env values. It reads s once, left to
// right: the identifier after a '{' ends at the first character that
// cannot be in one, so no byte is scanned more than twice.
func expandString(s string, lookup func(string) (string, *problem)) (string, *problem) {
	var b strings.Builder
	added := 0 // bytes the placeholders brought in
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			break
		}
		n := identifierLen(s[i+1:])
		closed := n > 0 && i+1+n < len(s) && s[i+1+n] == '}'
		if !closed || (i > 0 && s[i-1] == '$') {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		val, p := lookup(s[i+1 : i+1+n])
		if p != nil {
			return "", p
		}
		if added += len(val); added > maxExpanded {
			return "", tooLong()
		}
		b.WriteString(s[:i])
		b.WriteString(val)
		s = s[i+n+2:]
	}
	b.WriteString(s)
	return b.String(), nil
}

func tooLong() *problem {
	return &problem{fmt.Sprintf("expands to more than %d characters of placeholder values", maxExpanded), "fewer or shorter placeholders"}
}

// identifierLen is the length of the identifier s starts with, 0 if none.
func identifierLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && '0' <= c && c <= '9':
		default:
			return i
		}
	}
	return len(s)
}

// rewriter deep-copies a Config, passing every string through f.
type rewriter struct {
	f     func(key, s string) (string, *problem)
	lines map[string]int
	errs  []*Error
}

func (r *rewriter) config(c *Config) *Config {
	out := r.value("", reflect.ValueOf(c).Elem()).Interface().(Config)
	return &out
}

func (r *rewriter) str(key, s string) string {
	out, p := r.f(key, s)
	if p != nil {
		r.errs = append(r.errs, newError(key, s, p.what, p.want, r.lines[key]))
		return s
	}
	return out
}

// value returns a deep copy of v, which is at key, with its strings rewritten.
func (r *rewriter) value(key string, v reflect.Value) reflect.Value {
	out := reflect.New(v.Type()).Elem()
	if v.Type() == durationType {
		out.Set(v)
		return out
	}
	switch v.Kind() {
	case reflect.String:
		out.SetString(r.str(key, v.String()))
	case reflect.Pointer:
		if !v.IsNil() {
			out.Set(reflect.New(v.Type().Elem()))
			out.Elem().Set(r.value(key, v.Elem()))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			out.Field(i).Set(r.value(joinKey(key, yamlName(v.Type().Field(i))), v.Field(i)))
		}
	case reflect.Slice:
		if !v.IsNil() {
			out.Set(reflect.MakeSlice(v.Type(), v.Len(), v.Len()))
			for i := range v.Len() {
				out.Index(i).Set(r.value(fmt.Sprintf("%s[%d]", key, i), v.Index(i)))
			}
		}
	case reflect.Map:
		r.mapping(key, v, out)
	default:
		out.Set(v)
	}
	return out
}

// mapping copies map v into out. Endpoint keys are parameter names and so
// templates; env keys are .env names and are not.
func (r *rewriter) mapping(key string, v, out reflect.Value) {
	if v.IsNil() {
		return
	}
	out.Set(reflect.MakeMapWithSize(v.Type(), v.Len()))
	for _, k := range sortedKeys(v) {
		sub := joinKey(key, k)
		name := k
		if key == "endpoints" {
			name = r.str(sub, k)
		}
		nk := reflect.ValueOf(name).Convert(v.Type().Key())
		if out.MapIndex(nk).IsValid() {
			r.errs = append(r.errs, newError(sub, k, "names the same parameter as another key once expanded: "+name, "distinct keys", r.lines[sub]))
			continue
		}
		out.SetMapIndex(nk, r.value(sub, v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key()))))
	}
}

// sortedKeys returns the keys of map v, which has string keys, in order,
// so errors come out the same way every time.
func sortedKeys(v reflect.Value) []string {
	keys := make([]string, 0, v.Len())
	for _, k := range v.MapKeys() {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	return keys
}
