// Package render fills the stack's configuration templates (Prometheus'
// web.yml, Alertmanager's receivers). A template sees which secrets exist
// and their bcrypt hashes; only a template whose output is written
// root-or-owner-only may see a secret's value.
//
// The language is the part of Go's text/template these files need, with
// its syntax: text, {{/* comments */}}, {{ if has "KEY" }} ... {{ else }}
// ... {{ end }}, {{ value "KEY" }}, {{ bcrypt "KEY" }}, {{ hostname }},
// string literals ({{ "{{" }}, {{`raw`}}) and the trim markers {{- and -}}.
// It is its own small interpreter because text/template calls methods by
// name through reflection, which makes the linker keep every method of
// every type in the binary: with the AWS SDK, three times the size and
// two thirds more memory.
package render

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Data is what a template may use.
type Data struct {
	// Values are the env keys that have a value.
	Values map[string]string
	// Declared are the env keys of the configuration, with a value or
	// not: a template naming any other key has a typo, which would
	// otherwise turn a receiver off for ever without a word.
	Declared map[string]bool
	// Bcrypt returns the bcrypt hash of a generated password's key.
	Bcrypt   func(key string) (string, error)
	Hostname string
}

// ErrSecretValue is a value call in a template whose output is not secret.
var ErrSecretValue = errors.New("value is only allowed in a template with secret: true")

// Render executes src, the template called name. With secret false the
// value function fails: the output is written 0644. On error there is no
// output; errors never quote a value.
func Render(name string, src []byte, secret bool, d Data) ([]byte, error) {
	nodes, err := parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	e := &exec{d: d, secret: secret}
	var out strings.Builder
	if err := e.run(&out, nodes); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return []byte(out.String()), nil
}

// node is text, an output action, or an if with its branches.
type node struct {
	line      int
	text      string   // text, when action is nil
	action    []string // words: a function and its argument, or a literal
	literal   bool     // action[0] is a string literal's value
	cond      []string // an if's condition
	then      []node
	otherwise []node
}

func (n node) isText() bool { return n.action == nil && n.cond == nil }

// token is a piece of the source: text or an action's inside.
type token struct {
	line   int
	text   string
	action bool
}

func lex(src string) ([]token, error) {
	var out []token
	line := 1
	for len(src) > 0 {
		i := strings.Index(src, "{{")
		if i < 0 {
			out = append(out, token{line: line, text: src})
			break
		}
		text := src[:i]
		src = src[i+2:]
		if strings.HasPrefix(src, "- ") || strings.HasPrefix(src, "-\t") || strings.HasPrefix(src, "-\n") {
			text = strings.TrimRightFunc(text, unicode.IsSpace)
			src = src[1:]
		}
		out = append(out, token{line: line, text: text})
		line += strings.Count(text, "\n")
		inside, rest, trimRight, err := actionEnd(src)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, token{line: line, text: strings.TrimSpace(inside), action: true})
		line += strings.Count(inside, "\n")
		src = rest
		if trimRight {
			src = strings.TrimLeftFunc(src, unicode.IsSpace)
		}
	}
	return out, nil
}

// actionEnd finds the end of the action src starts in, skipping comments
// and quoted strings, which may hold "}}".
func actionEnd(src string) (inside, rest string, trimRight bool, err error) {
	for i := 0; i < len(src); i++ {
		switch {
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return "", "", false, errors.New("unclosed comment")
			}
			i += j + 3
		case src[i] == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				return "", "", false, errors.New("unterminated raw string")
			}
			i += j + 1
		case src[i] == '"':
			j := i + 1
			for ; j < len(src) && src[j] != '"' && src[j] != '\n'; j++ {
				if src[j] == '\\' {
					j++
				}
			}
			if j >= len(src) || src[j] != '"' {
				return "", "", false, errors.New("unterminated quoted string")
			}
			i = j
		case strings.HasPrefix(src[i:], " -}}") || strings.HasPrefix(src[i:], "\t-}}") || strings.HasPrefix(src[i:], "\n-}}"):
			return src[:i], src[i+4:], true, nil
		case strings.HasPrefix(src[i:], "}}"):
			return src[:i], src[i+2:], false, nil
		}
	}
	return "", "", false, errors.New("unclosed action: {{ without }}")
}

func parse(src string) ([]node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	nodes, end, err := p.list()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, fmt.Errorf("line %d: {{ %s }} without an if", p.line, end)
	}
	return nodes, nil
}

type parser struct {
	toks []token
	pos  int
	line int
}

