package proxy

import (
	"bytes"
	"testing"
	"time"
)

func TestBandwidthSchedulesPiecesAtRate(t *testing.T) {
	start := time.Unix(1000, 0)
	st := &toxicState{}
	data := make([]byte, 480_000)
	out := bandwidth(st, Bandwidth{Rate: 1000}, []piece{{data: data, due: start}}) // 1000 KB/s
	if len(out) != 5 {
		t.Fatalf("480 KB at 1000 KB/s: %d pieces, want 5 of at most 100 ms each", len(out))
	}
	total := 0
	for i, p := range out {
		total += len(p.data)
		if len(p.data) > 100_000 {
			t.Errorf("piece %d has %d bytes, more than 100 ms worth", i, len(p.data))
		}
	}
	if total != len(data) {
		t.Fatalf("pieces carry %d bytes, want %d", total, len(data))
	}
	if got, want := out[len(out)-1].due.Sub(start), 480*time.Millisecond; got != want {
		t.Fatalf("last piece due after %v, want %v", got, want)
	}
	// A later chunk queues behind the first at the same rate.
	next := bandwidth(st, Bandwidth{Rate: 1000}, []piece{{data: make([]byte, 1000), due: start}})
	if got, want := next[0].due.Sub(start), 481*time.Millisecond; got != want {
		t.Fatalf("next chunk due after %v, want %v", got, want)
	}
}

func TestBandwidthZeroHoldsEverything(t *testing.T) {
	out := bandwidth(&toxicState{}, Bandwidth{Rate: 0}, []piece{{data: []byte("x"), due: time.Now()}})
	if !out[0].due.Equal(farFuture) {
		t.Fatalf("rate 0: due %v, want held until removed", out[0].due)
	}
}

func testLink() *link {
	c := &conn{p: New(Config{Seed: 7})}
	l := &c.links[Downstream]
	l.c = c
	return l
}

func TestSlicerSizesAndOrder(t *testing.T) {
	l := testLink()
	data := make([]byte, 480_000)
	for i := range data {
		data[i] = byte(i)
	}
	start := time.Unix(0, 0)
	e := Slicer{AverageSize: 1024, SizeVariation: 512, Delay: 10 * time.Microsecond}
	out := l.slicer(&toxicState{}, e, []piece{{data: data, due: start}})
	if len(out) < 240 || len(out) > 720 {
		t.Fatalf("%d pieces, want 240..720 for 480 KB at 1024±512", len(out))
	}
	var joined []byte
	for i, p := range out {
		joined = append(joined, p.data...)
		if want := start.Add(time.Duration(i) * e.Delay); !p.due.Equal(want) {
			t.Fatalf("piece %d due %v, want %v", i, p.due, want)
		}
		if len(p.data) > e.AverageSize+e.SizeVariation {
			t.Fatalf("piece %d has %d bytes, over %d", i, len(p.data), e.AverageSize+e.SizeVariation)
		}
	}
	if !bytes.Equal(joined, data) {
		t.Fatal("slices do not join back into the data, in order")
	}
}

func TestLimitDataTruncatesThenCloses(t *testing.T) {
	st := &toxicState{}
	b := &batch{pieces: []piece{{data: []byte("0123")}, {data: []byte("4567")}}}
	limitData(st, LimitData{Bytes: 6}, b)
	if b.end != endClose || len(b.pieces) != 2 || string(b.pieces[1].data) != "45" {
		t.Fatalf("after 6 of 8 bytes: end %v, %d pieces", b.end, len(b.pieces))
	}
	b = &batch{pieces: []piece{{data: []byte("more")}}}
	limitData(st, LimitData{Bytes: 6}, b)
	if b.end != endClose || len(b.pieces) != 0 {
		t.Fatalf("past the limit: end %v, %d pieces", b.end, len(b.pieces))
	}
}

func TestCompactReleasesTheChunk(t *testing.T) {
	bp := bufPool.Get().(*[]byte)
	copy(*bp, "hello world")
	b := &batch{buf: bp, pieces: []piece{{data: (*bp)[:5]}, {data: (*bp)[5:11]}}}
	b.compact()
	if b.buf != nil {
		t.Fatal("a small batch kept its pooled chunk")
	}
	if got := string(b.pieces[0].data) + string(b.pieces[1].data); got != "hello world" {
		t.Fatalf("compacted data = %q", got)
	}
	if c := cap(b.pieces[0].data); c != 11 { // both pieces share one 11-byte array
		t.Fatalf("compacted batch holds %d bytes for 11", c)
	}
}

// What one read can become stays within the room the reader makes for it
// before reading, whatever the toxics: a slicer that cuts every byte, a
// bandwidth that cuts 100-byte pieces, and both.
func TestBatchMemoryIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	slicer := func(avg, variation int) *toxicState {
		return &toxicState{entry: newToxicEntry(Toxic{Effect: Slicer{AverageSize: avg, SizeVariation: variation}}, 1), active: true}
	}
	bandwidth := &toxicState{entry: newToxicEntry(Toxic{Effect: Bandwidth{Rate: 1}}, 2), active: true}
	for _, c := range []struct {
		name   string
		states []*toxicState
		limit  int
	}{
		{"slicer 1±0", []*toxicState{slicer(1, 0)}, maxSlicedMem},
		{"slicer 1±1", []*toxicState{slicer(1, 1)}, maxSlicedMem},
		{"slicer 7±7", []*toxicState{slicer(7, 7)}, maxSlicedMem},
		{"bandwidth 1 KB/s", []*toxicState{bandwidth}, maxBatchMem},
		{"bandwidth, then slicer 1±0", []*toxicState{bandwidth, slicer(1, 0)}, maxSlicedMem},
		{"slicer 1±0, then bandwidth", []*toxicState{slicer(1, 0), bandwidth}, maxSlicedMem},
	} {
		l := testLink()
		l.states = c.states
		l.updateCloseAt()
		bp := bufPool.Get().(*[]byte)
		b := &batch{buf: bp, pieces: []piece{{data: (*bp)[:l.readMax], due: now}}}
		l.applyToxics(b, now)
		b.compact()
		if got := b.memory(); got > c.limit {
			t.Errorf("%s: a read of %d bytes became %d bytes of batch (%d pieces), over the %d made room for", c.name, l.readMax, got, len(b.pieces), c.limit)
		}
		b.release()
	}
}
