package shop_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/faultline/faultline/examples/shop"
)

// FuzzPaymentsCharge: any body gets 200 or 400 with a JSON error, never a
// panic or a 5xx.
func FuzzPaymentsCharge(f *testing.F) {
	for _, s := range []string{`{"order_id": 1, "amount_cents": 100}`, `{}`, `null`, `{"order_id": -1}`, `[`, ``} {
		f.Add(s, "key")
	}
	h := shop.NewPayments().Handler()
	f.Fuzz(func(t *testing.T, body, key string) {
		req := httptest.NewRequest("POST", "/charge", strings.NewReader(body))
		req.Header.Set("Idempotency-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("POST /charge %q = %d %s", body, w.Code, w.Body)
		}
		if w.Code == http.StatusBadRequest && !strings.Contains(w.Body.String(), `"error"`) {
			t.Fatalf("400 without an error body: %s", w.Body)
		}
	})
}
