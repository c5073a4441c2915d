package proxy

import (
	"math"
	"time"
)

// applyToxics runs a batch through the link's active toxics, in order.
// Each toxic rewrites the batch: due times, pieces, and how the stream ends.
func (l *link) applyToxics(b *batch, now time.Time) {
	for _, st := range l.states {
		if !st.active {
			continue
		}
		switch e := st.entry.Effect.(type) {
		case Latency:
			for i := range b.pieces {
				b.pieces[i].due = b.pieces[i].due.Add(l.c.p.delay(e.Delay, e.Jitter))
			}
		case Bandwidth:
			b.pieces = bandwidth(st, e, b.pieces)
		case SlowClose:
			if b.end == endEOF {
				b.endDue = maxTime(b.lastDue(), now).Add(e.Delay)
			}
		case Timeout:
			b.pieces = b.pieces[:0]
			if b.end == endEOF {
				b.end = endClose
			}
			if e.Timeout > 0 {
				st.deadline = now.Add(e.Timeout)
				l.updateCloseAt()
			}
		case ResetPeer:
			if len(b.pieces) == 0 && b.end == endNone {
				continue
			}
			b.pieces = b.pieces[:0]
			b.end = endNone
			if !st.fired {
				st.fired = true
				b.end, b.endDue = endReset, now.Add(e.Timeout)
			}
		case Slicer:
			b.pieces = l.slicer(st, e, b.pieces)
		case LimitData:
			limitData(st, e, b)
		}
	}
}

// delay draws a delay of d ± jitter, never below zero, and saturating
// rather than wrapping around where d and jitter are close to the largest
// Duration.
func (p *Proxy) delay(d, jitter time.Duration) time.Duration {
	if jitter > 0 {
		// An offset in [-jitter, jitter): 2*jitter fits in a uint64.
		off := time.Duration(p.rand.Uint64N(2*uint64(jitter)) - uint64(jitter))
		if off > 0 && d > math.MaxInt64-off {
			d = math.MaxInt64
		} else {
			d += off // d >= 0 and off >= -jitter: no wrap below zero
		}
	}
	return max(d, 0)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// bandwidth spaces pieces so that the stream runs at rate KB/s, in pieces of
// at most 100 ms worth of bytes. Rate 0 holds everything until the toxic is
// removed.
func bandwidth(st *toxicState, e Bandwidth, in []piece) []piece {
	if e.Rate == 0 {
		for i := range in {
			in[i].due = farFuture
		}
		return in
	}
	maxLen := int64(math.MaxInt64) // bytes in 100 ms, saturated
	if e.Rate <= math.MaxInt64/100 {
		maxLen = 100 * e.Rate
	}
	var out []piece
	for _, p := range in {
		data := p.data
		for len(data) > 0 {
			n := int64(len(data))
			if n > maxLen {
				n = maxLen
			}
			start := maxTime(p.due, st.next)
			st.next = start.Add(time.Duration(n) * time.Millisecond / time.Duration(e.Rate))
			out = append(out, piece{data: data[:n], due: st.next})
			data = data[n:]
		}
	}
	return out
}

// slicer cuts pieces into slices of about AverageSize ± SizeVariation bytes,
// Delay apart.
func (l *link) slicer(st *toxicState, e Slicer, in []piece) []piece {
	var out []piece
	for _, p := range in {
		first := len(out)
		out = l.slice(e, p.data, out)
		due := maxTime(p.due, st.next)
		for i := first; i < len(out); i++ {
			out[i].due = due
			due = due.Add(e.Delay)
		}
		st.next = due
	}
	return out
}

func (l *link) slice(e Slicer, data []byte, out []piece) []piece {
	if len(data)-e.AverageSize <= e.SizeVariation {
		return append(out, piece{data: data})
	}
	mid := len(data) / 2
	if e.SizeVariation > 0 {
		mid += int(l.c.p.rand.Int64N(2*int64(e.SizeVariation))) - e.SizeVariation
	}
	mid = min(max(mid, 1), len(data)-1)
	out = l.slice(e, data[:mid], out)
	return l.slice(e, data[mid:], out)
}

// limitData lets Bytes through, then closes the connection.
func limitData(st *toxicState, e LimitData, b *batch) {
	kept := b.pieces[:0]
	for _, p := range b.pieces {
		left := e.Bytes - st.passed
		if left <= 0 {
			break
		}
		if int64(len(p.data)) > left {
			p.data = p.data[:left]
		}
		st.passed += int64(len(p.data))
		kept = append(kept, p)
	}
	b.pieces = kept
	if st.passed >= e.Bytes {
		b.end = endClose
	}
}
