/**
 * The CNI commands, once the environment and stdin are known to be well formed. Each returns the object to
 * print on stdout (ADD) or nothing (DEL, CHECK, STATUS, GC), or throws a CniError. Loaded lazily by main.ts, so
 * VERSION and malformed calls never load the netlink client.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { formatIPv4, parseCidr4 } from '../base/ip.js';
import { readSubnetEnv, type SubnetEnv } from '../config/subnet-env.js';
import { addAttachment, checkAttachment, removeAttachment } from './attach.js';
import { CNI_CODES, CniError, asCniError, invalidConfig, invalidEnvironment, type CniVersion } from './errors.js';
import { readEnv, type CniEnv } from './env.js';
import { IpamStore, allocate, describeRange, freeAddresses, hostRange, ownedBy, type AddressRange, type Allocation, type Requested } from './ipam.js';
import { podEndpointOf, type PodEndpointHooks } from './l2-endpoint.js';
import { hostVethName } from './names.js';
import { checkMac, checkRequestedIP, parseNetConf, type NetConf } from './netconf.js';
import { appendResult, formatResult, parseResult } from './result.js';

/**
 * Run the command named in `env` with `stdin` as the network configuration. `hooks`: how this host publishes and
 * withdraws pod endpoint records (L2 Flood "none"); only the agent has them, since only it holds the store.
 */
export async function runCommand(env: NodeJS.ProcessEnv, stdin: string, hooks?: PodEndpointHooks): Promise<object | undefined> {
  const e = readEnv(env);
  const conf = parseNetConf(stdin);
  try {
    switch (e.command) {
      case 'ADD':
        return await add(e, conf, hooks);
      case 'DEL':
        return await del(e, conf, hooks);
      case 'CHECK':
        return await check(e, conf);
      case 'STATUS':
        return await status(conf);
      case 'GC':
        return await gc(conf, hooks);
      default:
        throw new Error(`runCommand: ${e.command} is handled by main`);
    }
  } catch (err) {
    // Errors answer in the config's version, like results.
    const c = asCniError(err);
    c.cniVersion = conf.cniVersion;
    throw c;
  }
}

/**
 * subnet.env: missing is "try again later" (11), unparsable is error 105. When the config did not name the file,
 * the message says the default was used: the usual mistake is a config whose `subnetFile` is not the agent's
 * --subnet-file, and the plain "is the agent running?" would send the user to the wrong place.
 */
function loadSubnetEnv(conf: NetConf): SubnetEnv {
  const path = conf.subnetFile;
  try {
    return readSubnetEnv(path);
  } catch (err) {
    const c = asCniError(err);
    if (c.cniCode === CNI_CODES.INTERNAL) throw new CniError(CNI_CODES.SUBNET_ENV_INVALID, `${path}: ${(err as Error).message}`, { cause: err });
    if (c.cniCode === CNI_CODES.TRY_AGAIN_LATER && conf.defaulted.has('subnetFile')) {
      throw new CniError(c.cniCode, `${c.message} (the config has no "subnetFile", so the default ${path} was used; it must be the agent's --subnet-file)`, {
        cause: err,
      });
    }
    throw c;
  }
}

/**
 * The address and MAC the runtime asked for: CNI_ARGS `IP=`/`MAC=` (podman --ip/--mac-address, the reference
 * plugins' names) or runtimeConfig `ips`/`mac` (the capabilities). Both sources naming different values is an error.
 */
