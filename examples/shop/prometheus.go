package shop

import (
	_ "embed"
	"fmt"
	"strings"
)

// PrometheusRules is the shop's alerting rules (prometheus-rules.yml):
// ErrorRateTooHigh fires when over 5 % of checkout's answers are 5xx for 2 s.
//
//go:embed prometheus-rules.yml
var PrometheusRules []byte

// PrometheusConfig is a Prometheus configuration that scrapes the checkout
// instances at scrape (HOST:PORT each) every second, evaluates the rules in
// rulesFile every second, and keeps nothing else.
func PrometheusConfig(scrape []string, rulesFile string) []byte {
	quoted := make([]string, len(scrape))
	for i, s := range scrape {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return fmt.Appendf(nil, `# Written by 'faultline shop prometheus'.
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: checkout
    static_configs: [{targets: [%s]}]
`, rulesFile, strings.Join(quoted, ", "))
}
