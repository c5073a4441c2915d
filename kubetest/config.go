package kubetest

// The node's configuration files, filled in by fmt. NOTES.md says why each
// setting is there.

// containerdConfig: %[1]s nodeDir, %[2]s the node's binaries, %[3]s the
// pause image. Every path is under nodeDir, the shims' sockets too; no
// drop-in imports from /etc; NRI
// (a socket in /var/run/nri), image verifiers (/opt) and the snapshotters
// that need what this machine lacks are off.
const containerdConfig = `version = 4
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
imports = []
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.image-verifier.v1.bindir",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.differ.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[plugins.'io.containerd.server.v1.grpc']
  address = "%[1]s/containerd.sock"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "%[1]s/containerd.sock.ttrpc"

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "%[1]s/s"

[plugins.'io.containerd.internal.v1.opt']
  path = "%[1]s/containerd/opt"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # No process here may lower its oom_score_adj (CAP_SYS_RESOURCE is not in
  # the bounding set): containers get containerd's (0) or higher.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = ["%[1]s/cdi"]

  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"

    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "%[2]s/runc"
        Root = "%[1]s/runc"
        SystemdCgroup = false

  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["%[2]s/cni"]
    conf_dir = "%[1]s/cni"
    max_conf_num = 1

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "%[3]s"
`

// cniConfig: %[1]s bridge, %[2]s pod CIDR, %[3]s gateway, %[4]s service
// CIDR, %[5]s gateway, %[6]s nodeDir. isGateway false and ipMasq false:
// the plugin neither turns on net.ipv4.ip_forward nor adds a firewall rule;
// the pods' one route beyond the bridge is to the Services, through the
// host.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "faultline",
  "plugins": [{
    "type": "bridge",
    "bridge": "%[1]s",
    "isGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "%[2]s", "gateway": "%[3]s"}]],
      "routes": [{"dst": "%[4]s", "gw": "%[5]s"}],
      "dataDir": "%[6]s/cni-ipam"
    }
  }]
}
`

// corefile: %[1]s the address to serve on, %[2]d the ready port,
// %[3]s the kubeconfig. No forward plugin: names outside cluster.local
// are not answered, and no query leaves the machine.
const corefile = `.:53 {
  bind %[1]s
  errors
  ready 127.0.0.1:%[2]d
  kubernetes cluster.local in-addr.arpa {
    kubeconfig %[3]s test
    ttl 5
  }
  cache 5
}
`

// kubeProxyConfig: %[1]s kubeconfig, %[2]s node name, %[3]s pod CIDR,
// %[4]d healthz port, %[5]d metrics port, %[6]s node address. The
// conntrack settings are zero so that kube-proxy leaves the host's
// nf_conntrack sysctls as they are; NodePorts open on the node's bridge
// address alone.
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
clusterCIDR: %[3]s
healthzBindAddress: 127.0.0.1:%[4]d
metricsBindAddress: 127.0.0.1:%[5]d
nodePortAddresses: ["%[6]s/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`

// kubeletConfig: %[1]s nodeDir, %[2]s node address, %[3]d port, %[4]d
// healthz port, %[5]s cluster DNS, %[6]s resolv.conf.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[1]s/containerd.sock
address: %[2]s
port: %[3]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[4]d
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
clusterDNS: ["%[5]s"]
resolvConf: %[6]s
podLogsDir: %[1]s/pod-logs
volumePluginDir: %[1]s/volume-plugins
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
registerNode: true
rotateCertificates: false
serializeImagePulls: false
`
