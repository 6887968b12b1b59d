/**
 * The CNI side of Flood "none" (L2 networks): after ADD has made the pod's veth, the pod's address and eth0 MAC
 * are published in the store; DEL withdraws them. The plugin does not talk to the store itself here: whoever runs
 * ADD/DEL (the agent's CNI server, or the CLI entry point) passes `PodEndpointHooks`, e.g. subnet/pod-endpoints'
 * `storePodEndpointHooks(registry, prefix, publicIP)`, so that this folder keeps to its layer.
 *
 *   ADD  const pod = podEndpointOf(result, ifName); if (pod?.mac) await hooks.publish({ ip: pod.ip, mac: pod.mac })
 *        (a failure fails the ADD, which then undoes its attachment: a pod without a record is unreachable)
 *   DEL  const pod = prevResult && podEndpointOf(prevResult, ifName); await hooks.withdraw(pod ?? { ip: <released address> })
 */
import { isIPv4 } from 'node:net';
import type { CniResult } from './result.js';

export interface PodEndpoint {
  ip: string;
  /** The sandbox interface's MAC; undefined when the result does not say it. */
  mac?: string;
}

/** Publish/withdraw the record of a pod of this host (the host's PublicIP is the hooks' own business). */
export interface PodEndpointHooks {
  publish(pod: { ip: string; mac: string }): Promise<void>;
  withdraw(pod: PodEndpoint): Promise<unknown>;
}

/** The pod's IPv4 address and MAC from a CNI result: the interface `ifName` inside the sandbox and its first IPv4. */
export function podEndpointOf(result: Pick<CniResult, 'interfaces' | 'ips'>, ifName: string): PodEndpoint | undefined {
  const index = result.interfaces.findIndex((i) => i.name === ifName && i.sandbox !== undefined);
  if (index < 0) return undefined;
  const ip = result.ips.find((a) => a.interface === index && isIPv4(a.address.split('/')[0]!))?.address.split('/')[0];
  if (ip === undefined) return undefined;
  const mac = result.interfaces[index]!.mac?.toLowerCase();
  return mac === undefined ? { ip } : { ip, mac };
}
