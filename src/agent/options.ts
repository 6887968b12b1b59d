import type { HealthRoute } from './health.js';

/** What the agent needs to run; the `tulle agent` command builds it from flags and TULLE_* variables. */
export const DEFAULT_STATE_DIR = '/var/lib/tulle';
export const DEFAULT_HEALTH_ADDR = '127.0.0.1:9465';
/** host-local's directory for the network `tulle install` configures: /var/lib/cni/networks/<network name>. */
export const DEFAULT_CNI_IPAM_DIR = '/var/lib/cni/networks/tulle';

export interface AgentOptions {
  /** Store URL and key prefix, for logs (the store itself is opened by the caller's openStore). */
  store: string;
  prefix: string;
  /** Underlay interface name, or an address on it; default: the default route's interface. */
  iface?: string;
  /** Address peers send VXLAN packets to; default: the underlay interface's first IPv4 address. */
  publicIP?: string;
  subnetFile: string;
  /** Keeps the VTEP MAC and the traffic-rules record across restarts. */
  stateDir: string;
  ipMasq: boolean;
  healthAddr: string;
  /** Extra read-only endpoints on the health server (`tulle trace`'s /trace). */
  healthRoutes?: HealthRoute;
  /** Seconds between full reconciles (drift is also repaired at once from netlink events). */
  reconcileInterval: number;
  /** Seconds between checks that the traffic rules are intact. */
  rulesInterval: number;
  /** Drop VXLAN packets for the network's VNI from hosts without a lease (src/overlay/guard.ts); default on. */
  vxlanGuard?: boolean;
  /** L2 networks: the bridge to join instead of the config's Backend.Bridge (`--bridge`). */
  bridge?: string;
  /**
   * L2 Flood "none": the CNI plugin's IPAM directory for this network (`<dataDir>/<network name>`); at start the
   * agent deletes this host's endpoint records whose address no file there holds (`--cni-ipam-dir`).
   */
  cniIpamDir?: string;
}
