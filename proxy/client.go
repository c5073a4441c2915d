package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client drives a Toxiproxy-compatible API: faultline serve, or Toxiproxy
// itself. Its zero value is not usable; see NewClient.
type Client struct {
	// Base is the API's URL, e.g. "http://127.0.0.1:8474".
	Base string
	// Token, if set, is sent as "Authorization: Bearer TOKEN".
	Token string
	// HTTP is the client used; NewClient sets one with a 30 s timeout.
	HTTP *http.Client
}

// NewClient returns a client for the API at base; a base without a scheme
// gets "http://".
func NewClient(base, token string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// ProxyInfo is a proxy as the API shows it.
type ProxyInfo struct {
	Name     string      `json:"name"`
	Listen   string      `json:"listen"`
	Upstream string      `json:"upstream"`
	Enabled  bool        `json:"enabled"`
	Toxics   []ToxicInfo `json:"toxics"`
}

// ToxicInfo is a toxic as the API shows it.
type ToxicInfo struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream,omitempty"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "faultline")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e errorJSON
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &APIError{Status: resp.StatusCode, Message: e.Error}
		}
		msg, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("%s (is %s a faultline or Toxiproxy API?)", msg, c.Base)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func proxyPath(name string, rest ...string) string {
	p := "/proxies/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// Proxies lists the proxies by name.
func (c *Client) Proxies(ctx context.Context) (map[string]ProxyInfo, error) {
	var out map[string]ProxyInfo
	return out, c.do(ctx, http.MethodGet, "/proxies", nil, &out)
}

// Proxy returns one proxy.
func (c *Client) Proxy(ctx context.Context, name string) (ProxyInfo, error) {
	var out ProxyInfo
	return out, c.do(ctx, http.MethodGet, proxyPath(name), nil, &out)
}

// CreateProxy creates a proxy, enabled.
func (c *Client) CreateProxy(ctx context.Context, name, listen, upstream string) (ProxyInfo, error) {
	var out ProxyInfo
	in := map[string]any{"name": name, "listen": listen, "upstream": upstream, "enabled": true}
	return out, c.do(ctx, http.MethodPost, "/proxies", in, &out)
}

// SetEnabled enables or disables a proxy.
func (c *Client) SetEnabled(ctx context.Context, name string, enabled bool) (ProxyInfo, error) {
	var out ProxyInfo
	return out, c.do(ctx, http.MethodPost, proxyPath(name), map[string]any{"enabled": enabled}, &out)
}

// DeleteProxy deletes a proxy.
func (c *Client) DeleteProxy(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, proxyPath(name), nil, nil)
}

// AddToxic adds a toxic to a proxy. Empty Stream and Name take the
// server's defaults; toxicity is sent as given.
func (c *Client) AddToxic(ctx context.Context, proxyName string, t ToxicInfo) (ToxicInfo, error) {
	var out ToxicInfo
	return out, c.do(ctx, http.MethodPost, proxyPath(proxyName, "toxics"), t, &out)
}

// Toxic returns one toxic of a proxy.
func (c *Client) Toxic(ctx context.Context, proxyName, toxic string) (ToxicInfo, error) {
	var out ToxicInfo
	return out, c.do(ctx, http.MethodGet, proxyPath(proxyName, "toxics", toxic), nil, &out)
}

// UpdateToxic merges attrs into a toxic's attributes and, if toxicity is
// not nil, sets its toxicity.
func (c *Client) UpdateToxic(ctx context.Context, proxyName, toxic string, toxicity *float32, attrs map[string]any) (ToxicInfo, error) {
	in := map[string]any{"attributes": attrs}
	if toxicity != nil {
		in["toxicity"] = *toxicity
	}
	var out ToxicInfo
	return out, c.do(ctx, http.MethodPatch, proxyPath(proxyName, "toxics", toxic), in, &out)
}

// RemoveToxic removes a toxic.
func (c *Client) RemoveToxic(ctx context.Context, proxyName, toxic string) error {
	return c.do(ctx, http.MethodDelete, proxyPath(proxyName, "toxics", toxic), nil, nil)
}

// Reset enables every proxy and removes every toxic.
func (c *Client) Reset(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/reset", nil, nil)
}

// Version returns the server's version string.
func (c *Client) Version(ctx context.Context) (string, error) {
	var out struct {
		Version string `json:"version"`
	}
	return out.Version, c.do(ctx, http.MethodGet, "/version", nil, &out)
}
