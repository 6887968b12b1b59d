/**
 * Every kernel change the lab makes to its namespaces, each one iproute2 command run against a named namespace
 * (`ip -n NS ...`, `ip netns exec NS sysctl ...`). Kept in this one module so it can move to the rtnetlink
 * client (src/netlink) without touching the rest of the lab. None of these ever touches the root namespace:
 * every command names its namespace, and veth pairs are created with both ends already in place.
 */
import { run } from '../base/exec.js';
import { execIn } from '../netns/netns.js';

/** `ip -n NS link add NAME type bridge` + `ip -n NS link set NAME up` (STP off: ports forward at once). */
export async function addBridge(namespace: string, name: string): Promise<void> {
  await run(['ip', '-n', namespace, 'link', 'add', name, 'type', 'bridge', 'stp_state', '0']);
  await run(['ip', '-n', namespace, 'link', 'set', name, 'up']);
}

/**
 * `ip -n A link add NAME_A type veth peer name NAME_B netns B`: a veth pair whose ends are born in namespaces A
 * and B, so neither end ever exists in the root namespace.
 */
export async function addVethPair(a: { namespace: string; name: string }, b: { namespace: string; name: string }): Promise<void> {
  await run(['ip', '-n', a.namespace, 'link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.namespace]);
}

/** `ip -n NS link set NAME master BRIDGE up`: plug a port into the switch. */
export async function attachToBridge(namespace: string, name: string, bridge: string): Promise<void> {
  await run(['ip', '-n', namespace, 'link', 'set', name, 'master', bridge, 'up']);
}

/** `ip -n NS link set NAME up` */
export async function setLinkUp(namespace: string, name: string): Promise<void> {
  await run(['ip', '-n', namespace, 'link', 'set', name, 'up']);
}

/** `ip -n NS addr add ADDRESS/PREFIX dev NAME` */
export async function addAddress(namespace: string, name: string, address: string, prefixLength: number): Promise<void> {
  await run(['ip', '-n', namespace, 'addr', 'add', `${address}/${prefixLength}`, 'dev', name]);
}

/** `ip -n NS route add default via GATEWAY dev NAME` */
export async function addDefaultRoute(namespace: string, gateway: string, name: string): Promise<void> {
  await run(['ip', '-n', namespace, 'route', 'add', 'default', 'via', gateway, 'dev', name]);
}

/** `ip netns exec NS sysctl -qw net.ipv4.ip_forward=1`: the namespace routes packets between its interfaces. */
export async function enableForwarding(namespace: string): Promise<void> {
  await execIn(namespace, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
}
