/**
 * Kernel entries in iproute2's own words (what `ip route`, `ip neigh` and `bridge fdb` print), and the text
 * form of a trace: one hop a few lines, like seed 003's walk.
 */
import { protocolName, type Fdb, type Neighbor, type Route } from '../netlink/index.js';
import type { TraceResult } from './types.js';

/** A route as `ip route` prints it: `10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto 84 onlink`. */
export function routeText(r: Route): string {
  const dst = r.dst.replace(/\/32$/, ''); // ip prints host routes without their /32
  const parts = [r.type && r.type !== 'unicast' ? `${r.type} ${dst}` : dst];
  if (r.via) parts.push(`via ${r.via}`);
  if (r.dev) parts.push(`dev ${r.dev}`);
  if (r.table !== undefined && r.table !== 254) parts.push(`table ${r.table === 255 ? 'local' : r.table}`);
  if (r.protocol) parts.push(`proto ${protocolName(r.protocol)}`);
  if (r.scope && r.scope !== 'universe') parts.push(`scope ${r.scope}`);
  if (r.src) parts.push(`src ${r.src}`);
  if (r.metric) parts.push(`metric ${r.metric}`);
  if (r.onlink) parts.push('onlink');
  return parts.join(' ');
}

/** `10.244.2.0 dev flannel.1 lladdr 6e:... PERMANENT` */
export function neighText(n: Neighbor): string {
  return `${n.ip} dev ${n.dev}${n.mac ? ` lladdr ${n.mac}` : ''}${n.state ? ` ${n.state.toUpperCase()}` : ''}`;
}

/** `6e:... dev flannel.1 dst 192.0.2.12 self permanent` */
export function fdbText(f: Fdb): string {
  return (
    `${f.mac} dev ${f.dev}${f.dst ? ` dst ${f.dst}` : ''}${f.port ? ` port ${f.port}` : ''}${f.vni ? ` vni ${f.vni}` : ''}` +
    `${f.master ? ` master ${f.master}` : ''}${f.self !== false && !f.master ? ' self' : ''}${f.permanent !== false ? ' permanent' : ''}`
  );
}

/** The walk as text: a numbered hop per kernel decision, the outer header, then the verdict. */
export function formatTrace(r: TraceResult): string {
  const p = r.probe;
  const lines = [`trace ${p.proto}${p.port !== undefined ? ` port ${p.port}` : ''} ${p.src} -> ${p.dst}`, ''];
  r.hops.forEach((h, i) => {
    const live =
      h.seen === undefined
        ? ''
        : h.seen
          ? `   [seen, ${h.frame!.length} bytes${h.frame?.outer ? `: ${h.frame.outer.src}.${h.frame.outer.srcPort} > ${h.frame.outer.dst}.${h.frame.outer.dstPort} vni ${h.frame.outer.vni}` : ''}]`
          : '   [NOT seen]';
    const ns = h.namespace.startsWith('(') ? h.namespace : `(${h.namespace})`;
    lines.push(`${String(i + 1).padStart(2)}  ${h.host} ${ns} ${h.device}: ${h.action}${live}`);
    lines.push(`      ${h.entry}`);
  });
  if (r.outer) {
    const o = r.outer;
    lines.push(
      '',
      `outer: ${o.src} > ${o.dst} udp dport ${o.dstPort} sport ${o.srcPortRange[0]}-${o.srcPortRange[1]} (flow hash) vni ${o.vni}; inner ${o.innerSrcMac} > ${o.innerDstMac}`,
    );
  }
  if (r.vanishedAt !== undefined)
    lines.push(r.vanishedAt ? `live: the probe vanished at ${r.vanishedAt.host} ${r.vanishedAt.device}` : 'live: the probe was seen at every hop');
  lines.push('', `${r.verdict}: ${r.reason}`);
  return lines.join('\n') + '\n';
}
