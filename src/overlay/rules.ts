/**
 * Traffic rules the overlay needs on a host, in tulle's own table/chains so they never mix with anyone else's:
 * accept forwarding to and from the cluster network, and with ip-masq, masquerade traffic leaving it (flannel's
 * rules, same matches). nftables is used when `nft` exists; iptables otherwise.
 *
 * nftables (one atomic `nft -f -` transaction; the table is replaced whole):
 *   table ip tulle {
 *     chain forward     { type filter hook forward priority filter; ip saddr NET accept; ip daddr NET accept }
 *     chain postrouting { type nat hook postrouting priority srcnat;
 *       ip saddr NET ip daddr NET return
 *       ip saddr NET ip daddr != 224.0.0.0/4 masquerade fully-random
 *       ip saddr != NET ip daddr SUBNET return
 *       ip saddr != NET ip daddr NET masquerade fully-random }
 *   }
 * iptables: chains TULLE-FWD (filter) and TULLE-POSTRTG (nat) jumped to from FORWARD / POSTROUTING.
 *
 * Whether the rules are still in place is checked by comparing the backend's own listing with the listing
 * recorded right after they were written, so any edit by someone else is noticed without parsing rules. With
 * nftables the kernel's ruleset generation is read first (NftSetWriter.generation, one netlink request): while it
 * is the one at which the listing last matched, plus the commits this process made elsewhere (the VXLAN guard's
 * member changes), no table changed and no `nft` process is started.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { hasProgram, run } from '../base/exec.js';
import { NftGenerationReader } from '../netlink/index.js';

export interface TrafficRulesSpec {
  /** Cluster network, "10.244.0.0/16". */
  network: string;
  /** This host's subnet, "10.244.1.0/24". */
  subnet: string;
  ipMasq: boolean;
}

export type RulesBackend = 'nftables' | 'iptables';

export const NFT_TABLE = 'tulle';
const FWD_CHAIN = 'TULLE-FWD';
const NAT_CHAIN = 'TULLE-POSTRTG';

export function chooseBackend(): RulesBackend {
  return hasProgram('nft') ? 'nftables' : 'iptables';
}

export function nftRuleset(spec: TrafficRulesSpec): string {
  const { network: net, subnet } = spec;
  const nat = spec.ipMasq
    ? `
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${net} ip daddr ${net} return
    ip saddr ${net} ip daddr != 224.0.0.0/4 masquerade fully-random
    ip saddr != ${net} ip daddr ${subnet} return
    ip saddr != ${net} ip daddr ${net} masquerade fully-random
  }`
    : '';
  // "add table" then "delete table" makes the replacement atomic and idempotent: it works whether or not the table exists.
  return `add table ip ${NFT_TABLE}
delete table ip ${NFT_TABLE}
table ip ${NFT_TABLE} {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr ${net} accept
    ip daddr ${net} accept
  }${nat}
}
`;
}

function iptablesRules(spec: TrafficRulesSpec): Array<{ table: 'filter' | 'nat'; chain: string; rule: string[] }> {
  const { network: net, subnet } = spec;
  const rules: Array<{ table: 'filter' | 'nat'; chain: string; rule: string[] }> = [
    { table: 'filter', chain: FWD_CHAIN, rule: ['-s', net, '-j', 'ACCEPT'] },
    { table: 'filter', chain: FWD_CHAIN, rule: ['-d', net, '-j', 'ACCEPT'] },
  ];
  if (spec.ipMasq) {
    rules.push(
      { table: 'nat', chain: NAT_CHAIN, rule: ['-s', net, '-d', net, '-j', 'RETURN'] },
      { table: 'nat', chain: NAT_CHAIN, rule: ['-s', net, '!', '-d', '224.0.0.0/4', '-j', 'MASQUERADE', '--random-fully'] },
      { table: 'nat', chain: NAT_CHAIN, rule: ['!', '-s', net, '-d', subnet, '-j', 'RETURN'] },
      { table: 'nat', chain: NAT_CHAIN, rule: ['!', '-s', net, '-d', net, '-j', 'MASQUERADE', '--random-fully'] },
    );
  }
  return rules;
}

/** Runs the backend's programs, optionally inside a named namespace (`ip netns exec NS ...`). */
export class TrafficRules {
  private recorded: string | undefined;
  /** nftables: the generation at which the listing last matched `recorded` and knownCommits() then; its reader. */
  private checked: { generation: number; known: number } | undefined;
  private readonly generations: NftGenerationReader;

  constructor(
    readonly backend: RulesBackend,
    private readonly netns?: string,
    private readonly options: {
      /** How `nft` / `iptables` are run; tests count them. */
      runner?: typeof run;
      /**
       * Commits to nf_tables by this process that never touch tulle's table, counted from 0 (the VXLAN guard's
       * member changes, VxlanGuard.memberCommits): they move the generation without being a change to look at.
       */
      knownCommits?: () => number;
    } = {},
  ) {
    this.generations = new NftGenerationReader(netns);
  }

