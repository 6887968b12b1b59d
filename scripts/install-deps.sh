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
  # the docker e2e test (seed 001 for real): Debian's dockerd 20.10, run only inside lab hosts. Absolute paths:
  # another docker CLI may come first in PATH.
  "/usr/sbin/dockerd:docker.io"
  "/usr/bin/docker:docker.io"
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

# Packaged daemons (docker.io's dockerd and containerd) must never start in this machine's own namespaces: the tests
# run their own copies inside lab hosts. A policy-rc.d that answers 101 ("action forbidden") keeps invoke-rc.d and
# deb-systemd-invoke from starting them during the install; one already there is left as it is.
policy=/usr/sbin/policy-rc.d
own_policy=
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# written by tulle scripts/install-deps.sh for the duration of one apt-get install\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  own_policy=1
  trap 'rm -f "$policy"' EXIT
elif [[ " ${missing_pkgs[*]} " == *" docker.io "* ]]; then
  # Someone else's policy: used as it is, but it must forbid starting the daemons, or docker.io is not installed.
  for svc in docker containerd; do
    rc=0
    "$policy" "$svc" start >/dev/null 2>&1 || rc=$?
    if [[ $rc -ne 101 ]]; then
      echo "tulle: $policy answers $rc (not 101, \"forbidden\") for \"$svc start\", so installing docker.io would start $svc on this machine; make it answer 101 during the install, or install docker.io yourself and run: systemctl disable --now docker.service docker.socket containerd.service" >&2
      exit 1
    fi
  done
fi
# Units that a package enables on its first install and that we disable again: only those of packages not yet installed.
new_units=()
if [[ " ${missing_pkgs[*]} " == *" docker.io "* ]]; then
  new_units+=(docker.service docker.socket)
  dpkg -s containerd >/dev/null 2>&1 || new_units+=(containerd.service)
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null

if [[ ${#new_units[@]} -gt 0 ]]; then
  # `systemctl disable` edits the unit links and works whether or not systemd is running (it is not in containers).
  systemctl disable --quiet "${new_units[@]}" 2>/dev/null || true
  for unit in "${new_units[@]}"; do
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      echo "tulle: could not disable $unit after installing it; disable it with: systemctl disable $unit" >&2
      exit 1
    fi
  done
fi
if [[ -n $own_policy ]]; then
  rm -f "$policy"
  trap - EXIT
fi
echo "tulle: installed ${missing_pkgs[*]}" >&2
