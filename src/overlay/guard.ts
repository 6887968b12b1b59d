/**
 * The VXLAN guard: a VXLAN packet for the network's VNI on the network's port is delivered only when its outer
 * source is a peer holding a lease (or inside Backend.AllowedSources); any other is dropped and counted.
 * Packets for another VNI or another port are never touched, so other tunnels sharing the port keep working
 * (unlike Calico's guard, projectcalico/calico#6752). The backend is chosen as for the traffic rules.
 *
 * nftables, its own table (the traffic rules' table `tulle` is replaced whole, so it cannot hold the set):
 *   table ip tulle-guard {
 *     counter unknown_source {}
 *     set peers   { type ipv4_addr; }                             # leased peers' public IPs
 *     set allowed { type ipv4_addr; flags interval; auto-merge; }  # Backend.AllowedSources
 *     chain input { type filter hook input priority filter; policy accept;
 *       udp dport PORT ip saddr != @peers @th,96,24 VNI ip saddr != @allowed counter name "unknown_source" drop }
 *   }
 * `@th,96,24` is the raw VNI: 24 bits at bit 96 of the transport header (8 bytes UDP + 4 bytes VXLAN flags).
 * The peers lookup comes before the VNI: a peer's packet (nearly every packet) is then decided after the port and
 * one hash lookup, without the 3-byte payload load, which nft does off its fast path. In one lab with another
 * input chain on the hosts, 12000 pings 1 ms apart each: VNI first cost 0.41 us a round trip over no guard, this
 * order 0.12 us (an 11 us round trip; the dataplane benchmark keeps measuring it).
 *
 * iptables (with ipset): sets `tulle-peers` (hash:ip) and `tulle-allowed` (hash:net), chain TULLE-VXLAN jumped to
 * from INPUT:
 *   -A TULLE-VXLAN -p udp --dport PORT -m set ! --match-set tulle-peers src -m u32 --u32 "4&0x1FFF=0 && 0>>22&0x3C@12>>8=VNI"
 *      -m set ! --match-set tulle-allowed src -m comment --comment unknown_source -j DROP
 * u32: fragment offset 0 only (bytes 4-7: id, flags, offset), skip the IP header (IHL), read the 4 bytes at UDP offset 12 (VNI + reserved byte).
 *
 * The input hook sees a VXLAN datagram after reassembly and only when it is for this host, so forwarded
 * traffic is never touched. Peer changes are written as element adds/deletes (one nf_tables netlink batch, the
 * same as one `nft -f -` transaction but without starting a process; or one `ipset restore`), never by
 * rebuilding, so a member is never missing while the set changes.
 */
import { InvalidValueError, TulleError } from '../base/errors.js';
import { formatCidr4, formatIPv4, parseCidr4, parseIPv4 } from '../base/ip.js';
import { hasProgram, run, type RunOptions } from '../base/exec.js';
import { NftGenerationReader, NftSetWriter } from '../netlink/index.js';
import type { RulesBackend } from './rules.js';

export const GUARD_TABLE = 'tulle-guard';
const NFT_PEERS = 'peers';
const NFT_ALLOWED = 'allowed';
const IPT_CHAIN = 'TULLE-VXLAN';
const IPSET_PEERS = 'tulle-peers';
const IPSET_ALLOWED = 'tulle-allowed';

