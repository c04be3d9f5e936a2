package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Render writes the report for a person: the facts, the step table, the
// containers and the boot timeline.
func Render(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.LastRun == nil {
		fmt.Fprintln(tw, "last run\tnone recorded yet: run `monagent reconcile`")
	} else {
		fmt.Fprintf(tw, "last run\t%s (%s): %s in %.1fs\n", r.LastRun.UTC().Format(time.RFC3339), r.Mode, r.Result, r.Timeline.TotalSeconds)
	}
	if r.Example {
		fmt.Fprintln(tw, "config\tthe package's example (example: true): runs do nothing until this host's configuration replaces it")
	}
	facts(tw, r)
	if len(r.Steps) > 0 {
		fmt.Fprintln(tw, "\nSTEP\tSTATUS\tLAST RUN\tDURATION\tATTEMPTS\tNOTE")
		for _, s := range r.Steps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, stepStatus(s), s.Start.UTC().Format(time.RFC3339),
				seconds(s.DurationSeconds), s.Attempts, firstLine(note(s)))
		}
	}
	if len(r.Containers) > 0 {
		fmt.Fprintln(tw, "\nSERVICE\tCONTAINER\tSTATE\tHEALTH\tRESTARTS")
		for _, c := range r.Containers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", c.Service, c.Name, c.State, dash(c.Health), c.Restarts)
		}
	}
	if len(r.Timeline.Entries) > 0 {
		fmt.Fprintln(tw, "\nLAST RUN (* on the critical path)\tSTART\tDURATION")
		for _, e := range r.Timeline.Entries {
			mark := " "
			if e.Critical {
				mark = "*"
			}
			fmt.Fprintf(tw, "%s %s\t+%s\t%s\n", mark, e.Step, seconds(e.OffsetSeconds), seconds(e.DurationSeconds))
		}
		fmt.Fprintf(tw, "critical path\t%s (%s)\n", strings.Join(r.Timeline.CriticalPath, " → "), seconds(r.Timeline.TotalSeconds))
	}
	return tw.Flush()
}

func facts(w io.Writer, r Report) {
	fmt.Fprintf(w, "instance\t%s\n", dash(r.InstanceID))
	v := r.Volume
	vol := dash(v.ID)
	if v.Device != "" {
		vol += " on " + v.Device
	}
	fmt.Fprintf(w, "volume\t%s\n", vol)
	switch {
	case !v.Mounted:
		fmt.Fprintf(w, "mount\tnothing mounted at %s\n", v.MountPoint)
	case v.UUID != "" && v.MountedUUID != "" && v.UUID != v.MountedUUID:
		fmt.Fprintf(w, "mount\t%s at %s (%s, UUID %s): NOT the volume's recorded UUID %s\n", v.Source, v.MountPoint, v.FSType, v.MountedUUID, v.UUID)
	default:
		fmt.Fprintf(w, "mount\t%s at %s (%s, UUID %s)\n", v.Source, v.MountPoint, v.FSType, dash(v.MountedUUID))
	}
	fmt.Fprintf(w, "signal\t%s\n", signalText(r.Signal, r.InstanceID))
	if d := r.Docker; d.Error != "" && d.Engine == "" {
		fmt.Fprintf(w, "docker\t%s\n", d.Error)
	} else {
		line := fmt.Sprintf("engine %s (API %s), compose %s", d.Engine, d.API, dash(d.Compose))
		if d.Error != "" {
			line += "; " + d.Error
		}
		fmt.Fprintf(w, "docker\t%s\n", line)
	}
	e := r.Env
	switch {
	case !e.Present:
		fmt.Fprintf(w, ".env\t%s is missing\n", e.Path)
	default:
		line := fmt.Sprintf("%s (%s): %s", e.Path, e.Mode, strings.Join(e.Keys, ", "))
		if len(e.Missing) > 0 {
			line += "; not in it: " + strings.Join(e.Missing, ", ")
		}
		fmt.Fprintf(w, ".env\t%s\n", line)
	}
}

func signalText(s Signal, instance string) string {
	switch {
	case !s.Enabled:
		return "not configured (stack.name and stack.resource unset)"
	case s.InstanceID == "":
		return "not sent"
	case s.InstanceID != instance:
		return fmt.Sprintf("not sent for this instance (last sent for %s)", s.InstanceID)
	}
	switch s.Outcome {
	case "complete":
		return fmt.Sprintf("not needed for %s at %s: the resource had already completed", s.InstanceID, dash(s.At))
	case "not-awaited":
		return fmt.Sprintf("SUCCESS for %s at %s NOT counted: the stack was rolling back, failed or being deleted", s.InstanceID, dash(s.At))
	}
	return fmt.Sprintf("SUCCESS sent for %s at %s", s.InstanceID, dash(s.At))
}

func stepStatus(s Step) string {
	switch {
	case s.Skipped && s.Status == "succeeded":
		return "converged (skipped)"
	case !s.InLastRun:
		return s.Status + " (earlier run)"
	}
	return s.Status
}

func note(s Step) string {
	if s.LastError != "" {
		return s.LastError
	}
	return s.Warning
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func seconds(f float64) string {
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
