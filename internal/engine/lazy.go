package engine

import (
	"context"
	"sync"
)

// Lazy is a step built on first use, once the steps before it have learned
// what it needs (region, instance id, expanded configuration).
func Lazy(name string, build func(ctx context.Context) (Step, error)) Step {
	return &lazy{name: name, build: build}
}

type lazy struct {
	name  string
	build func(context.Context) (Step, error)

	once sync.Once
	step Step
	err  error
	memo map[string]string
}

func (l *lazy) get(ctx context.Context) (Step, error) {
	l.once.Do(func() {
		l.step, l.err = l.build(ctx)
		if m, ok := l.step.(Memoizer); ok && l.err == nil {
			m.Restore(l.memo)
		}
	})
	return l.step, l.err
}

func (l *lazy) Name() string { return l.name }

func (l *lazy) Fingerprint(ctx context.Context) (string, error) {
	s, err := l.get(ctx)
	if err != nil {
		return "", err
	}
	return s.Fingerprint(ctx)
}

func (l *lazy) Check(ctx context.Context) (bool, error) {
	s, err := l.get(ctx)
	if err != nil {
		return false, err
	}
	return s.Check(ctx)
}

func (l *lazy) Apply(ctx context.Context) error {
	s, err := l.get(ctx)
	if err != nil {
		return err
	}
	return s.Apply(ctx)
}

// Restore keeps the memo for the step that is not built yet.
func (l *lazy) Restore(memo map[string]string) {
	l.memo = memo
	if m, ok := l.step.(Memoizer); ok {
		m.Restore(memo)
	}
}

// Memo returns the built step's memo, if it keeps one.
func (l *lazy) Memo() map[string]string {
	if m, ok := l.step.(Memoizer); ok {
		return m.Memo()
	}
	return l.memo
}
