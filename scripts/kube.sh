#!/usr/bin/env bash
# Builds a real Kubernetes control plane from the Go module proxy, once, into
# a cache keyed by version: kube-apiserver, kube-controller-manager and
# kube-scheduler (kubetest/build), etcd (kubetest/etcd) and kwok (fake nodes).
# Cold: about 7 minutes on 2 cores and ~6 GB of caches; warm: seconds.
# Prints the directory (KUBE_ASSETS) on its last line.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
CACHE="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faultline}"
out="${KUBE_ASSETS:-$CACHE/kube-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION}"
root="$(cd "$(dirname "$0")/.." && pwd)"

need=()
for b in kube-apiserver kube-controller-manager kube-scheduler etcd kwok; do
  [ -x "$out/$b" ] || need+=("$b")
done
[ -f "$out/kwok-stages.yaml" ] || need+=(kwok-stages.yaml)
if [ ${#need[@]} -eq 0 ]; then
  echo "$out"
  exit 0
fi

avail_kb=$(df -Pk "$CACHE" 2>/dev/null | awk 'NR==2 {print $4}' || echo 0)
if [ "${avail_kb:-0}" -lt $((7 * 1024 * 1024)) ]; then
  echo "kube: building needs about 6 GB of caches; $(df -Ph "$CACHE" | awk 'NR==2 {print $4}') free under $CACHE" >&2
fi
mkdir -p "$out"
echo "kube: building ${need[*]} into $out (one time: about 7 minutes cold on 2 cores)" >&2

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ ! -x "$out/$b" ]; then
    echo "kube: $b" >&2
    (cd "$root/kubetest/build" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "./$b" && mv "$out/$b.tmp" "$out/$b")
  fi
done
if [ ! -x "$out/etcd" ]; then
  echo "kube: etcd" >&2
  (cd "$root/kubetest/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" . && mv "$out/etcd.tmp" "$out/etcd")
fi
if [ ! -x "$out/kwok" ]; then
  echo "kube: kwok" >&2
  tmp="$(mktemp -d)"
  CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$tmp/kwok" "$out/kwok"
  rmdir "$tmp"
fi
# kwok's own "fast" stages (nodes Ready, pods Running and Ready, deleted pods
# gone), taken from its module as published, for the kwok process the tests run.
if [ ! -f "$out/kwok-stages.yaml" ]; then
  stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  if [ ! -d "$stages" ]; then
    (cd "$root/kubetest/etcd" && go mod download "sigs.k8s.io/kwok@$KWOK_VERSION")
  fi
  for f in "$stages"/node/fast/node-initialize.yaml "$stages"/pod/fast/pod-ready.yaml "$stages"/pod/fast/pod-complete.yaml "$stages"/pod/fast/pod-delete.yaml; do
    cat "$f"
    echo "---"
  done > "$out/kwok-stages.yaml.tmp"
  mv "$out/kwok-stages.yaml.tmp" "$out/kwok-stages.yaml"
fi
echo "$out"
