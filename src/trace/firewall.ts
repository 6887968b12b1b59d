/**
 * Does one of tulle's own firewall rules drop the packet? Reads tulle's nftables table (`nft -j list table ip
 * tulle`, src/overlay/rules.ts) and follows its forward chain rule by rule for the packet's addresses. Only the
 * matches tulle writes (ip saddr/daddr with == or !=, an address or prefix) are understood; a rule with any other
 * match is skipped as "cannot tell", so a verdict of drop is always one a person can read off the rule.
 */
import { parseCidr4, parseIPv4, cidrContains } from '../base/ip.js';
import { run } from '../base/exec.js';
import { NFT_TABLE } from '../overlay/rules.js';

export interface FirewallDrop {
  /** The rule as nft would print it, e.g. `ip daddr 10.244.2.0/24 drop`, or `policy drop`. */
  rule: string;
  chain: string;
}

interface NftMatch {
  match: { op: string; left: { payload?: { protocol: string; field: string } }; right: unknown };
}

/** The parts of `nft -j list table` read here; nft's other objects and fields are ignored. */
interface NftItem {
  chain?: { name: string; hook?: string; policy?: string };
  rule?: { chain: string; expr: Array<Partial<NftMatch> & Record<string, unknown>> };
}

/** `ip netns exec NS nft -j list table ip tulle`; undefined when there is no such table or no nft. */
async function listTable(namespace: string | undefined): Promise<NftItem[] | undefined> {
  const argv = ['nft', '-j', 'list', 'table', 'ip', NFT_TABLE];
  const r = await run(namespace ? ['ip', 'netns', 'exec', namespace, ...argv] : argv, { allowFailure: true }).catch(() => undefined);
  if (!r || r.status !== 0) return undefined;
  try {
    return (JSON.parse(r.stdout) as { nftables: NftItem[] }).nftables;
  } catch {
    return undefined;
  }
}

function addressMatches(right: unknown, addr: number): boolean | undefined {
  if (typeof right === 'string') {
    try {
      return right.includes('/') ? cidrContains(parseCidr4(right, 'nft', true), addr) : parseIPv4(right) === addr;
    } catch {
      return undefined;
    }
  }
  const prefix = (right as { prefix?: { addr: string; len: number } })?.prefix;
  if (prefix) return addressMatches(`${prefix.addr}/${prefix.len}`, addr);
  return undefined;
}

function rightText(right: unknown): string {
  const prefix = (right as { prefix?: { addr: string; len: number } })?.prefix;
  return prefix ? `${prefix.addr}/${prefix.len}` : String(right);
}

/** The first of tulle's forward rules with a final verdict that matches src -> dst, if it is a drop or reject. */
export async function findFirewallDrop(namespace: string | undefined, src: string, dst: string): Promise<FirewallDrop | undefined> {
  const items = await listTable(namespace);
  if (!items) return undefined;
  const addrs = { saddr: parseIPv4(src), daddr: parseIPv4(dst) };
  const chains = items.flatMap((i) => (i.chain?.hook === 'forward' ? [i.chain] : []));
  for (const chain of chains) {
    const rules = items.flatMap((i) => (i.rule?.chain === chain.name ? [i.rule] : []));
    let decided = false;
    for (const rule of rules) {
      let matches: boolean | undefined = true;
      const words: string[] = [];
      let verdict: string | undefined;
      for (const e of rule.expr) {
        if (e.match) {
          const m = e.match;
          const field = m.left.payload?.protocol === 'ip' ? m.left.payload.field : undefined;
          const hit = field === 'saddr' || field === 'daddr' ? addressMatches(m.right, addrs[field]) : undefined;
          if (hit === undefined || (m.op !== '==' && m.op !== '!=')) {
            matches = undefined;
            break;
          }
          words.push(`ip ${field}${m.op === '!=' ? ' !=' : ''} ${rightText(m.right)}`);
          if ((m.op === '==') !== hit) matches = false;
        } else if ('accept' in e || 'drop' in e || 'reject' in e) {
          verdict = Object.keys(e)[0];
        } else if (!('counter' in e)) {
          matches = undefined;
          break;
        }
      }
      if (matches !== true || verdict === undefined) continue;
      decided = true;
      if (verdict !== 'accept') return { rule: [...words, verdict].join(' '), chain: chain.name };
      break;
    }
    if (!decided && chain.policy === 'drop') return { rule: 'policy drop', chain: chain.name };
  }
  return undefined;
}
