/**
 * The shapes of a trace: the probe packet, one hop per kernel decision on its way, the outer header of the
 * VXLAN hop, and the verdict. `--json` prints a TraceResult as it is.
 */

export const PROTOCOLS = ['icmp', 'udp', 'tcp'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** The packet being traced (the one `--live` sends). */
export interface Probe {
  src: string;
  dst: string;
  proto: Protocol;
  /** Destination port for udp/tcp. */
  port?: number;
}

/** Why a walk stops short of delivery; each names a kernel entry (or its absence) at one hop. */
export const VERDICTS = [
  'delivered',
  'no-route',
  'neighbour-missing',
  'neighbour-wrong-mac',
  'fdb-missing',
  'fdb-wrong-host',
  'stale-vtep-mac',
  'vtep-down',
  'device-down',
  'vni-mismatch',
  'port-mismatch',
  'mtu',
  'not-leased',
  'firewall-drop',
  'not-forwarded',
  'no-such-pod',
  'remote-unknown',
] as const;
export type Verdict = (typeof VERDICTS)[number];

/** The outer header the VTEP puts on the frame, as its device and FDB entry decide it. */
export interface OuterHeader {
  src: string;
  dst: string;
  /** UDP destination port (the VTEP's dstport, or the FDB entry's port). */
  dstPort: number;
  /** The range the flow-hashed UDP source port comes from. */
  srcPortRange: [number, number];
  vni: number;
  /** Inner Ethernet addresses: this VTEP's MAC, and the remote VTEP's MAC from the neighbour entry. */
  innerSrcMac: string;
  innerDstMac: string;
}

/** What `--live` saw of the probe at one hop. */
export interface SeenFrame {
  /** Frame length on that interface (98 for a default ping inside the overlay, 148 on the underlay). */
  length: number;
  /** The outer header as captured, on the underlay hops. */
  outer?: { src: string; dst: string; srcPort: number; dstPort: number; vni: number };
}

export interface Hop {
  /** Host (or pod, router) name as the caller knows it. */
  host: string;
  namespace: string;
  /** The interface this hop happens on; `--live` captures there. */
  device: string;
  /** What the kernel does here, in a few words. */
  action: string;
  /** The kernel entry used, in `ip`/`bridge` words. */
  entry: string;
  /** Only with --live: whether the probe was captured on `device`. */
  seen?: boolean;
  frame?: SeenFrame;
}

export interface TraceResult {
  probe: Probe;
  verdict: Verdict;
  /** One sentence: where it was delivered, or the hop and entry that break the path and why. */
  reason: string;
  hops: Hop[];
  outer: OuterHeader | null;
  /** Only with --live: the first hop where the probe was not captured. */
  vanishedAt?: { host: string; device: string } | null;
}