/** Why a packet was dropped; one kernel counter each, exported as the metric label `reason`. */
export const DROP_REASONS = ['unknown_source'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface GuardSpec {
  vni: number;
  port: number;
  /** Backend.AllowedSources: CIDRs of VTEPs outside the store, validated by the config. */
  allowedSources: readonly string[];
}

export interface GuardStatus {
  backend: RulesBackend;
  /** The guard's table/chain is in the kernel. */
  present: boolean;
  port: number | null;
  vni: number | null;
  /** Public IPs in the peers set, sorted. */
  members: string[];
  /** Entries of the allowed set as the kernel holds them (CIDRs or ranges). */
  allowed: string[];
  drops: Record<DropReason, { packets: number; bytes: number }>;
}

export class GuardError extends TulleError {
  constructor(message: string, cause?: unknown) {
    super('TLE_GUARD', message, { cause });
  }
}

/** Canonical dotted quads of the valid IPv4 addresses in `ips` (sorted, unique) and the values that are not. */
export function normalizePeers(ips: readonly unknown[]): { valid: string[]; invalid: unknown[] } {
  const valid = new Set<number>();
  const invalid: unknown[] = [];
  for (const ip of ips) {
    try {
      if (typeof ip !== 'string') throw new Error('not a string');
      valid.add(parseIPv4(ip, 'PublicIP'));
    } catch {
      invalid.push(ip);
    }
  }
  // Sorted as numbers, each address parsed once (called with every admitted lease's address at every reconcile).
  return { valid: [...valid].sort((a, b) => a - b).map(formatIPv4), invalid };
}

/** Dotted quads sorted by address, each parsed once (a first sync may hand the guard thousands). */
function sortedByAddress(ips: readonly string[]): string[] {
  if (ips.length < 2) return [...ips];
  return ips
    .map((ip) => ({ ip, n: parseIPv4(ip) }))
    .sort((a, b) => a.n - b.n)
    .map((x) => x.ip);
}

/** Checked again here (not only by the config) because every value ends up in a program's input. */
function checkSpec(spec: GuardSpec): GuardSpec {
  if (!Number.isInteger(spec.vni) || spec.vni < 1 || spec.vni > 16_777_215)
    throw new InvalidValueError('Backend.VNI', spec.vni, 'is out of range (must be 1..16777215)');
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535)
    throw new InvalidValueError('Backend.Port', spec.port, 'is out of range (must be 1..65535)');
  const allowedSources = spec.allowedSources.map((c, i) => formatCidr4(parseCidr4(c, `Backend.AllowedSources[${i}]`)));
  return { vni: spec.vni, port: spec.port, allowedSources };
}

export function nftGuardRuleset(spec: GuardSpec, peers: readonly string[]): string {
  const s = checkSpec(spec);
  const elements = (list: readonly string[]) => (list.length ? `\n    elements = { ${list.join(', ')} }` : '');
  // "add table" then "delete table" replaces the table atomically whether or not it exists.
  return `add table ip ${GUARD_TABLE}
delete table ip ${GUARD_TABLE}
table ip ${GUARD_TABLE} {
  counter unknown_source {
  }
  set ${NFT_PEERS} {
    type ipv4_addr;${elements(normalizePeers(peers).valid)}
  }
  set ${NFT_ALLOWED} {
    type ipv4_addr; flags interval; auto-merge;${elements(s.allowedSources)}
  }
  chain input {
    type filter hook input priority filter; policy accept;
    udp dport ${s.port} ip saddr != @${NFT_PEERS} @th,96,24 ${s.vni} ip saddr != @${NFT_ALLOWED} counter name "unknown_source" drop
  }
}
`;
}

export function iptablesGuardRule(spec: GuardSpec): string[] {
  const s = checkSpec(spec);
  return [
    '-p',
    'udp',
    '--dport',
    String(s.port),
    '-m',
    'set',
    '!',
    '--match-set',
    IPSET_PEERS,
    'src',
    '-m',
    'u32',
    '--u32',
    `4&0x1FFF=0 && 0>>22&0x3C@12>>8=${s.vni}`,
    '-m',
    'set',
    '!',
    '--match-set',
    IPSET_ALLOWED,
    'src',
    '-m',
    'comment',
    '--comment',
    'unknown_source',
    '-j',
    'DROP',
  ];
}

/** What a change of peers did: the addresses let in and shut out, and the values that are no IPv4 address. */
export interface PeersChange {
  added: string[];
  removed: string[];
  invalid: unknown[];
}

