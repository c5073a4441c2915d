package experiments

import "github.com/faultline/faultline/record"

// Story is what an experiment teaches, told as a post-mortem is: the
// weakness the fragile build showed, then the fix the resilient build has,
// a sentence each, with the lines of the shop's code that are the weakness
// and the fix ("examples/shop/FILE.go:LINE"). Each of those lines holds a
// marker comment, story(NAME): TestStoriesPointAtTheirMarkers checks that
// every reference lands on one and every marker is referenced, and
// 'go test -run TestStoriesPointAtTheirMarkers -update' rewrites the line
// numbers here when the shop's code has moved.
type Story = record.Story

// Stories are the stories of every experiment of the demo (All), by
// name.
var Stories = map[string]Story{
	"cache-dies": {
		Weakness: "Checkout calls Redis for every catalogue read with no timeout and no fallback: " +
			"when the cache dies, every catalogue request fails with a 500 although the database has every product.",
		WeaknessAt: []string{"examples/shop/checkout.go:118", "examples/shop/checkout.go:273"},
		Fix: "The cache sits behind a circuit breaker with a 100 ms timeout a call, and a miss or any cache error " +
			"falls back to the database (reads retried with backoff): the catalogue comes a little slower, never not at all.",
		FixAt: []string{"examples/shop/checkout.go:291", "examples/shop/checkout.go:304"},
	},
	"db-primary-down": {
		Weakness: "Every database call runs under context.Background(), with no connect or query timeout: " +
			"while the primary is frozen, each request that touches it hangs for as long as the database does.",
		WeaknessAt: []string{"examples/shop/checkout.go:261"},
		Fix: "Connecting gives up after 1 s and every query after 500 ms; reads are retried with backoff and jitter " +
			"within 900 ms, and an order the frozen database does not take is taken by the broker (a 202) and written " +
			"once it thaws: a frozen database costs a wait of half a second, not a hung request.",
		FixAt: []string{"examples/shop/checkout.go:99", "examples/shop/resilience.go:16", "examples/shop/resilience.go:55", "examples/shop/checkout.go:382"},
	},
	"slow-payment": {
		Weakness: "Checkout charges the card synchronously with an HTTP client that has no timeout: " +
			"when the processor answers 8 s late, so does every checkout.",
		WeaknessAt: []string{"examples/shop/checkout.go:120", "examples/shop/checkout.go:414"},
		Fix: "A charge gets 1 s behind a circuit breaker; past that the payment is queued (202) and confirmed " +
			"in the background once the processor answers again, with the order id as the idempotency key.",
		FixAt: []string{"examples/shop/checkout.go:111", "examples/shop/checkout.go:437"},
	},
	"service-unreachable": {
		Weakness: "Checkout charges the card synchronously with an HTTP client that has no timeout: " +
			"when no packet reaches the processor, every checkout waits on a connection that never answers, until the shopper gives up.",
		WeaknessAt: []string{"examples/shop/checkout.go:120", "examples/shop/checkout.go:414"},
		Fix: "A charge gets 1 s behind a circuit breaker: an unreachable processor costs that second (then nothing, once the breaker opens), " +
			"the payment is queued (202) and confirmed in the background once the network is back.",
		FixAt: []string{"examples/shop/checkout.go:111", "examples/shop/checkout.go:437"},
	},
	"half-instances": {
		Weakness: "The balancer sends each request round robin to every instance, dead or alive, and tries it once: " +
			"with half the instances killed, half the requests fail.",
		WeaknessAt: []string{"examples/shop/balancer.go:79", "examples/shop/balancer.go:97"},
		Fix: "The balancer checks each instance's /health every 250 ms and sends requests only to those that answer, " +
			"and a request refused by an instance (or an idempotent one that failed) is tried on the next.",
		FixAt: []string{"examples/shop/balancer.go:88", "examples/shop/balancer.go:128"},
	},
	"zone-outage": {
		Weakness: "Every checkout instance runs in zone a and the balancer has no health checks: " +
			"when the zone goes, the shop goes with it.",
		WeaknessAt: []string{"examples/shop/balancer.go:79", "examples/shop/balancer.go:97"},
		Fix: "The instances are spread over three zones, and the health-checked balancer stops sending to the dead zone " +
			"within a check and retries elsewhere what it already sent there.",
		FixAt: []string{"examples/shop/balancer.go:88", "examples/shop/balancer.go:128"},
	},
	"payment-errors": {
		Weakness: "A charge the processor answers with a 500 is tried once, and the order is marked lost: " +
			"half the processor's answers failing means a shopper in eight sees an error and the shop loses the sale.",
		WeaknessAt: []string{"examples/shop/checkout.go:416"},
		Fix: "A failed charge is tried three times with exponential backoff and jitter, then queued for the background " +
			"worker: shoppers see a 202, and every order is paid once the processor is healthy.",
		FixAt: []string{"examples/shop/checkout.go:437", "examples/shop/checkout.go:533"},
	},
	"db-packet-loss": {
		Weakness: "The pool keeps no idle connection, so every query connects anew: a lost SYN costs a second, " +
			"two cost three, and with a fifth of the packets to the database lost, checkouts wait past the shopper's patience.",
		WeaknessAt: []string{"examples/shop/checkout.go:117"},
		Fix: "A warm pool (no handshake to lose), and an order the database does not take within 500 ms is taken by the " +
			"broker under its key: the shopper gets a 202, and the intake consumer writes the order once when the database answers.",
		FixAt: []string{"examples/shop/checkout.go:821", "examples/shop/checkout.go:382", "examples/shop/checkout.go:497"},
	},
	"error-alert": {
		Weakness: "A charge the processor answers with a 500 is tried once and the order is lost with a 502: " +
			"the shop's own ErrorRateTooHigh fires within seconds, and the run stops on it, as the blog's stops on its alarm.",
		WeaknessAt: []string{"examples/shop/checkout.go:416"},
		Fix: "Retries with backoff and jitter, then the queue: no shopper sees a 5xx, the alert stays quiet " +
			"through 15 s of failing charges, and every order is paid once the processor is healthy.",
		FixAt: []string{"examples/shop/checkout.go:437", "examples/shop/checkout.go:533"},
	},
	"payment-malformed": {
		Weakness: "Any 200 from the processor counts as paid, whatever its body says: answers with \"status\": null " +
			"and no charge id mark orders paid that the shop cannot prove it was paid for.",
		WeaknessAt: []string{"examples/shop/checkout.go:566"},
		Fix: "An answer counts only when it says \"succeeded\" with a charge id for the right amount; anything else " +
			"leaves the outcome unknown, and the payment is queued and asked again with the same idempotency key.",
		FixAt: []string{"examples/shop/checkout.go:573"},
	},
	"dns-fails": {
		Weakness: "Every charge looks the processor's name up and a failed lookup fails the charge and loses the order: " +
			"while DNS answers SERVFAIL, no checkout completes.",
		WeaknessAt: []string{"examples/shop/checkout.go:148", "examples/shop/checkout.go:416"},
		Fix: "A charge that cannot reach the processor, a failed lookup included, is retried, then queued, " +
			"and paid once the name resolves again: the shopper never waits for DNS.",
		FixAt: []string{"examples/shop/checkout.go:437"},
	},
	"db-pool-exhausted": {
		Weakness: "The pool keeps no idle connection (every query connects anew) and, refused a connection slot, " +
			"waits for one without limit: when another client holds every slot, requests hang past the shopper's patience.",
		WeaknessAt: []string{"examples/shop/checkout.go:117", "examples/shop/store.go:101"},
		Fix: "A warm pool opened before the instance serves, bounded to 20, with a 1 s connect timeout: with no " +
			"free slot, an order that cannot be written is taken by the broker at once (a 202; a 503 with Retry-After " +
			"when the broker cannot take it either), and reads use the connections it holds.",
		FixAt: []string{"examples/shop/checkout.go:821", "examples/shop/checkout.go:99", "examples/shop/checkout.go:382", "examples/shop/checkout.go:397"},
	},
	"disk-fills": {
		Weakness: "A request whose access-log line cannot be written is answered with a 500: " +
			"when the log volume fills up, the shop stops selling.",
		WeaknessAt: []string{"examples/shop/checkout.go:236"},
		Fix: "A log line that cannot be written is dropped and counted (shop_log_lines_dropped_total), and the request " +
			"is served: the request matters more than its log line.",
		FixAt: []string{"examples/shop/checkout.go:240"},
	},
	"queue-down": {
		Weakness: "Checkout announces each order on the broker before charging it and waits for the broker's word: " +
			"with the broker down, every checkout hangs 5 s, then fails, and the order is lost.",
		WeaknessAt: []string{"examples/shop/checkout.go:405"},
		Fix: "The announcement is written to an outbox table in the order's own transaction and a relay hands it to the " +
			"broker when the broker is back, under the outbox id as message id; the consumer acts on a first delivery only: " +
			"none lost, none twice.",
		FixAt: []string{"examples/shop/store.go:305", "examples/shop/checkout.go:694", "examples/shop/checkout.go:731"},
	},
	"memory-pressure": {
		Weakness: "When the OOM killer takes the card processor (simulated here with the SIGKILL it sends), every charge " +
			"fails at once and the fragile checkout loses each order with it: the charge is the checkout.",
		WeaknessAt: []string{"examples/shop/checkout.go:416"},
		Fix: "A charge that cannot reach the processor is queued and travels through the broker to the payment consumer, " +
			"which asks for a redelivery, later each time, until the restarted processor takes the charge.",
		FixAt: []string{"examples/shop/checkout.go:437", "examples/shop/checkout.go:676"},
	},
	"cpu-spike": {
		Weakness: "Checkout waits for the card processor with no timeout: starved of CPU, the processor answers seconds " +
			"late, each checkout holds one of its instance's 16 workers meanwhile, and once they are all taken the catalogue waits too.",
		WeaknessAt: []string{"examples/shop/checkout.go:120", "examples/shop/checkout.go:414"},
		Fix: "A charge gets 1 s, the breaker opens after three slow ones, and the payment is queued and confirmed by the " +
			"payment consumer once the processor has its CPU back: no worker waits for a slow dependency.",
		FixAt: []string{"examples/shop/checkout.go:111", "examples/shop/checkout.go:437", "examples/shop/checkout.go:676"},
	},
	"db-nulls": {
		Weakness: "Prices are read into a plain int64, as if none could be NULL: one product not priced yet fails its " +
			"page, its checkout and any catalogue read from the database with a 5xx.",
		WeaknessAt: []string{"examples/shop/store.go:272"},
		Fix: "A price is read as nullable: a product without one is shown not for sale and its orders get a clear 409, " +
			"while every other product sells as usual.",
		FixAt: []string{"examples/shop/store.go:276", "examples/shop/checkout.go:394"},
	},
	"schema-mismatch": {
		Weakness: "The processor's answer is decoded as if its shape never changed: when a new version sends amount_cents " +
			"as a string, the decode fails, the checkout answers 502 and the order is marked lost, though the card was charged.",
		WeaknessAt: []string{"examples/shop/checkout.go:564", "examples/shop/checkout.go:416"},
		Fix: "What the answer says is validated field by field (status, charge id, amount); an answer of another shape " +
			"leaves the outcome unknown and the payment is queued, then paid once, by idempotency key, when the answers are right.",
		FixAt: []string{"examples/shop/checkout.go:571"},
	},
}
