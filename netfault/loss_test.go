package netfault

import (
	"encoding/binary"
	"net"
	"os"
	"testing"
	"time"
)

// udpLoss sends n datagrams from send to recv and returns the fraction
// that did not arrive; a send error fails the test (real loss tells the
// sender nothing).
func udpLoss(t *testing.T, send *net.UDPConn, recv *net.UDPConn, to *net.UDPAddr, n int) float64 {
	t.Helper()
	_ = recv.SetReadBuffer(8 << 20)
	got := make(chan int, 1)
	go func() {
		seen := make([]bool, n)
		count := 0
		buf := make([]byte, 64)
		for {
			_ = recv.SetReadDeadline(time.Now().Add(time.Second))
			k, err := recv.Read(buf)
			if err != nil {
				got <- count
				return
			}
			if k >= 4 {
				if i := int(binary.BigEndian.Uint32(buf)); i < n && !seen[i] {
					seen[i] = true
					count++
				}
			}
		}
	}()
	msg := make([]byte, 32)
	for i := range n {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := send.WriteToUDP(msg, to); err != nil {
			t.Fatalf("datagram %d: send error %v; a lost packet must not tell the sender", i, err)
		}
		if i%200 == 199 { // let the receiver drain: no loss from a full buffer
			time.Sleep(time.Millisecond)
		}
	}
	lost := 1 - float64(<-got)/float64(n)
	t.Logf("%d datagrams, %.2f%% lost", n, lost*100)
	return lost
}

func TestPacketLossUpstreamUDP(t *testing.T) {
	r := newRun(t)
	_, insts := r.network(2)
	a, b := insts[0], insts[1]
	recv, err := ListenUDP(b.NS, "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	send, err := ListenUDP(a.NS, "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	port := recv.LocalAddr().(*net.UDPAddr).Port
	to := &net.UDPAddr{IP: b.Addr.AsSlice(), Port: port}
	r.tables(a.NS)
	r.inject(a.NS, "loss", PacketLoss{Percent: 30, To: []Dest{{Prefix: prefixOf(b.Addr), Port: uint16(port)}}, Protocol: UDP, Direction: Upstream})
	if got := udpLoss(t, send, recv, to, 10000); got < 0.27 || got > 0.33 {
		t.Errorf("upstream loss 30%%: %.1f%% of 10,000 datagrams lost, want 30 ± 3", got*100)
	}
	// Downstream only: what a sends is not touched.
	r.inject(a.NS, "down", PacketLoss{Percent: 100, To: []Dest{{Prefix: prefixOf(b.Addr)}}, Direction: Downstream})
	r.undoFault(a.NS, "loss")
	if got := udpLoss(t, send, recv, to, 1000); got > 0.01 {
		t.Errorf("downstream-only loss: %.1f%% of what a sent was lost, want none", got*100)
	}
}

func TestPacketLossOnHostLoopbackJudgesOnce(t *testing.T) {
	r := newRun(t)
	host, err := HostNS()
	if err != nil {
		t.Fatal(err)
	}
	if me, err := PidNS(os.Getpid()); err != nil || !me.Same(host) {
		t.Skip("the test does not run in the host's namespace")
	}
	// 127.77.0.1 to itself: each datagram is both to and from the
	// destination, so judged twice it would be lost 51 % of the time.
	addr := &net.UDPAddr{IP: net.IPv4(127, 77, 0, 1)}
	recv, err := net.ListenUDP("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	send, err := net.ListenUDP("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	r.tables(host)
	r.inject(host, "loss", PacketLoss{Percent: 30, To: []Dest{mustDest(t, "127.77.0.1")}, Direction: Both})
	if got := udpLoss(t, send, recv, recv.LocalAddr().(*net.UDPAddr), 10000); got < 0.27 || got > 0.33 {
		t.Errorf("loopback loss 30%% both ways: %.1f%% of 10,000 datagrams lost, want 30 ± 3", got*100)
	}
}

func (r *testRun) undoFault(ns NS, fault string) {
	r.t.Helper()
	if err := Undo(t0(), InjectOp(ns, r.id, fault)); err != nil {
		r.t.Fatal(err)
	}
}