export class VxlanGuard {
  private spec: GuardSpec | undefined;
  /**
   * The peers set as last written: canonical dotted quad -> how many admitted peers have that public IP (several
   * subnets may share one host's address). A change of peers (changePeers) touches only the addresses it names;
   * an address is written to the kernel when its count leaves or reaches zero.
   */
  private members = new Map<string, number>();
  /** `members` sorted by address, made when asked for (status, logs) and dropped at every change. */
  private sorted: string[] | undefined;
  /** The allowed set as the kernel listed it right after apply() (auto-merge may have joined entries). */
  private allowedListing = '';
  /** Writes run one at a time: a periodic repair must never interleave with a member change. */
  private queue: Promise<unknown> = Promise.resolve();
  /** nftables: the netlink socket member changes go through (opened on first use). */
  private setWriter: NftSetWriter | undefined;
  /**
   * nftables: the generation (NftSetWriter.generation) at which repair() last found the guard intact, and
   * memberCommits then. While the generation is that plus the member changes committed since (each adds one),
   * nobody else changed any table and the check needs no `nft` process: an idle agent then starts none, where it
   * started one every --rules-interval.
   */
  private checked: { generation: number; commits: number } | undefined;
  private readonly generations: NftGenerationReader;
  /** Member changes committed so far (nftables), one generation each: see memberCommits. */
  private commits = 0;

  constructor(
    readonly backend: RulesBackend,
    private readonly netns?: string,
    private readonly options: {
      /** How commands are run (`nft`, `iptables`, `ipset`); tests count them. */
      runner?: typeof run;
    } = {},
  ) {
    this.generations = new NftGenerationReader(netns);
  }

  private cmd(argv: string[], options: RunOptions = {}) {
    return (this.options.runner ?? run)(this.netns ? ['ip', 'netns', 'exec', this.netns, ...argv] : argv, options);
  }

  /** The peers the guard lets in, as last written, sorted by address. */
  get peers(): readonly string[] {
    this.sorted ??= sortedByAddress([...this.members.keys()]);
    return this.sorted;
  }

  /**
   * How many member changes the guard has committed to nf_tables (one generation each, touching only its own
   * table): a check of other tables (TrafficRules) counts them as known, not as someone else's change.
   */
  get memberCommits(): number {
    return this.commits;
  }

  /** How many peers the guard lets in. */
  get size(): number {
    return this.members.size;
  }

