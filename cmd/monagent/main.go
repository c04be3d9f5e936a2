// Command monagent brings a singleton monitoring host to its converged
// state: data volume, CloudFormation signal, Docker, secrets and the stack.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
)

func main() {
	// compose-go warns through logrus's global logger, past the one
	// redaction point and out of the JSON log; the compose step's own
	// check of the model against .env reports the same findings.
	logrus.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