function requestedAttachment(e: CniEnv, conf: NetConf): { ip: Requested | undefined; mac: string | undefined } {
  const argIP = e.args.get('IP');
  let ip: Requested | undefined;
  if (argIP !== undefined && argIP !== '') {
    if (argIP.includes(',')) throw invalidEnvironment('CNI_ARGS IP', argIP, 'asks for more than one address (a tulle pod has one IPv4 address)');
    ip = { ip: checkRequestedIP('CNI_ARGS IP', argIP, invalidEnvironment), source: 'CNI_ARGS IP' };
  }
  if (conf.requestedIP !== undefined) {
    if (ip && ip.ip !== conf.requestedIP)
      throw invalidEnvironment('CNI_ARGS IP', argIP, `differs from runtimeConfig.ips (${conf.requestedIP}); ask for one address`);
    ip ??= { ip: conf.requestedIP, source: 'runtimeConfig.ips' };
  }
  const argMac = e.args.get('MAC');
  let mac = argMac === undefined || argMac === '' ? undefined : checkMac('CNI_ARGS MAC', argMac, invalidEnvironment);
  if (conf.requestedMac !== undefined) {
    if (mac && mac !== conf.requestedMac)
      throw invalidEnvironment('CNI_ARGS MAC', argMac, `differs from runtimeConfig.mac (${conf.requestedMac}); ask for one MAC address`);
    mac ??= conf.requestedMac;
  }
  return { ip, mac };
}

/**
 * What an attachment uses from subnet.env. L2 (seeds 001/002): the host's lease is only a slice to hand out
 * addresses from; the pod gets the whole Network's prefix (every pod of every host is on-link), no gateway, and
 * joins the bridge the agent's network uses (netconf `bridge`, else TULLE_L2_BRIDGE in subnet.env).
 */
function attachmentBasis(conf: NetConf, subnet: SubnetEnv): { range: AddressRange; prefix: number; bridge: string } {
  if (conf.mode !== 'l2') {
    if (subnet.l2Bridge)
      throw invalidConfig(
        'mode',
        conf.mode,
        `does not fit ${conf.subnetFile}, which describes an l2 network (TULLE_L2_BRIDGE=${subnet.l2Bridge}); use "mode": "l2"`,
      );
    const range = hostRange(subnet.subnet, subnet.gateway);
    return { range, prefix: range.subnet.prefix, bridge: conf.bridge };
  }
  const bridge = conf.defaulted.has('bridge') ? subnet.l2Bridge : conf.bridge;
  if (!bridge)
    throw invalidConfig('mode', 'l2', `needs the bridge: ${conf.subnetFile} names none (the agent's network is not an l2 one?) and the config has no "bridge"`);
  // No gateway: the slice's own network address (never handed out) stands in, so .1 is a pod address too.
  const range = hostRange(subnet.subnet, subnet.subnet.split('/')[0]!);
  return { range, prefix: parseCidr4(subnet.network, 'FLANNEL_NETWORK').prefix, bridge };
}

/**
 * L2 Flood "none" (subnet.env's TULLE_L2_FLOOD): a pod is reachable from other hosts only through its endpoint
 * record, and only the agent holds the store to write it. The hooks, or why this ADD cannot be served.
 */
function endpointHooksFor(conf: NetConf, subnet: SubnetEnv, hooks: PodEndpointHooks | undefined): PodEndpointHooks | undefined {
  if (conf.mode !== 'l2' || subnet.l2Flood !== 'none') return undefined;
  if (!hooks) {
    throw new CniError(
      CNI_CODES.AGENT_REQUIRED,
      `${conf.subnetFile} describes an l2 network with Backend.Flood "none" (TULLE_L2_FLOOD=none): a pod there is reachable only once the tulle agent publishes its endpoint in the store, so ADD needs the agent running on this host, past its start-up (its lease taken), and serving its CNI socket (TULLE_CNI_SOCKET); this plugin alone cannot do it`,
    );
  }
  return hooks;
}

