// Package record is what a run directory holds, as Go values: the result
// (result.json: verdict, reasons, phases, checks, faults, traffic), the
// samples (samples.jsonl, a line per tick) and how their values are
// written. The runner writes them; reports, comparisons and the demo read
// them. It depends on nothing of faultline's, so that a program that only
// reads run directories links no engine and no Kubernetes client.
package record
