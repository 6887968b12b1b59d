/**
 * Choosing the underlay: the interface VXLAN packets leave by and the public IP they carry (flannel's --iface
 * and --public-ip). Order: the interface named by the user (or the one holding the given IP); else the
 * interface of the IPv4 default route; else the only up, non-loopback interface with an IPv4 address. Several
 * candidates and no default route is an error that lists them, never a guess.
 */
import { TulleError } from '../base/errors.js';
import { parseCidr4, type Cidr4 } from '../base/ip.js';
import type { NetlinkClient } from '../netlink/index.js';

export interface Underlay {
  name: string;
  index: number;
  mtu: number;
  /** The address peers send VXLAN packets to. */
  publicIP: string;
  /** Networks directly connected on this interface (for DirectRouting). */
  networks: Cidr4[];
}

export class UnderlayError extends TulleError {
  constructor(message: string, code = 'TLE_UNDERLAY') {
    super(code, message);
  }
}

/**
 * Link kinds never chosen without being named: tunnels (tulle's own VTEP among them) and bridges (cni0, docker0
 * hold pod gateways). A veth is allowed: it is the uplink of every container or namespace host (the lab's).
 */
const NOT_UNDERLAY = new Set(['vxlan', 'bridge', 'dummy', 'tun', 'wireguard', 'ipip', 'gre']);

/** lo: no kind, the all-zero MAC; its name in every namespace. */
function isLoopback(l: { name: string; kind: string | undefined; mac: string | undefined }): boolean {
  return l.name === 'lo' || (l.kind === undefined && l.mac === '00:00:00:00:00:00');
}

export async function pickUnderlay(nl: NetlinkClient, options: { iface?: string; publicIP?: string }): Promise<Underlay> {
  const links = await nl.listLinks();
  const addrs = (await nl.listAddresses()).filter((a) => a.family === 4 && a.scope !== 'host');
  const addrsOf = (name: string) => addrs.filter((a) => a.dev === name);

  let chosen: string | undefined;
  if (options.iface) {
    const byName = links.find((l) => l.name === options.iface);
    const byAddr = addrs.find((a) => a.address === options.iface) ?? (/^127\./.test(options.iface) ? { dev: 'lo' } : undefined);
    chosen = byName?.name ?? byAddr?.dev;
    if (!chosen)
      throw new UnderlayError(
        `--iface: ${JSON.stringify(options.iface)} is neither an interface nor an address on this host (interfaces: ${links.map((l) => l.name).join(', ')})`,
        'TLE_UNDERLAY_NOT_FOUND',
      );
  } else {
    const defaults = (await nl.listRoutes({ table: 254 })).filter((r) => r.dst === 'default' && r.dev);
    chosen = defaults[0]?.dev;
    if (!chosen) {
      const candidates = links.filter((l) => l.up && l.name !== 'lo' && !NOT_UNDERLAY.has(l.kind ?? '') && addrsOf(l.name).length > 0);
      if (candidates.length === 0)
        throw new UnderlayError(
          'no interface can carry the overlay: none is up with an IPv4 address (and there is no default route); name one with --iface',
          'TLE_UNDERLAY_NOT_FOUND',
        );
      if (candidates.length > 1) {
        throw new UnderlayError(
          `several interfaces could carry the overlay (${candidates.map((c) => c.name).join(', ')}) and there is no default route to choose by: name one with --iface`,
          'TLE_UNDERLAY_AMBIGUOUS',
        );
      }
      chosen = candidates[0]!.name;
    }
  }
  const link = links.find((l) => l.name === chosen)!;
  if (isLoopback(link)) {
    throw new UnderlayError(
      `--iface: ${JSON.stringify(options.iface ?? link.name)} is the loopback interface ${link.name}: packets on it never leave this host, so it cannot carry the overlay to other hosts (name the interface that reaches them, like eth0)`,
      'TLE_UNDERLAY_LOOPBACK',
    );
  }
  if (options.publicIP && /^127\./.test(options.publicIP)) {
    throw new UnderlayError(
      `--public-ip: ${JSON.stringify(options.publicIP)} is a loopback address: other hosts cannot send VXLAN packets to it (give an address they reach this host by)`,
      'TLE_UNDERLAY_LOOPBACK',
    );
  }
  // lo's 127.0.0.1 has host scope and is not in `addrs`: a loopback interface was refused above.
  const own = addrsOf(link.name);
  let publicIP = options.publicIP;
  if (!publicIP) {
    if (own.length === 0)
      throw new UnderlayError(`${link.name} has no IPv4 address to use as the public IP: give one with --public-ip`, 'TLE_UNDERLAY_NOT_FOUND');
    publicIP = own[0]!.address;
  }
  return { name: link.name, index: link.index, mtu: link.mtu, publicIP, networks: own.map((a) => parseCidr4(`${a.address}/${a.prefix}`, 'address', true)) };
}
