// Command faultline is a chaos engineering toolkit; see 'faultline --help'.
package main

import (
	"os"

	"github.com/faultline/faultline/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
