#!/usr/bin/env bash
# The one installer of tulle's system dependencies, used by `npm test`, `npm run demo`, `npm run bench` and
# .ci/run. It installs only what is missing (Debian/Ubuntu, as root); elsewhere it stops with a message that
# names what is missing. Quiet when everything is there.
set -euo pipefail

# "check:package" pairs: a program on PATH (or an absolute file) and the Debian package that provides it.
REQUIREMENTS=(
  "ip:iproute2"
  "bridge:iproute2"
  "ping:iputils-ping"
  "sysctl:procps"
  "tcpdump:tcpdump"
  "tshark:tshark"
  "nft:nftables"
  "iptables:iptables"
  "ipset:ipset"
  "etcd:etcd-server"
  "etcdctl:etcd-client"
  "iperf3:iperf3"
  "/usr/lib/cni/bridge:containernetworking-plugins"
  "make:make"
  "g++:g++"
  "python3:python3"
  "systemd-analyze:systemd"
  # the podman e2e test: a real runtime driving the plugin (CNI backend), crun, and a static busybox for its image
  "podman:podman"
  "crun:crun"
  "nsenter:util-linux"
  "/usr/share/doc/busybox-static:busybox-static"
)

missing_pkgs=()
missing_what=()
for req in "${REQUIREMENTS[@]}"; do
  check=${req%%:*}
  pkg=${req#*:}
  if [[ $check == /* ]]; then
    [[ -e $check ]] && continue
  else
    command -v "$check" >/dev/null 2>&1 && continue
  fi
  missing_what+=("$check")
  [[ " ${missing_pkgs[*]} " == *" $pkg "* ]] || missing_pkgs+=("$pkg")
done

if [[ ${#missing_pkgs[@]} -eq 0 ]]; then
  exit 0
fi

echo "tulle: installing missing system packages: ${missing_pkgs[*]} (for: ${missing_what[*]})" >&2
if [[ $(id -u) -ne 0 ]]; then
  echo "tulle: not root, so cannot install them. Run as root, or: apt-get install ${missing_pkgs[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "tulle: no apt-get on this system. Install the packages providing: ${missing_what[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer before it asks.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
echo "tulle: installed ${missing_pkgs[*]}" >&2
