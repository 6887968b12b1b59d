/**
 * The pod side of Flood "none": what the CNI plugin's L2 ADD/DEL and the agent's start call, so that the store
 * holds exactly one record per pod of this host.
 *
 *  - ADD, once the pod's veth exists and its MAC is known: `publishPodEndpoint` (a failure fails the ADD: a pod
 *    without a record is unreachable from every other host).
 *  - DEL: `withdrawPodEndpoint`. With the pod's MAC (from prevResult) only a record still naming that MAC goes; a
 *    DEL that no longer knows the MAC removes the record only while it names this host (the address is from this
 *    host's slice, so such a record is this pod's or a stale one of an earlier pod).
 *  - Agent start: `pruneStaleEndpoints` deletes this host's records whose IP the CNI's IPAM no longer holds. The
 *    IPAM directory (`/var/lib/cni/networks/<network>`, host-local's format: one file per reserved IPv4 address)
 *    is the host's own truth of which pods exist: a file is written before ADD publishes and removed by DEL after
 *    it withdraws, so a pod that still has a file may still be running and keeps its record.
 */
import { readdirSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { MalformedEndpointError, pruneOwnEndpoints, publishEndpoint, endpointKey, parseEndpointRecord, withdrawEndpoint } from './endpoints.js';
import type { Registry } from '../store/registry.js';

export interface PodEndpoint {
  ip: string;
  /** The pod's eth0 MAC; on DEL it may be unknown (no prevResult, netns gone). */
  mac?: string;
  /** This host's underlay address (its lease's PublicIP). */
  publicIP: string;
}

/** CNI ADD: publish the pod's record. */
export async function publishPodEndpoint(store: Registry, prefix: string, pod: PodEndpoint & { mac: string }): Promise<void> {
  await publishEndpoint(store, prefix, { ip: pod.ip, mac: pod.mac, publicIP: pod.publicIP });
}

/** CNI DEL: withdraw the pod's record (idempotent); true when one was deleted. */
export async function withdrawPodEndpoint(store: Registry, prefix: string, pod: PodEndpoint): Promise<boolean> {
  if (pod.mac !== undefined) return withdrawEndpoint(store, prefix, pod.ip, pod.mac);
  const key = endpointKey(prefix, pod.ip);
  const stored = await store.get(key);
  if (!stored) return false;
  try {
    if (parseEndpointRecord(key, stored.value).publicIP !== pod.publicIP) return false;
  } catch (err) {
    if (err instanceof MalformedEndpointError) return false; // not tulle's shape: never delete what we cannot read
    throw err;
  }
  return store.delete(key, stored.modRevision);
}

/** The addresses the CNI's IPAM holds in `ipamDir` (files named like an IPv4 address); empty when there is none. */
export function heldAddresses(ipamDir: string): Set<string> {
  try {
    return new Set(readdirSync(ipamDir).filter((name) => isIPv4(name)));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
    throw err;
  }
}

/** Agent start: delete this host's records for addresses the IPAM no longer holds. Returns the deleted keys. */
export async function pruneStaleEndpoints(store: Registry, prefix: string, publicIP: string, ipamDir: string): Promise<string[]> {
  return pruneOwnEndpoints(store, prefix, publicIP, heldAddresses(ipamDir));
}

/** The CNI's PodEndpointHooks (src/cni/l2-endpoint.ts) for this host, backed by the store. */
export function storePodEndpointHooks(
  store: Registry,
  prefix: string,
  publicIP: string,
): { publish(pod: { ip: string; mac: string }): Promise<void>; withdraw(pod: { ip: string; mac?: string }): Promise<boolean> } {
  return {
    publish: (pod) => publishPodEndpoint(store, prefix, { ...pod, publicIP }),
    withdraw: (pod) => withdrawPodEndpoint(store, prefix, { ...pod, publicIP }),
  };
}
