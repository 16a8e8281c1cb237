#!/usr/bin/env bash
# The real programs the tests drive, installed if missing (Debian/Ubuntu, as
# root): what a fresh machine needs before `cargo test --workspace --locked`.
# .ci/run calls it; so does the README's second command.
#   curl, python3: tests/real_tools.rs, tests/demo.rs, the HTTP servers
#   mbpoll, python3-pymodbus: a real Modbus/TCP client and server (tests/vpn_netns.rs)
#   snmp, snmpd: a real UDP request/answer (tests/vpn_netns.rs)
#   iputils-ping: ping through the VPN
#   iproute2: ip (network namespaces, veth pairs), ss
#   iptables: the NAT in front of a relay (tests/relay_nat.rs), drops in the VPN tests
#   util-linux: setpriv (a client without CAP_NET_ADMIN)
set -euo pipefail

need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v mbpoll >/dev/null || need+=(mbpoll)
/usr/bin/python3 -c 'import pymodbus' 2>/dev/null || need+=(python3-pymodbus)
command -v snmpget >/dev/null || need+=(snmp)
command -v snmpd >/dev/null || [ -x /usr/sbin/snmpd ] || need+=(snmpd)
command -v ping >/dev/null || need+=(iputils-ping)
{ command -v ip >/dev/null && command -v ss >/dev/null; } || need+=(iproute2)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# The VPN client's TUN device node (absent in some containers).
[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun; }
curl --version | head -n1
python3 --version
mbpoll -V 2>&1 | head -n1 || true
