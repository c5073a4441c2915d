//go:build !linux

package cli

// releaseStartupPages does nothing off Linux.
func releaseStartupPages() {}
