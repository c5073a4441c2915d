package shop_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/faultline/faultline/examples/shop"
	"github.com/faultline/faultline/process/processtest"
)

// A product's price is NULL in the database: the fragile build, which
// reads prices into a plain integer, fails the product's page, the
// catalogue and the product's checkout with 5xx; the resilient build shows
// the product as not for sale and refuses its orders with a 409, and sells
// the rest as usual.
func TestNullPrice(t *testing.T) {
	pay := newPayments(t)
	for build, want := range map[shop.Build]struct{ page, list, order int }{
		shop.Fragile:   {500, 500, 503},
		shop.Resilient: {200, 200, 409},
	} {
		t.Run(string(build), func(t *testing.T) {
			db := "sqlite:" + filepath.Join(t.TempDir(), "shop.db")
			base := startCheckout(t, build, db, startRedis(t), pay.srv.URL) // a cache of its own: empty
			if n := countRows(t, db, "UPDATE products SET price_cents = NULL WHERE id = 3 RETURNING 1"); n != 1 {
				t.Fatalf("nulled %d rows", n)
			}
			code, body := call(t, http.DefaultClient, "GET", base+"/products/3", "")
			if code != want.page {
				t.Errorf("GET /products/3 = %d %s; want %d", code, body, want.page)
			}
			if build == shop.Resilient && !strings.Contains(body, `"price_cents":null,"for_sale":false`) {
				t.Errorf("GET /products/3 = %s; want it shown without a price, not for sale", body)
			}
			code, body = call(t, http.DefaultClient, "GET", base+"/products", "") // a cold cache: from the database
			if code != want.list {
				t.Errorf("GET /products = %d %s; want %d", code, body, want.list)
			}
			if code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 3}`); code != want.order {
				t.Errorf("checkout of the unpriced product = %d %s; want %d", code, body, want.order)
			}
			if code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 4}`); code != http.StatusCreated {
				t.Errorf("checkout of a priced product = %d %s; want 201", code, body)
			}
		})
	}
}

// The card processor's answers change shape (a new version: amount_cents
// a string, charge_id renamed id). The fragile build cannot decode them and
// fails the order, charged as it was; the resilient build validates what it
// reads, queues the payment, and pays it, once, when the answers are right
// again.
func TestSchemaMismatch(t *testing.T) {
	cache := startRedis(t)
	for build, want := range map[shop.Build]int{shop.Fragile: http.StatusBadGateway, shop.Resilient: http.StatusAccepted} {
		t.Run(string(build), func(t *testing.T) {
			var changed atomic.Bool
			proc := shop.NewPayments().Handler()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !changed.Load() || r.URL.Path != "/charge" {
					proc.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				proc.ServeHTTP(rec, r)
				var m map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &m); err == nil {
					m["id"], m["amount_cents"] = m["charge_id"], fmt.Sprint(m["amount_cents"])
					delete(m, "charge_id")
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(mustJSON(m))
			}))
			defer srv.Close()
			base := startCheckout(t, build, "sqlite:"+filepath.Join(t.TempDir(), "shop.db"), cache, srv.URL)
			changed.Store(true)
			code, body := call(t, http.DefaultClient, "POST", base+"/checkout", `{"product_id": 2}`)
			if code != want {
				t.Fatalf("checkout with the new answers = %d %s; want %d", code, body, want)
			}
			if build == shop.Fragile {
				if st := stats(t, base); st.Lost != 1 {
					t.Fatalf("stats: %+v; want the order lost", st)
				}
				return
			}
			changed.Store(false)
			processtest.WaitFor(t, "the queued payment confirmed", func() bool {
				st := stats(t, base)
				return st.Paid == 1 && st.Queued == 0 && st.Unverified == 0
			})
			_, pstats := call(t, http.DefaultClient, "GET", srv.URL+"/stats", "")
			if !strings.Contains(pstats, `"charges":1`) {
				t.Fatalf("processor: %s; want one charge, replayed", pstats)
			}
		})
	}
}

func mustJSON(v any) []byte {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return bytes.TrimSpace(b.Bytes())
}