async function add(e: CniEnv, conf: NetConf, hooks?: PodEndpointHooks): Promise<object> {
  const prev = conf.prevResult === undefined ? undefined : parseResult(conf.prevResult);
  const wanted = requestedAttachment(e, conf);
  const subnet = loadSubnetEnv(conf);
  const { range, prefix, bridge } = attachmentBasis(conf, subnet);
  const publisher = endpointHooksFor(conf, subnet, hooks);
  const store = IpamStore.open(conf.dataDir, conf.name);
  try {
    const ip = await allocate(store, range, e.containerId, e.ifName, wanted.ip);
    try {
      const hostVeth = hostVethName(e.containerId, e.ifName);
      const attached = await addAttachment({
        mode: conf.mode,
        containerId: e.containerId,
        ifName: e.ifName,
        netns: e.netns!,
        hostVeth,
        bridge,
        hairpin: conf.hairpinMode,
        mtu: conf.mtu ?? subnet.mtu,
        address: formatIPv4(ip),
        prefix,
        gateway: subnet.gateway,
        network: subnet.network,
        isDefaultGateway: conf.isDefaultGateway,
        mac: wanted.mac,
      });
      if (publisher) await publishOrUndo(publisher, attached, e.ifName, hostVeth);
      return formatResult(appendResult(prev, attached, conf.dns), conf.cniVersion);
    } catch (err) {
      await store.withLock(() => store.releaseAddress(formatIPv4(ip)));
      throw err;
    }
  } finally {
    store.close();
  }
}

