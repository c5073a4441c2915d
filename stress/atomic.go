package stress

import "sync/atomic"

// atomicUint64 keeps the CPU workers' arithmetic from being optimised away.
type atomicUint64 = atomic.Uint64
