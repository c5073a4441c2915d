#!/usr/bin/env bash
# Builds what a real Kubernetes node needs beside the control plane that
# scripts/kube.sh builds, once, into a cache keyed by version: kubelet and
# kube-proxy (kubetest/build, the control plane's version), containerd with
# its runc shim and ctr, runc, the CNI bridge, host-local and loopback
# plugins, and CoreDNS (kubetest/coredns). Everything comes from the Go
# module proxy; runc needs cgo (gcc) and libseccomp-dev. Cold: about 6 minutes on 2 cores when
# kube.sh has run (they share the build cache); warm: seconds.
# Prints the directory (KUBE_NODE_ASSETS) on its last line.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.10.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
CACHE="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faultline}"
out="${KUBE_NODE_ASSETS:-$CACHE/kubenode-$K8S_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-cni-$CNI_PLUGINS_VERSION-coredns-$COREDNS_VERSION}"
root="$(cd "$(dirname "$0")/.." && pwd)"

bins=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr runc cni/bridge cni/host-local cni/loopback coredns)
need=()
for b in "${bins[@]}"; do
  [ -x "$out/$b" ] || need+=("$b")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out/cni"
avail_kb=$(df -Pk "$out" | awk 'NR==2 {print $4}')
if [ "${avail_kb:-0}" -lt $((3 * 1024 * 1024)) ]; then
  echo "kubenode: building needs about 2 GB of caches beyond kube.sh's; $(df -Ph "$out" | awk 'NR==2 {print $4}') free under $out" >&2
fi
echo "kubenode: building ${need[*]} into $out (one time: minutes on 2 cores)" >&2

# go install MODULE/PKG@VERSION into $out/DEST (a module without replace
# directives builds as its authors pinned it).
install() {
  local dest="$1" pkg="$2" tmp
  [ -x "$out/$dest" ] && return 0
  echo "kubenode: $dest" >&2
  tmp="$(mktemp -d)"
  GOBIN="$tmp" go install -trimpath "${@:3}" "$pkg"
  mv "$tmp/$(basename "$pkg" | sed 's/@.*//')" "$out/$dest"
  rmdir "$tmp"
}

# containerd without cgo leaves out the btrfs snapshotter only; the shim is
# static as containerd's own release builds it.
cver="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
for b in containerd containerd-shim-runc-v2 ctr; do
  CGO_ENABLED=0 install "$b" "github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION" -ldflags "-s -w $cver"
done
# runc needs cgo for its nsenter, and libseccomp (Debian's libseccomp-dev)
# for seccomp, which the kubelet asks for the pods' sandboxes.
CGO_ENABLED=1 install runc "github.com/opencontainers/runc@$RUNC_VERSION" -tags "seccomp urfave_cli_no_docs" -ldflags "-s -w"
for b in bridge host-local loopback; do
  kind=main; [ "$b" = host-local ] && kind=ipam
  CGO_ENABLED=0 install "cni/$b" "github.com/containernetworking/plugins/plugins/$kind/$b@$CNI_PLUGINS_VERSION" -ldflags "-s -w"
done
if [ ! -x "$out/coredns" ]; then
  echo "kubenode: coredns" >&2
  (cd "$root/kubetest/coredns" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/coredns.tmp" . && mv "$out/coredns.tmp" "$out/coredns")
fi
# The node agent and kube-proxy share most of their build with the control
# plane (kube.sh): warm, they take seconds more.
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
for b in kubelet kube-proxy; do
  if [ ! -x "$out/$b" ]; then
    echo "kubenode: $b" >&2
    (cd "$root/kubetest/build" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "./$b" && mv "$out/$b.tmp" "$out/$b")
  fi
done

echo "$out"
