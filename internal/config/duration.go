package config

import (
	"fmt"
	"strings"
	"time"
)

// parseDuration reads a Go duration string. A bare number is refused
// rather than guessed at: "120" could mean seconds or nanoseconds.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf(`%q is not a Go duration such as "90s" or "5m"`, s)
	}
	return d, nil
}
