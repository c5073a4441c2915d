// Command runnerbench measures the experiment runner: its own CPU while it
// drives 1,000 requests/s, and the time from a stop condition firing to
// every fault reverted, read from the run's journal. bench/runner.sh runs it.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/faultline/faultline/journal"
)

func main() {
	dir := flag.String("journal", "", "a run directory: print the time from the stop condition to the last revert")
	flag.Parse()
	log.SetFlags(0)
	events, err := journal.ReadFile(filepath.Join(*dir, "journal.jsonl"))
	if err != nil {
		log.Fatal(err)
	}
	var fired, last time.Time
	launches := map[string]bool{} // launched processes, stopped at teardown: not faults
	for _, e := range events {
		switch {
		case e.Launches():
			launches[e.ID] = true
		case e.Type == journal.Note && e.Name == "stop_condition":
			fired = e.Time
		case e.Type == journal.Undone && !fired.IsZero() && !launches[e.ID]:
			last = e.Time
		}
	}
	if fired.IsZero() || last.IsZero() {
		fmt.Fprintln(os.Stderr, "no stop condition followed by a revert in this journal")
		os.Exit(1)
	}
	fmt.Printf("%.1f\n", float64(last.Sub(fired).Microseconds())/1000)
}