  private cmd(argv: string[], options: { input?: string; allowFailure?: boolean } = {}) {
    return (this.options.runner ?? run)(this.netns ? ['ip', 'netns', 'exec', this.netns, ...argv] : argv, options);
  }

  /** Write the rules (replacing tulle's previous ones) and record their listing. */
  async apply(spec: TrafficRulesSpec): Promise<void> {
    this.checked = undefined;
    if (this.backend === 'nftables') {
      await this.cmd(['nft', '-f', '-'], { input: nftRuleset(spec) });
    } else {
      await this.removeIptables();
      for (const [table, chain, parent] of [
        ['filter', FWD_CHAIN, 'FORWARD'],
        ['nat', NAT_CHAIN, 'POSTROUTING'],
      ] as const) {
        await this.cmd(['iptables', '-w', '-t', table, '-N', chain]);
        await this.cmd(['iptables', '-w', '-t', table, '-I', parent, '1', '-j', chain]);
      }
      for (const r of iptablesRules(spec)) await this.cmd(['iptables', '-w', '-t', r.table, '-A', r.chain, ...r.rule]);
    }
    this.recorded = await this.listing();
  }

  /**
   * Make the rules right, writing only when needed: when `stateFile` records that this spec was written and the
   * backend still lists exactly what it listed then, nothing is written (a restarted agent touches nothing).
   */
  async ensure(spec: TrafficRulesSpec, stateFile?: string): Promise<'kept' | 'written'> {
    const key = JSON.stringify({ backend: this.backend, ...spec });
    if (stateFile) {
      try {
        const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { key: string; listing: string };
        if (saved.key === key && (await this.listing()) === saved.listing) {
          this.recorded = saved.listing;
          return 'kept';
        }
      } catch {
        // no usable record: write the rules
      }
    }
    await this.apply(spec);
    if (stateFile) writeFileSync(stateFile, JSON.stringify({ key, listing: this.recorded }));
    return 'written';
  }

  /** The backend's current listing of tulle's rules ('' when there are none). */
  async listing(): Promise<string> {
    if (this.backend === 'nftables') {
      const r = await this.cmd(['nft', 'list', 'table', 'ip', NFT_TABLE], { allowFailure: true });
      return r.status === 0 ? r.stdout : '';
    }
    const parts: string[] = [];
    for (const [table, chain, parent] of [
      ['filter', FWD_CHAIN, 'FORWARD'],
      ['nat', NAT_CHAIN, 'POSTROUTING'],
    ] as const) {
      const own = await this.cmd(['iptables', '-w', '-t', table, '-S', chain], { allowFailure: true });
      const jump = await this.cmd(['iptables', '-w', '-t', table, '-C', parent, '-j', chain], { allowFailure: true });
      parts.push(own.stdout, `jump ${parent}->${chain}: ${jump.status === 0}`);
    }
    return parts.join('\n');
  }

  /** True when the rules are still exactly as written by the last apply(). */
  async intact(): Promise<boolean> {
    if (this.recorded === undefined) return false;
    // Read before listing: a change made while `nft` lists then shows at the next check.
    const generation = this.backend === 'nftables' ? this.generations.read() : undefined;
    const known = this.options.knownCommits?.() ?? 0;
    if (generation !== undefined && this.checked && generation === (this.checked.generation + known - this.checked.known) >>> 0) {
      this.checked = { generation, known };
      return true;
    }
    const same = (await this.listing()) === this.recorded;
    this.checked = same && generation !== undefined ? { generation, known } : undefined;
    return same;
  }

  /** Close the netlink socket the checks read the generation with (the rules stay). */
  close(): void {
    this.generations.close();
  }

  /** Remove tulle's rules; nothing there is not an error. */
  async remove(): Promise<void> {
    this.checked = undefined;
    if (this.backend === 'nftables') {
      await this.cmd(['nft', 'delete', 'table', 'ip', NFT_TABLE], { allowFailure: true });
    } else {
      await this.removeIptables();
    }
    this.recorded = undefined;
  }

  private async removeIptables(): Promise<void> {
    for (const [table, chain, parent] of [
      ['filter', FWD_CHAIN, 'FORWARD'],
      ['nat', NAT_CHAIN, 'POSTROUTING'],
    ] as const) {
      // A jump may have been inserted more than once by a crashed earlier run: delete until none is left.
      while ((await this.cmd(['iptables', '-w', '-t', table, '-D', parent, '-j', chain], { allowFailure: true })).status === 0);
      await this.cmd(['iptables', '-w', '-t', table, '-F', chain], { allowFailure: true });
      await this.cmd(['iptables', '-w', '-t', table, '-X', chain], { allowFailure: true });
    }
  }
}
