package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/loopcast/loopcast/bench/report"
	"github.com/loopcast/loopcast/bench/result"
)

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("results", "", "directory of JSON results (*.json), as written by --json")
	md := fs.String("md", "BENCHMARKS.md", "document whose results section is rewritten; '-' prints the section")
	charts := fs.String("charts", "bench/charts", "directory for the SVG charts")
	link := fs.String("chart-link", "bench/charts/", "path prefix of the charts as linked from the document")
	note := fs.String("note", "", "text under the results heading (e.g. how the run was made)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return codeError(1)
	}
	if *dir == "" {
		return errors.New("report: --results is required")
	}
	rs, err := result.LoadDir(*dir)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return fmt.Errorf("report: no results in %s", *dir)
	}
	section, err := report.Generate(rs, report.Options{ChartDir: *charts, ChartLink: *link, Env: report.Environment(), Note: *note})
	if err != nil {
		return err
	}
	if *md == "-" {
		_, err := stdout.Write(section)
		return err
	}
	doc, err := os.ReadFile(*md)
	if err != nil {
		return err
	}
	out, err := report.Splice(doc, section)
	if err != nil {
		return fmt.Errorf("%s: %w", *md, err)
	}
	if err := os.WriteFile(*md, out, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d results) and charts in %s\n", *md, len(rs), *charts)
	return nil
}
