package shop

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Payments is the card processor: an external API stand-in.
// POST /charge {"order_id": N, "amount_cents": N} charges once per
// Idempotency-Key (else per order id): a repeated request gets the first
// charge back. GET /stats counts charges and replays; GET /health.
//
// Every new charge is risk-scored first, a fixed amount of CPU work
// (ScoreRounds): a processor short of CPU answers late, as real ones do.
type Payments struct {
	// ScoreRounds is the CPU work of scoring one charge, in rounds of
	// SHA-256 (NewPayments: 40000, about 3 ms of one core).
	ScoreRounds int
	mu          sync.Mutex
	charges     map[string]charge
	scoring     map[string]chan struct{} // keys being scored now: closed when done
	replays     int
	epoch       string // in charge ids: ids stay unique across restarts
}

type charge struct {
	ID          string `json:"charge_id"`
	OrderID     int64  `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
}

// NewPayments returns a card processor with no charges.
func NewPayments() *Payments {
	return &Payments{ScoreRounds: 40000, charges: map[string]charge{}, scoring: map[string]chan struct{}{}, epoch: strconv.FormatInt(time.Now().UnixMilli()%1e8, 36)}
}

// score is the charge's risk score: CPU work, nothing else. It gives up
// when ctx ends (the client hung up): a processor short of CPU does not
// spend it on charges nobody waits for.
func (p *Payments) score(ctx context.Context, body []byte) (byte, error) {
	sum := sha256.Sum256(body)
	for i := range p.ScoreRounds {
		if i%1000 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		sum = sha256.Sum256(sum[:])
	}
	return sum[0], nil
}

// Handler serves the processor's API.
func (p *Payments) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /charge", p.charge)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]int{"charges": len(p.charges), "replays": p.replays})
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func (p *Payments) charge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OrderID     int64 `json:"order_id"`
		AmountCents int64 `json:"amount_cents"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return
	}
	if req.OrderID <= 0 || req.AmountCents <= 0 {
		writeError(w, http.StatusBadRequest, "order_id and amount_cents must be positive")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		key = "order-" + strconv.FormatInt(req.OrderID, 10)
	}
	// A charge is scored once per key: a request for a key being scored
	// waits for that scoring (and gets its charge back as a replay),
	// instead of spending the CPU again.
	for {
		p.mu.Lock()
		c, ok := p.charges[key]
		if ok {
			p.replays++
			p.mu.Unlock()
			writeJSON(w, http.StatusOK, c)
			return
		}
		busy, scoring := p.scoring[key]
		if !scoring {
			p.scoring[key] = make(chan struct{})
			p.mu.Unlock()
			break
		}
		p.mu.Unlock()
		select {
		case <-busy:
		case <-r.Context().Done():
			return // the client is gone
		}
	}
	_, err := p.score(r.Context(), body)
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.scoring[key])
	delete(p.scoring, key)
	if err != nil {
		return // the client is gone: nothing charged, nobody to answer
	}
	c := charge{ID: fmt.Sprintf("ch_%s_%d", p.epoch, len(p.charges)+1), OrderID: req.OrderID, AmountCents: req.AmountCents, Status: "succeeded"}
	p.charges[key] = c
	writeJSON(w, http.StatusOK, c)
}
