package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"os"
	"sync/atomic"
	"time"
)

// Request ids, as Toxiproxy puts them in its X-Toxiproxy-Request-Id
// header: the form of github.com/rs/xid, 12 bytes (the time in seconds, 3
// bytes of the machine, 2 of the process id, a 3-byte counter) in 20
// characters of lower-case base32hex. They sort by time.
var (
	idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)
	idMachine  = machineID()
	idCounter  atomic.Uint32
)

func init() {
	var b [4]byte
	_, _ = rand.Read(b[:])
	idCounter.Store(binary.BigEndian.Uint32(b[:]))
}

func machineID() [3]byte {
	name, err := os.Hostname()
	if err != nil {
		var b [3]byte
		_, _ = rand.Read(b[:])
		return b
	}
	sum := sha256.Sum256([]byte(name))
	return [3]byte{sum[0], sum[1], sum[2]}
}

// newRequestID returns a new request id.
func newRequestID() string {
	var id [12]byte
	binary.BigEndian.PutUint32(id[0:], uint32(time.Now().Unix()))
	copy(id[4:7], idMachine[:])
	pid := os.Getpid()
	id[7], id[8] = byte(pid>>8), byte(pid)
	n := idCounter.Add(1)
	id[9], id[10], id[11] = byte(n>>16), byte(n>>8), byte(n)
	return idEncoding.EncodeToString(id[:])
}