  /**
   * The members as written whole (a rewrite, or as the kernel listed them at start): an address already counted
   * keeps its count, so rebuilding the guard loses none; a new one counts one peer until setPeers counts them all.
   */
  private setMembers(members: Iterable<string>): void {
    this.members = new Map([...members].map((ip) => [ip, this.members.get(ip) ?? 1]));
    this.sorted = undefined;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  /** Write the whole guard (replacing an earlier one) with `peers` as members. */
  apply(spec: GuardSpec, peers?: readonly string[]): Promise<void> {
    return this.serial(() => this.write(spec, peers ?? this.peers));
  }

  private async write(spec: GuardSpec, peers: readonly string[]): Promise<void> {
    this.checked = undefined; // the next repair() looks with `nft`, and learns the generation again
    const checked = checkSpec(spec);
    const { valid } = normalizePeers(peers);
    if (this.backend === 'nftables') {
      await this.cmd(['nft', '-f', '-'], { input: nftGuardRuleset(checked, valid) });
    } else {
      if (!hasProgram('ipset')) {
        throw new GuardError(
          'the VXLAN guard needs ipset on a host without nft: install it (apt-get install ipset), or run the agent with --vxlan-guard=false',
        );
      }
      await this.removeIptables();
      const restore = [
        `create ${IPSET_PEERS} hash:ip family inet`,
        `create ${IPSET_ALLOWED} hash:net family inet`,
        ...valid.map((ip) => `add ${IPSET_PEERS} ${ip}`),
        ...checked.allowedSources.map((c) => `add ${IPSET_ALLOWED} ${c}`),
        '',
      ].join('\n');
      await this.cmd(['ipset', 'restore'], { input: restore });
      await this.cmd(['iptables', '-w', '-N', IPT_CHAIN]);
      await this.cmd(['iptables', '-w', '-A', IPT_CHAIN, ...iptablesGuardRule(checked)]);
      await this.cmd(['iptables', '-w', '-I', 'INPUT', '1', '-j', IPT_CHAIN]);
    }
    this.spec = checked;
    this.setMembers(valid);
    // Only auto-merge can make the kernel's listing differ from what was written, and it has nothing to merge in an
    // empty set: no `nft -j list` (a process start on every agent start, when a joining host's CPU is scarcest).
    this.allowedListing = checked.allowedSources.length ? (await this.status()).allowed.join(',') : '';
  }

  /**
   * Make the guard right at agent start, keeping the kernel's current members (a restarting agent must not
   * shut its peers out until it has read the leases): nothing is written when the guard is there with the same
   * port, VNI and allowed sources; otherwise it is rewritten with the members it had.
   */
  ensure(spec: GuardSpec): Promise<'kept' | 'written'> {
    return this.serial(() => this.ensureNow(spec));
  }

  private async ensureNow(spec: GuardSpec): Promise<'kept' | 'written'> {
    const checked = checkSpec(spec);
    const s = await this.status();
    const wantAllowed = checked.allowedSources.map((c) => c.replace(/\/32$/, '')).join(',');
    const haveAllowed = s.allowed.map((c) => c.replace(/\/32$/, '')).join(',');
    if (s.present && s.port === checked.port && s.vni === checked.vni && haveAllowed === wantAllowed) {
      this.spec = checked;
      this.setMembers(s.members);
      this.allowedListing = s.allowed.join(',');
      return 'kept';
    }
    await this.write(checked, s.members);
    return 'written';
  }

  /**
   * Make the peers set hold exactly `ips` (every admitted peer's public IP, duplicates counted), writing only the
   * difference. Values that are not IPv4 addresses are never written and are returned in `invalid`. If the guard
   * was removed behind our back it is rebuilt.
   */
  setPeers(ips: readonly unknown[]): Promise<PeersChange> {
    return this.serial(async () => {
      const spec = this.requireSpec();
      const counts = new Map<string, number>();
      const invalid: unknown[] = [];
      for (const ip of ips) {
        const member = this.canonical(ip);
        if (member === undefined) invalid.push(ip);
        else counts.set(member, (counts.get(member) ?? 0) + 1);
      }
      const added: string[] = [];
      const removed: string[] = [];
      for (const ip of counts.keys()) if (!this.members.has(ip)) added.push(ip);
      for (const ip of this.members.keys()) if (!counts.has(ip)) removed.push(ip);
      this.members = counts;
      return this.writeChange(spec, added, removed, invalid);
    });
  }

  /**
   * Some peers were admitted (`added`) and some left (`removed`), by public IP, one entry per peer: the counts of
   * those addresses alone are changed, so a join or a leave costs the same whatever the size of the cluster. An
   * address that reaches zero leaves the set; one that leaves zero enters it. A removed value that is not a member
   * is ignored; added values that are not IPv4 addresses are returned in `invalid`.
   */
  changePeers(added: readonly unknown[], removed: readonly unknown[]): Promise<PeersChange> {
    return this.serial(async () => {
      const spec = this.requireSpec();
      const invalid: unknown[] = [];
      const entering = new Set<string>();
      for (const ip of added) {
        const member = this.canonical(ip);
        if (member === undefined) {
          invalid.push(ip);
          continue;
        }
        const n = this.members.get(member) ?? 0;
        this.members.set(member, n + 1);
        if (n === 0) entering.add(member);
      }
      const leaving: string[] = [];
      for (const ip of removed) {
        const member = this.canonical(ip);
        const n = member === undefined ? undefined : this.members.get(member);
        if (n === undefined) continue;
        if (n > 1) {
          this.members.set(member!, n - 1);
          continue;
        }
        this.members.delete(member!);
        // Added and removed in the same change: it was never written.
        if (!entering.delete(member!)) leaving.push(member!);
      }
      return this.writeChange(spec, [...entering], leaving, invalid);
    });
  }

  private requireSpec(): GuardSpec {
    if (!this.spec) throw new GuardError('the VXLAN guard is not set up: call apply() first');
    return this.spec;
  }

  /** An IPv4 address as the members hold it (dotted quad); undefined for anything else. */
  private canonical(ip: unknown): string | undefined {
    if (typeof ip !== 'string') return undefined;
    if (this.members.has(ip)) return ip; // members are canonical: no parsing for an address already in
    try {
      return formatIPv4(parseIPv4(ip, 'PublicIP'));
    } catch {
      return undefined;
    }
  }

  /** Write a change of members the counts already show; on failure rebuild the whole guard from them. */
  private async writeChange(spec: GuardSpec, unsortedAdded: string[], unsortedRemoved: string[], invalid: unknown[]): Promise<PeersChange> {
    // Nothing changed (a peer that shares its address with another, a lease rewritten in place): no kernel write.
    if (unsortedAdded.length === 0 && unsortedRemoved.length === 0) return { added: [], removed: [], invalid };
    const added = sortedByAddress(unsortedAdded);
    const removed = sortedByAddress(unsortedRemoved);
    this.sorted = undefined;
    try {
      if (this.backend === 'nftables') {
        this.setWriter ??= NftSetWriter.open(this.netns);
        this.setWriter.update(GUARD_TABLE, NFT_PEERS, added, removed);
        this.commits++;
      } else {
        const lines = [...added.map((ip) => `add ${IPSET_PEERS} ${ip} -exist`), ...removed.map((ip) => `del ${IPSET_PEERS} ${ip} -exist`)];
        await this.cmd(['ipset', 'restore'], { input: lines.join('\n') + '\n' });
      }
    } catch {
      // Someone removed the table, the set or an element we listed: rebuild the whole guard with the members.
      await this.write(spec, this.peers);
    }
    return { added, removed, invalid };
  }

  /** True when the kernel holds the guard exactly as last written (rule, members, allowed sources). */
  async intact(): Promise<boolean> {
    if (!this.spec) return false;
    const s = await this.status();
    return (
      s.present &&
      s.port === this.spec.port &&
      s.vni === this.spec.vni &&
      s.members.join(',') === this.peers.join(',') &&
      s.allowed.join(',') === this.allowedListing
    );
  }

  /**
   * Rewrite the guard when it is not intact; returns whether it had to. With nftables, the kernel's generation is
   * read first (one netlink request): when no commit but the guard's own member changes happened since the guard
   * was last found intact, it still is, and no `nft` runs.
   */
  repair(): Promise<boolean> {
    return this.serial(async () => {
      if (!this.spec) return false;
      const generation = this.backend === 'nftables' ? this.generations.read() : undefined;
      const commits = this.commits;
      if (generation !== undefined && this.checked && generation === (this.checked.generation + commits - this.checked.commits) >>> 0) {
        this.checked = { generation, commits };
        return false;
      }
      // Read before looking: a change made while `nft` lists is then seen at the next check.
      if (await this.intact()) {
        this.checked = generation === undefined ? undefined : { generation, commits };
        return false;
      }
      await this.write(this.spec, this.peers);
      return true;
    });
  }

  /** What the kernel holds now: works without apply() (for `tulle status`). */
  async status(): Promise<GuardStatus> {
    const empty = { packets: 0, bytes: 0 };
    const base: GuardStatus = {
      backend: this.backend,
      present: false,
      port: null,
      vni: null,
      members: [],
      allowed: [],
      drops: { unknown_source: { ...empty } },
    };
    return this.backend === 'nftables' ? this.nftStatus(base) : this.iptablesStatus(base);
  }

  private async nftStatus(base: GuardStatus): Promise<GuardStatus> {
    const r = await this.cmd(['nft', '-j', 'list', 'table', 'ip', GUARD_TABLE], { allowFailure: true });
    if (r.status !== 0) return base;
    const items = (JSON.parse(r.stdout) as { nftables: NftItem[] }).nftables;
    const s = { ...base };
    for (const item of items) {
      if (item.set?.name === NFT_PEERS) s.members = sortedByAddress((item.set.elem ?? []).map(nftElement));
      else if (item.set?.name === NFT_ALLOWED) s.allowed = (item.set.elem ?? []).map(nftElement);
      else if (item.counter && (DROP_REASONS as readonly string[]).includes(item.counter.name)) {
        s.drops[item.counter.name as DropReason] = { packets: Number(item.counter.packets ?? 0), bytes: Number(item.counter.bytes ?? 0) };
      } else if (item.rule?.chain === 'input') {
        const text = JSON.stringify(item.rule.expr);
        const port = /"field":"dport"}},"right":(\d+)/.exec(text);
        const vni = /"base":"th","offset":96,"len":24}},"right":(\d+)/.exec(text);
        if (port && vni && text.includes('"drop"')) {
          s.present = true;
          s.port = Number(port[1]);
          s.vni = Number(vni[1]);
        }
      }
    }
    return s;
  }

  private async iptablesStatus(base: GuardStatus): Promise<GuardStatus> {
    const chain = await this.cmd(['iptables', '-w', '-S', IPT_CHAIN, '-v'], { allowFailure: true });
    const jump = await this.cmd(['iptables', '-w', '-C', 'INPUT', '-j', IPT_CHAIN], { allowFailure: true });
    const s = { ...base };
    const rule = /--dport (\d+) .*@0xc>>0x8=0x([0-9a-f]+)" .*--comment unknown_source -c (\d+) (\d+) -j DROP/.exec(chain.stdout);
    if (chain.status === 0 && jump.status === 0 && rule) {
      s.present = true;
      s.port = Number(rule[1]);
      s.vni = parseInt(rule[2]!, 16);
      s.drops.unknown_source = { packets: Number(rule[3]), bytes: Number(rule[4]) };
    }
    s.members = sortedByAddress(await this.ipsetMembers(IPSET_PEERS));
    s.allowed = await this.ipsetMembers(IPSET_ALLOWED);
    return s;
  }

  private async ipsetMembers(name: string): Promise<string[]> {
    const r = await this.cmd(['ipset', 'list', name], { allowFailure: true });
    if (r.status !== 0) return [];
    const at = r.stdout.indexOf('Members:\n');
    return at < 0
      ? []
      : r.stdout
          .slice(at + 9)
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean);
  }

  /** Close the netlink socket (the kernel state stays); a later change opens a new one. */
  close(): void {
    this.setWriter?.close();
    this.setWriter = undefined;
    this.generations.close();
  }

  /** Remove the guard; nothing there is not an error. */
  remove(): Promise<void> {
    return this.serial(async () => {
      if (this.backend === 'nftables') await this.cmd(['nft', 'delete', 'table', 'ip', GUARD_TABLE], { allowFailure: true });
      else await this.removeIptables();
      this.spec = undefined;
      this.setMembers([]);
      this.close();
    });
  }

  private async removeIptables(): Promise<void> {
    // A jump may have been inserted more than once by a crashed earlier run: delete until none is left.
    while ((await this.cmd(['iptables', '-w', '-D', 'INPUT', '-j', IPT_CHAIN], { allowFailure: true })).status === 0);
    await this.cmd(['iptables', '-w', '-F', IPT_CHAIN], { allowFailure: true });
    await this.cmd(['iptables', '-w', '-X', IPT_CHAIN], { allowFailure: true });
    // ipset refuses to destroy a set a rule still references: the chain is gone by now.
    for (const set of [IPSET_PEERS, IPSET_ALLOWED]) await this.cmd(['ipset', 'destroy', set], { allowFailure: true });
  }
}

/** The parts of `nft -j list table` that status() reads; nft's other objects and fields are ignored. */
interface NftItem {
  set?: { name: string; elem?: NftElement[] };
  counter?: { name: string; packets?: number; bytes?: number };
  rule?: { chain: string; expr: unknown };
}

/** An element of `nft -j list set`: "192.0.2.1", {"prefix":{"addr","len"}}, {"range":[lo,hi]} or {"elem":{"val"}}. */
type NftElement = string | { prefix?: { addr: string; len: number }; range?: [string, string]; elem?: { val: NftElement } };

function nftElement(e: NftElement): string {
  if (typeof e === 'string') return e;
  if (e?.prefix) return `${e.prefix.addr}/${e.prefix.len}`;
  if (Array.isArray(e?.range)) return `${e.range[0]}-${e.range[1]}`;
  if (e?.elem) return nftElement(e.elem.val);
  return JSON.stringify(e);
}
