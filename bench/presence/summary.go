package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

// summary reads result lines (JSON, one per run) on stdin and prints a
// Markdown table of every run and the median of each label's rounds.
func summary() {
	var rs []result
	var labels []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r result
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Server == "" {
			continue
		}
		rs = append(rs, r)
		if !slices.Contains(labels, r.Label) {
			labels = append(labels, r.Label)
		}
	}
	fmt.Println("| server | round | cycles/s | server CPU µs/cycle | server CPU | sub p50 ms | sub p99 ms | unsub p99 ms | watcher joins+leaves (frames) | pushes to cyclers | errors | load-tool CPU |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	row := func(r result, round string) {
		fmt.Printf("| %s | %s | %.0f | %.1f | %.0f%% | %.2f | %.2f | %.2f | %d+%d (%d) | %d | %d | %.0f%% |\n",
			r.Label, round, r.CyclesPerS, r.ServerCPUUsPer, 100*r.ServerCPUUtil, r.SubP50Ms, r.SubP99Ms, r.UnsubP99Ms,
			r.WatcherJoins, r.WatcherLeaves, r.WatcherFrames, r.CyclerPushes, r.Errors, 100*r.ClientCPUUtil)
	}
	for _, l := range labels {
		var mine []result
		for _, r := range rs {
			if r.Label == l {
				row(r, fmt.Sprint(r.Round))
				mine = append(mine, r)
			}
		}
		med := func(f func(result) float64) float64 {
			v := make([]float64, len(mine))
			for i, r := range mine {
				v[i] = f(r)
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		m := result{Label: l,
			CyclesPerS:     med(func(r result) float64 { return r.CyclesPerS }),
			ServerCPUUsPer: med(func(r result) float64 { return r.ServerCPUUsPer }),
			ServerCPUUtil:  med(func(r result) float64 { return r.ServerCPUUtil }),
			SubP50Ms:       med(func(r result) float64 { return r.SubP50Ms }),
			SubP99Ms:       med(func(r result) float64 { return r.SubP99Ms }),
			UnsubP99Ms:     med(func(r result) float64 { return r.UnsubP99Ms }),
			WatcherJoins:   int64(med(func(r result) float64 { return float64(r.WatcherJoins) })),
			WatcherLeaves:  int64(med(func(r result) float64 { return float64(r.WatcherLeaves) })),
			WatcherFrames:  int64(med(func(r result) float64 { return float64(r.WatcherFrames) })),
			CyclerPushes:   int64(med(func(r result) float64 { return float64(r.CyclerPushes) })),
			Errors:         int64(med(func(r result) float64 { return float64(r.Errors) })),
			ClientCPUUtil:  med(func(r result) float64 { return r.ClientCPUUtil }),
		}
		row(m, "median")
	}
}
