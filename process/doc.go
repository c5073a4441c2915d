// Package process finds and signals processes on Linux through /proc: by
// pid, pidfile or a pattern on the command line, with all their
// descendants (a server that forks workers is stopped whole). Every
// process is identified by pid and start time, and a signal goes only to a
// pid whose start time still matches, so a recycled pid is never touched.
package process