// list reads nodes up to an {{ else }} or {{ end }}, which it returns.
func (p *parser) list() ([]node, string, error) {
	var out []node
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		p.pos++
		p.line = t.line
		if !t.action {
			if t.text != "" {
				out = append(out, node{line: t.line, text: t.text})
			}
			continue
		}
		if strings.HasPrefix(t.text, "/*") {
			if !strings.HasSuffix(t.text, "*/") {
				return nil, "", fmt.Errorf("line %d: a comment must be the whole action", t.line)
			}
			continue
		}
		words, err := split(t.text)
		if err != nil {
			return nil, "", fmt.Errorf("line %d: %w", t.line, err)
		}
		switch {
		case len(words) == 1 && (words[0] == "end" || words[0] == "else"):
			return out, words[0], nil
		case len(words) > 0 && words[0] == "if":
			n, err := p.ifNode(t.line, words[1:])
			if err != nil {
				return nil, "", err
			}
			out = append(out, n)
		default:
			n, err := output(t, words)
			if err != nil {
				return nil, "", err
			}
			out = append(out, n)
		}
	}
	return out, "", nil
}

func (p *parser) ifNode(line int, cond []string) (node, error) {
	if len(cond) != 2 || cond[0] != "has" || !isQuoted(cond[1]) {
		return node{}, fmt.Errorf(`line %d: if wants has "KEY", not %q`, line, strings.Join(cond, " "))
	}
	key, _ := strconv.Unquote(cond[1])
	n := node{line: line, cond: []string{"has", key}}
	then, end, err := p.list()
	if err != nil {
		return node{}, err
	}
	n.then = then
	if end == "else" {
		if n.otherwise, end, err = p.list(); err != nil {
			return node{}, err
		}
		if end == "else" {
			return node{}, fmt.Errorf("line %d: a second else in one if", p.line)
		}
	}
	if end != "end" {
		return node{}, fmt.Errorf("line %d: if without {{ end }}", line)
	}
	return n, nil
}

// output is an action that writes: a literal, or a function call.
func output(t token, words []string) (node, error) {
	switch {
	case len(words) == 1 && isQuoted(words[0]):
		s, err := strconv.Unquote(words[0])
		if err != nil {
			return node{}, fmt.Errorf("line %d: %w", t.line, err)
		}
		return node{line: t.line, action: []string{s}, literal: true}, nil
	case len(words) == 1 && words[0] == "hostname":
		return node{line: t.line, action: words}, nil
	case len(words) == 2 && (words[0] == "value" || words[0] == "bcrypt") && isQuoted(words[1]):
		key, err := strconv.Unquote(words[1])
		if err != nil {
			return node{}, fmt.Errorf("line %d: %w", t.line, err)
		}
		return node{line: t.line, action: []string{words[0], key}}, nil
	}
	return node{}, fmt.Errorf(`line %d: {{ %s }} is not an action templates know: if has "KEY", else, end, value "KEY", bcrypt "KEY", hostname, or a string`,
		t.line, t.text)
}

// split cuts an action into words; quoted strings are one word each.
func split(s string) ([]string, error) {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		end := strings.IndexFunc(s, unicode.IsSpace)
		if s[0] == '"' || s[0] == '`' {
			j := 1
			for ; j < len(s) && s[j] != s[0]; j++ {
				if s[0] == '"' && s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, errors.New("unterminated string")
			}
			end = j + 1
		}
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out, nil
}

func isQuoted(w string) bool {
	return len(w) >= 2 && (w[0] == '"' && w[len(w)-1] == '"' || w[0] == '`' && w[len(w)-1] == '`')
}

type exec struct {
	d      Data
	secret bool
}

func (e *exec) run(out *strings.Builder, nodes []node) error {
	for _, n := range nodes {
		switch {
		case n.isText():
			out.WriteString(n.text)
		case n.cond != nil:
			if err := e.known("has", n.cond[1]); err != nil {
				return fmt.Errorf("line %d: %w", n.line, err)
			}
			branch := n.otherwise
			if _, ok := e.d.Values[n.cond[1]]; ok {
				branch = n.then
			}
			if err := e.run(out, branch); err != nil {
				return err
			}
		default:
			s, err := e.call(n)
			if err != nil {
				return fmt.Errorf("line %d: %w", n.line, err)
			}
			out.WriteString(s)
		}
	}
	return nil
}

func (e *exec) call(n node) (string, error) {
	if n.literal {
		return n.action[0], nil
	}
	fn := n.action[0]
	if fn == "hostname" {
		return e.d.Hostname, nil
	}
	key := n.action[1]
	if err := e.known(fn, key); err != nil {
		return "", err
	}
	switch fn {
	case "value":
		if !e.secret {
			return "", fmt.Errorf("value %q: %w", key, ErrSecretValue)
		}
		v, ok := e.d.Values[key]
		if !ok {
			return "", fmt.Errorf("value %q: the key has no value here; guard it with {{ if has %q }}", key, key)
		}
		return v, nil
	default: // bcrypt
		if _, ok := e.d.Values[key]; !ok {
			return "", fmt.Errorf("bcrypt %q: the key has no value here", key)
		}
		if e.d.Bcrypt == nil {
			return "", fmt.Errorf("bcrypt %q: no hashes here", key)
		}
		return e.d.Bcrypt(key)
	}
}

func (e *exec) known(fn, key string) error {
	if e.d.Declared != nil && !e.d.Declared[key] {
		return fmt.Errorf("%s %q: not a key of env; declare it there, or fix the name", fn, key)
	}
	return nil
}
