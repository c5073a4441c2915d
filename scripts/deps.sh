#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. Idempotent.
set -euo pipefail

need_go="1.26"
if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go $need_go or newer is required (https://go.dev/dl/)" >&2
  exit 1
fi

# Debian packages the tests use: the real servers they run on loopback; the
# unmodified clients (curl, redis-cli) that netfault's tests run in
# namespaces; nftables (the nft binary kube-proxy's nftables mode runs) and
# libseccomp-dev (runc's seccomp) for the real Kubernetes node.
pkgs=(prometheus postgresql redis-server chromium libxml2-utils curl nftables libseccomp-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

go mod download

# Toxiproxy's own server, for the tests that compare faultline with it.
if [ -n "${TOXIPROXY_SERVER:-}" ] && [ ! -x "$TOXIPROXY_SERVER" ]; then
  echo "deps: building Toxiproxy ${TOXIPROXY_VERSION} (for compatibility tests) into $(dirname "$TOXIPROXY_SERVER")"
  mkdir -p "$(dirname "$TOXIPROXY_SERVER")"
  GOBIN="$(dirname "$TOXIPROXY_SERVER")" go install "github.com/Shopify/toxiproxy/v2/cmd/server@${TOXIPROXY_VERSION}"
fi

# A real Kubernetes control plane (kube-apiserver, etcd, ...) for the kube
# tests: built once from the Go module proxy, cached by version.
"$(dirname "$0")/kube.sh" >/dev/null
# A real node beside it (kubelet, containerd, runc, CNI plugins, CoreDNS),
# likewise; and the static faultline build its images hold, so the tests
# that build them find it in Go's build cache.
"$(dirname "$0")/kubenode.sh" >/dev/null
CGO_ENABLED=0 go build -o /dev/null ./cmd/faultline ./kubetest/internal/pause
