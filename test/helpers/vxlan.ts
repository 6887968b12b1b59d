/**
 * Sending hand-built VXLAN packets from inside a namespace, as an attacker or a peer would: the VXLAN header and
 * inner frame are built with tulle's codec (src/wire) in the test process and sent as one UDP datagram by a
 * short-lived `node` run with `ip netns exec`, bound to the chosen source address.
 */
import { execIn } from '../../src/netns/netns.js';
import { buildVxlan, icmpEchoFrame } from '../../src/wire/index.js';
import { ipJson } from './netns.js';

const SEND_SCRIPT = `
import dgram from 'node:dgram';
const o = JSON.parse(process.env.VXLAN_SEND);
const sock = dgram.createSocket('udp4');
await new Promise((resolve, reject) => { sock.once('error', reject); sock.bind(0, o.srcIp, resolve); });
await new Promise((resolve, reject) => sock.send(Buffer.from(o.payload, 'hex'), o.port, o.dstIp, (err) => (err ? reject(err) : resolve())));
sock.close();
`;

export interface VxlanProbe {
  /** Outer addresses: the sender's (must be on an interface of `ns`) and the receiving host's. */
  srcIp: string;
  dstIp: string;
  port: number;
  vni: number;
  /** Inner ping: to the receiving VTEP's MAC, from a made-up overlay address to `innerDstIp`. */
  vtepMac: string;
  innerSrcIp: string;
  innerDstIp: string;
  /** Echo identifier, so a capture can tell probes apart. */
  id?: number;
}

/** The UDP payload of a probe: VXLAN header + inner Ethernet frame with an ICMP echo request. */
export function probePayload(p: VxlanProbe): Buffer {
  const inner = icmpEchoFrame({ srcMac: '02:00:00:00:be:ef', dstMac: p.vtepMac, srcIp: p.innerSrcIp, dstIp: p.innerDstIp, id: p.id ?? 0x6775, seq: 1 });
  return buildVxlan({ vni: p.vni }, inner);
}

/** Send `count` probes from namespace `ns`. */
export async function sendVxlan(ns: string, p: VxlanProbe, count = 1): Promise<void> {
  const env = { ...process.env, VXLAN_SEND: JSON.stringify({ srcIp: p.srcIp, dstIp: p.dstIp, port: p.port, payload: probePayload(p).toString('hex') }) };
  for (let i = 0; i < count; i++) await execIn(ns, [process.execPath, '--input-type=module', '-e', SEND_SCRIPT], { env });
}

/** Packets a device has received (`ip -s -j link show DEV`): for a VTEP, the packets it decapsulated. */
export async function rxPackets(ns: string, dev: string): Promise<number> {
  const [link] = await ipJson<Array<{ stats64: { rx: { packets: number } } }>>(ns, '-s', 'link', 'show', dev);
  return link!.stats64.rx.packets;
}