/** Publish the pod's endpoint record; when that fails the attachment goes again (the caller releases the address). */
async function publishOrUndo(hooks: PodEndpointHooks, attached: Parameters<typeof podEndpointOf>[0], ifName: string, hostVeth: string): Promise<void> {
  const pod = podEndpointOf(attached, ifName);
  try {
    if (!pod?.mac) throw new Error(`the attachment reports no address and MAC for ${ifName}`);
    await hooks.publish({ ip: pod.ip, mac: pod.mac });
  } catch (err) {
    await removeAttachment(hostVeth).catch(() => {});
    throw new CniError(
      CNI_CODES.ENDPOINT_PUBLISH,
      `cannot publish the endpoint record of ${pod?.ip ?? ifName} (Backend.Flood "none" needs it to reach the pod), so the attachment was undone: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** DEL's withdraw: the pod as prevResult shows it (with its MAC), else every address this attachment holds. */
async function withdrawPod(e: CniEnv, conf: NetConf, store: IpamStore, hooks: PodEndpointHooks): Promise<void> {
  // A prevResult DEL cannot read is no reason to keep a pod's record: the IPAM files name its address too.
  let fromPrev;
  try {
    fromPrev = conf.prevResult === undefined ? undefined : podEndpointOf(parseResult(conf.prevResult), e.ifName);
  } catch {
    fromPrev = undefined;
  }
  const pods = fromPrev
    ? [fromPrev]
    : store
        .allocations()
        .filter((a) => ownedBy(a, e.containerId, e.ifName))
        .map((a) => ({ ip: a.ip }));
  try {
    for (const pod of pods) await hooks.withdraw(pod);
  } catch (err) {
    throw new CniError(
      CNI_CODES.TRY_AGAIN_LATER,
      `cannot withdraw the endpoint record of ${pods.map((p) => p.ip).join(', ')}; nothing was removed, try DEL again: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** Idempotent, and needs neither the namespace nor subnet.env: the host end's name and the IPAM files suffice. */
async function del(e: CniEnv, conf: NetConf, hooks?: PodEndpointHooks): Promise<undefined> {
  const store = IpamStore.open(conf.dataDir, conf.name);
  try {
    // The record goes before the address file: the agent prunes, at its start, records of addresses no file
    // holds, so a DEL that fails here (store away) keeps both, and the runtime's retry finds them. Without the
    // agent (no hooks) the record stays until that prune.
    if (conf.mode === 'l2' && hooks) await withdrawPod(e, conf, store, hooks);
    await removeAttachment(hostVethName(e.containerId, e.ifName));
    await store.withLock(() => store.release(e.containerId, e.ifName));
  } finally {
    store.close();
  }
  return undefined;
}

async function check(e: CniEnv, conf: NetConf): Promise<undefined> {
  if (conf.prevResult === undefined) throw invalidConfig('prevResult', undefined, 'is required for CHECK (the result of the ADD being checked)');
  const prev = parseResult(conf.prevResult);
  const subnet = loadSubnetEnv(conf);
  const { bridge, prefix } = attachmentBasis(conf, subnet);
  const problems = await checkAttachment(
    {
      mode: conf.mode,
      ifName: e.ifName,
      netns: e.netns!,
      hostVeth: hostVethName(e.containerId, e.ifName),
      bridge,
      gateway: subnet.gateway,
      prefix,
    },
    prev,
  );
  // The reservation: every address of ours in prevResult still has its file, owned by this attachment.
  const dir = join(conf.dataDir, conf.name);
  const held = existsSync(dir) ? listAllocations(conf) : [];
  const podIndex = prev.interfaces.findIndex((i) => i.name === e.ifName && i.sandbox !== undefined);
  for (const ip of prev.ips.filter((i) => i.interface === podIndex)) {
    const address = ip.address.split('/')[0]!;
    const a = held.find((h) => h.ip === address);
    if (!a) problems.push(`address ${address} is not reserved in ${dir}`);
    else if (!ownedBy(a, e.containerId, e.ifName)) problems.push(`address ${address} is reserved for ${a.containerId} ${a.ifName}, not this attachment`);
  }
  if (problems.length > 0) {
    throw new CniError(CNI_CODES.CHECK_FAILED, `CHECK ${e.containerId} ${e.ifName}: ${problems.join('; ')}`);
  }
  return undefined;
}

function listAllocations(conf: NetConf): Allocation[] {
  const store = IpamStore.open(conf.dataDir, conf.name);
  try {
    return store.allocations();
  } finally {
    store.close();
  }
}

function requireVersion(conf: NetConf, command: string, since: CniVersion): void {
  if (conf.cniVersion !== since) {
    throw new CniError(CNI_CODES.INCOMPATIBLE_VERSION, `cniVersion: ${JSON.stringify(conf.cniVersion)} has no ${command} (it came with ${since})`);
  }
}

/** Ready for ADD: the agent's subnet.env is there and the subnet has a free address. Error 50 otherwise. */
async function status(conf: NetConf): Promise<undefined> {
  requireVersion(conf, 'STATUS', '1.1.0');
  let subnet: SubnetEnv;
  try {
    subnet = loadSubnetEnv(conf);
  } catch (err) {
    throw new CniError(CNI_CODES.NOT_AVAILABLE, `not available: ${(err as Error).message}`, { cause: err });
  }
  const { range } = attachmentBasis(conf, subnet);
  if (existsSync(join(conf.dataDir, conf.name))) {
    const store = IpamStore.open(conf.dataDir, conf.name);
    try {
      if (freeAddresses(store, range) === 0) throw new CniError(CNI_CODES.NOT_AVAILABLE, `not available: no free address in ${describeRange(range)}`);
    } finally {
      store.close();
    }
  }
  return undefined;
}

/**
 * Release every allocation whose (containerID, ifname) is not in `cni.dev/valid-attachments`, and remove its
 * host veth if one is left. Goes on past failures and reports them all at the end.
 */
async function gc(conf: NetConf, hooks?: PodEndpointHooks): Promise<undefined> {
  requireVersion(conf, 'GC', '1.1.0');
  if (conf.validAttachments === undefined) throw invalidConfig('cni.dev/valid-attachments', undefined, 'is required for GC (the attachments still in use)');
  const valid = new Set(conf.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
  const validIds = new Set(conf.validAttachments.map((a) => a.containerID));
  const isValid = (a: Allocation): boolean => (a.ifName === '' ? validIds.has(a.containerId) : valid.has(`${a.containerId}\0${a.ifName}`));
  const failures: string[] = [];
  const store = IpamStore.open(conf.dataDir, conf.name);
  try {
    await store.withLock(async () => {
      for (const a of store.allocations()) {
        if (isValid(a)) continue;
        try {
          if (conf.mode === 'l2' && hooks) await hooks.withdraw({ ip: a.ip });
          if (a.ifName !== '') await removeAttachment(hostVethName(a.containerId, a.ifName));
          store.releaseAddress(a.ip);
        } catch (err) {
          failures.push(`${a.ip} (${a.containerId} ${a.ifName}): ${(err as Error).message}`);
        }
      }
    });
  } finally {
    store.close();
  }
  if (failures.length > 0) throw new CniError(CNI_CODES.IO_FAILURE, `GC could not release ${failures.length} attachment(s): ${failures.join('; ')}`);
  return undefined;
}
