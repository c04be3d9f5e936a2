// Command crasher is a service that runs for CRASH_AFTER, then fails: the
// container of a restart loop whose crashes are seconds apart.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	d, err := time.ParseDuration(os.Getenv("CRASH_AFTER"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crasher: CRASH_AFTER:", err)
		os.Exit(2)
	}
	fmt.Println("crasher: up; failing in", d)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
		os.Exit(0)
	case <-time.After(d):
		fmt.Fprintln(os.Stderr, "crasher: lost the upstream connection; exiting")
		os.Exit(1)
	}
}
