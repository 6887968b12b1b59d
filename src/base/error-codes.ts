/**
 * Every error code tulle throws, in one place: the code, the class that carries it, what it means and what to do.
 * Codes start with TLE_, a prefix no environment variable uses (those are TULLE_*), so a code in a log line is never
 * mistaken for a setting. test/unit/error-codes.test.ts fails on a code thrown anywhere under src/ that is not
 * here, on an entry here that nothing throws, and on a README error table that differs from this list
 * (`node scripts/error-tables.mjs` rewrites the tables after `npm run build`).
 *
 * A new error: pick a TLE_<AREA>_<WHAT> code, throw it from a TulleError subclass next to the code that fails,
 * add its entry here (in its area), then regenerate the README tables.
 */
export interface ErrorCodeEntry {
  code: string;
  /** The TulleError subclass that carries the code. */
  class: string;
  /** Where it comes from; README tables select by area. */
  area: 'cli' | 'system' | 'store' | 'subnet' | 'overlay' | 'agent' | 'cni' | 'lab' | 'install' | 'trace' | 'decode';
  meaning: string;
  action: string;
}

export const ERROR_CODES: readonly ErrorCodeEntry[] = [
  // The command line and values (exit code 2).
  {
    code: 'TLE_USAGE',
    class: 'UsageError',
    area: 'cli',
    meaning: 'The command line cannot be acted on: unknown option, missing argument, a value of the wrong kind.',
    action: 'Fix the command line; `tulle COMMAND --help` lists the options.',
  },
  {
    code: 'TLE_INVALID_VALUE',
    class: 'InvalidValueError',
    area: 'cli',
    meaning: 'A value (option, config field, environment variable) breaks a rule; the message names the field, the value and the rule.',
    action: 'Give a value that follows the rule named.',
  },
  {
    code: 'TLE_INTERRUPTED',
    class: 'TulleError',
    area: 'cli',
    meaning: '`tulle lab up` was stopped by SIGINT or SIGTERM; what it had built has been removed (exit 130).',
    action: 'Nothing to clean up; run it again.',
  },
  // The machine: tools, commands, kernel interfaces.
  {
    code: 'TLE_MISSING_REQUIREMENT',
    class: 'MissingRequirementError',
    area: 'system',
    meaning: 'A system tool or privilege the operation needs is not there (tshark, root, ...).',
    action: 'Install what is named (scripts/install-deps.sh) or run as root.',
  },
  {
    code: 'TLE_COMMAND_FAILED',
    class: 'CommandFailedError',
    area: 'system',
    meaning: 'An external command (ip, nft, tshark, ...) exited non-zero; its last stderr lines are quoted.',
    action: 'Read the quoted stderr; run the named command by hand to see it fail.',
  },
  {
    code: 'TLE_TIMEOUT',
    class: 'TimeoutError',
    area: 'system',
    meaning: 'A condition waited for did not come true in time (the message says what and why it was waited for).',
    action: 'Check the thing waited for (an agent, a lease, a socket); its log says why it is late.',
  },
  {
    code: 'TLE_NETLINK',
    class: 'NetlinkError',
    area: 'system',
    meaning: "The kernel refused a netlink request; the message names the equivalent ip/bridge command, the errno and the kernel's text.",
    action: 'Run the named ip/bridge command by hand; EPERM means root is needed, EEXIST an entry tulle did not make is in the way.',
  },
  {
    code: 'TLE_LOCK',
    class: 'LockError',
    area: 'system',
    meaning: 'flock(2) on a lock file failed.',
    action: "Check the lock file's directory and permissions (the CNI data directory for the IPAM lock).",
  },
  {
    code: 'TLE_SYSCTL',
    class: 'SysctlError',
    area: 'system',
    meaning: 'Reading or writing a /proc/sys setting failed; the message names the sysctl command.',
    action: 'Run the named sysctl by hand; a read-only /proc/sys (some containers) needs the setting made by the host.',
  },
  {
    code: 'TLE_NETNS',
    class: 'NetnsError',
    area: 'system',
    meaning: 'A network namespace could not be created, entered or removed.',
    action: 'Check /run/netns and that the process runs as root.',
  },
  // The store.
  {
    code: 'TLE_STORE',
    class: 'StoreError',
    area: 'store',
    meaning: 'The store answered with an error: a missing SQLite file, a closed registry, an etcd error that is not an outage.',
    action: 'Read the reason; for a missing SQLite file write the network config first (tulle config put).',
  },
  {
    code: 'TLE_STORE_UNAVAILABLE',
    class: 'StoreUnavailableError',
    area: 'store',
    meaning: 'The store cannot be reached (etcd down, refused, timed out).',
    action: 'Start etcd or fix --store; the agent retries by itself, a command fails at once.',
  },
  // Network config, leases, subnet.env.
  {
    code: 'TLE_NO_NETWORK_CONFIG',
    class: 'NetworkConfigMissingError',
    area: 'subnet',
    meaning: 'The store holds no network config at `<prefix>/config`.',
    action: 'Write one: `tulle config put --store URL FILE`.',
  },
  {
    code: 'TLE_OUT_OF_SUBNETS',
    class: 'OutOfSubnetsError',
    area: 'subnet',
    meaning: 'Every subnet between SubnetMin and SubnetMax is leased.',
    action: 'Remove stale leases (tulle leases shows them) or widen the network config.',
  },
  {
    code: 'TLE_ACQUIRE_RACE',
    class: 'TulleError',
    area: 'subnet',
    meaning: 'Other hosts took the chosen subnet several times in a row while this host tried to lease it.',
    action: 'Start again; if it repeats, hosts are starting faster than the store settles.',
  },
  {
    code: 'TLE_LEASE_LOST',
    class: 'LeaseLostError',
    area: 'subnet',
    meaning: "This host's lease was deleted or taken over in the store while the agent held it.",
    action: 'The agent leases again; find who removed or rewrote the key.',
  },
  {
    code: 'TLE_MALFORMED_LEASE',
    class: 'MalformedLeaseError',
    area: 'subnet',
    meaning: 'A lease value in the store cannot be read (not JSON, a bad address, MAC or VNI); agents ignore it.',
    action: 'Fix or delete the key named (tulle leases lists it as malformed).',
  },
  {
    code: 'TLE_MALFORMED_ENDPOINT',
    class: 'MalformedEndpointError',
    area: 'subnet',
    meaning:
      'A pod endpoint record of an L2 network with Flood "none" cannot be read (key and IP disagree, a bad MAC or address, extra fields); agents ignore it.',
    action: 'Fix or delete the key named; the CNI plugin writes it again at the next ADD.',
  },
  {
    code: 'TLE_SUBNET_ENV',
    class: 'SubnetEnvError',
    area: 'subnet',
    meaning: 'subnet.env cannot be parsed or written.',
    action: 'Check the file named; the agent rewrites it when it starts.',
  },
  {
    code: 'TLE_SUBNET_ENV_MISSING',
    class: 'SubnetEnvError',
    area: 'subnet',
    meaning: 'subnet.env does not exist: the agent has not leased a subnet on this host yet.',
    action: 'Start the agent (or wait for it); the CNI plugin answers "try again later".',
  },
  // The overlay on this host.
  {
    code: 'TLE_UNDERLAY',
    class: 'UnderlayError',
    area: 'overlay',
    meaning: '--iface or --public-ip names something that cannot carry the overlay.',
    action: 'Name the interface (or its address) that reaches the other hosts.',
  },
  {
    code: 'TLE_UNDERLAY_NOT_FOUND',
    class: 'UnderlayError',
    area: 'overlay',
    meaning: 'No interface or address matches --iface, or the chosen interface has no IPv4 address.',
    action: 'Check `ip -br addr`; give --iface NAME or --public-ip.',
  },
  {
    code: 'TLE_UNDERLAY_LOOPBACK',
    class: 'UnderlayError',
    area: 'overlay',
    meaning: 'The underlay interface or public IP is a loopback one: other hosts cannot reach it.',
    action: 'Name the interface that reaches the other hosts, like eth0.',
  },
  {
    code: 'TLE_UNDERLAY_AMBIGUOUS',
    class: 'UnderlayError',
    area: 'overlay',
    meaning: 'Several interfaces could carry the overlay and no default route chooses one.',
    action: 'Name one with --iface.',
  },
  {
    code: 'TLE_VTEP',
    class: 'VtepError',
    area: 'overlay',
    meaning: 'The VXLAN device could not be created or is in the way (a device of that name tulle did not make).',
    action: 'Remove or rename the device named, or use another VNI.',
  },
  {
    code: 'TLE_GUARD',
    class: 'GuardError',
    area: 'overlay',
    meaning: 'The VXLAN guard (nftables or iptables rules) could not be programmed or read.',
    action: 'Check that nft or iptables works here; --vxlan-guard=false runs without it.',
  },
  {
    code: 'TLE_L2_DEVICE',
    class: 'L2Error',
    area: 'overlay',
    meaning: "The L2 network's VXLAN device could not be made (or its underlay interface is missing).",
    action: 'Read the reason; check the underlay interface and that nothing else uses the VNI and port.',
  },
  {
    code: 'TLE_L2_DEVICE_FOREIGN',
    class: 'L2Error',
    area: 'overlay',
    meaning: 'A device named vxlan<VNI> exists that tulle did not make: tulle neither changes nor deletes it.',
    action: 'Remove it (ip link del NAME) or choose another Backend.VNI.',
  },
  {
    code: 'TLE_L2_BRIDGE',
    class: 'L2Error',
    area: 'overlay',
    meaning: 'The bridge named by Backend.Bridge or --bridge exists but is not a bridge.',
    action: 'Name a bridge (or a name that does not exist yet: tulle makes it).',
  },
  {
    code: 'TLE_L2_REMOTE_HOSTS',
    class: 'L2Error',
    area: 'overlay',
    meaning: 'Flood "remote" joins exactly two hosts, and a third one tried to join (it took no lease and built nothing).',
    action: 'Use Flood "unicast" for three or more hosts.',
  },
  {
    code: 'TLE_L2_ENDPOINT_DEVICE',
    class: 'EndpointDeviceError',
    area: 'overlay',
    meaning: 'The L2 device of a Flood "none" network cannot answer ARP itself (made without proxy) or is missing.',
    action: 'Let the agent recreate the device (tulle agent --cleanup, then start it).',
  },
  {
    code: 'TLE_L2_ENDPOINT_WRITE',
    class: 'EndpointWriteError',
    area: 'overlay',
    meaning: 'The kernel refused FDB or neighbour entries for remote pods of a Flood "none" network.',
    action: 'Read the commands named; the agent retries.',
  },
  // The agent.
  {
    code: 'TLE_AGENT',
    class: 'AgentError',
    area: 'agent',
    meaning: 'The agent cannot go on (a fatal step failed); the message names the step.',
    action: 'Read the step and the reason; a supervisor restarts the agent.',
  },
  {
    code: 'TLE_AGENT_STOPPING',
    class: 'AgentError',
    area: 'agent',
    meaning: 'Work cut short because the agent is stopping (the reason given to aborted operations).',
    action: 'None: it ends operations during a stop.',
  },
  {
    code: 'TLE_HEALTH_LISTEN',
    class: 'TulleError',
    area: 'agent',
    meaning: '--health-addr cannot be served (in use, or an address not on this host).',
    action: 'Stop the other agent or give this one another --health-addr.',
  },
  // The CNI plugin and the agent's CNI socket.
  {
    code: 'TLE_CNI_INCOMPATIBLE_VERSION',
    class: 'CniError',
    area: 'cni',
    meaning: "CNI error 1: the config's cniVersion is not one tulle-cni speaks.",
    action: 'Use cniVersion 0.4.0, 1.0.0 or 1.1.0.',
  },
  {
    code: 'TLE_CNI_UNSUPPORTED_FIELD',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 2: a config key tulle-cni does not support (an ipam section).',
    action: 'Remove the key named; tulle allocates addresses itself.',
  },
  {
    code: 'TLE_CNI_UNKNOWN_CONTAINER',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 3: CNI_NETNS names no namespace.',
    action: 'None for DEL; for ADD the runtime passed a namespace that is gone.',
  },
  {
    code: 'TLE_CNI_INVALID_ENVIRONMENT',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 4: a CNI_* variable is missing or malformed (named).',
    action: "Fix the runtime's call: the variable named.",
  },
  {
    code: 'TLE_CNI_IO_FAILURE',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 5: the IPAM directory or its lock cannot be used.',
    action: 'Check the CNI data directory and its permissions.',
  },
  {
    code: 'TLE_CNI_DECODE_FAILURE',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 6: stdin is not a JSON object.',
    action: 'Pass the network config as JSON on stdin.',
  },
  {
    code: 'TLE_CNI_INVALID_CONFIG',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 7: a config field breaks a rule (field, value and rule named).',
    action: 'Fix the field named in the conflist.',
  },
  {
    code: 'TLE_CNI_TRY_AGAIN_LATER',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 11: subnet.env is missing, the agent is not up yet.',
    action: 'None: the runtime retries; start the agent if it does not come.',
  },
  {
    code: 'TLE_CNI_NOT_AVAILABLE',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 50 (STATUS): the plugin cannot serve ADD now (no subnet.env, or no free address).',
    action: 'Start the agent, or free addresses.',
  },
  {
    code: 'TLE_CNI_ADDRESS_EXHAUSTED',
    class: 'CniError',
    area: 'cni',
    meaning: "CNI error 100: no free address left in the host's subnet.",
    action: 'Remove pods, or lease larger subnets (SubnetLen).',
  },
  {
    code: 'TLE_CNI_INTERFACE_EXISTS',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 101: CNI_IFNAME already exists in the pod.',
    action: 'Use another interface name, or DEL first.',
  },
  {
    code: 'TLE_CNI_ALREADY_ALLOCATED',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 102: this container and interface already hold an address (ADD twice without DEL).',
    action: 'DEL the attachment first.',
  },
  {
    code: 'TLE_CNI_BRIDGE_CONFLICT',
    class: 'CniError',
    area: 'cni',
    meaning: "CNI error 103: the bridge name is taken by something else, or holds another subnet's gateway with pods attached.",
    action: 'Choose another bridge name, or remove the pods of the old subnet.',
  },
  {
    code: 'TLE_CNI_CHECK_FAILED',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 104: CHECK found the attachment not as ADD left it (the difference named).',
    action: 'Recreate the pod.',
  },
  {
    code: 'TLE_CNI_SUBNET_ENV_INVALID',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 105: subnet.env exists but cannot be parsed.',
    action: 'Restart the agent; it rewrites the file.',
  },
  {
    code: 'TLE_CNI_ADDRESS_IN_USE',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 106: the address asked for (IP=, ips) is held by another attachment.',
    action: 'Ask for another address or none.',
  },
  {
    code: 'TLE_CNI_AGENT_REQUIRED',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 107: ADD on an L2 network with Backend.Flood "none" reached the plugin alone; only the agent can publish the pod\'s endpoint record.',
    action: 'Start the tulle agent on this host (it serves the CNI socket); the runtime can then retry.',
  },
  {
    code: 'TLE_CNI_ENDPOINT_PUBLISH',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 108: the pod\'s endpoint record (Flood "none") could not be written to the store; the attachment was undone.',
    action: 'Check that the store answers (tulle status); the runtime can retry.',
  },
  {
    code: 'TLE_CNI_KERNEL',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 110: a kernel operation failed (the ip command and errno named).',
    action: 'Run the named ip command by hand to see why.',
  },
  {
    code: 'TLE_CNI_INTERNAL',
    class: 'CniError',
    area: 'cni',
    meaning: 'CNI error 999: anything unexpected (the original code is quoted).',
    action: 'Report it with the message.',
  },
  {
    code: 'TLE_CNI_ERROR',
    class: 'CniError',
    area: 'cni',
    meaning: 'A CNI error with a number tulle has no name for.',
    action: 'Read the message and the number.',
  },
  {
    code: 'TLE_CNI_INVOKE',
    class: 'CniInvocationError',
    area: 'cni',
    meaning: 'Running a CNI plugin failed: not found in CNI_PATH, a bad type, or no valid answer.',
    action: 'Check CNI_PATH and the plugin named.',
  },
  {
    code: 'TLE_CNI_BAD_REQUEST',
    class: 'BadRequestError',
    area: 'cni',
    meaning: "A request on the agent's CNI socket is malformed (answered as CNI error 6).",
    action: "None for the shim; another client must speak the socket's framing.",
  },
  {
    code: 'TLE_CNI_SOCKET',
    class: 'CniServerError',
    area: 'cni',
    meaning: '--cni-socket cannot be served: the path is not a socket or cannot be listened on.',
    action: 'Remove what is at the path or choose another; the shim runs the plugin itself meanwhile.',
  },
  {
    code: 'TLE_CNI_SOCKET_IN_USE',
    class: 'CniServerError',
    area: 'cni',
    meaning: 'Another process already serves the CNI socket.',
    action: 'Stop the other agent or give this one another --cni-socket.',
  },
  // Labs.
  {
    code: 'TLE_LAB_INVALID_NAME',
    class: 'InvalidValueError',
    area: 'lab',
    meaning: 'A lab name breaks the naming rule (lower-case letters and digits, short enough for interface names).',
    action: 'Choose a name that follows the rule.',
  },
  {
    code: 'TLE_LAB_INVALID_TARGET',
    class: 'InvalidValueError',
    area: 'lab',
    meaning: 'A lab target is not a host, router or switch name.',
    action: 'Use h1..hN, rt, sw, sw1 or sw2.',
  },
  {
    code: 'TLE_LAB_TARGET_NOT_FOUND',
    class: 'LabTargetNotFoundError',
    area: 'lab',
    meaning: 'The lab has no such host, router or switch.',
    action: 'Pick one of the targets listed.',
  },
  {
    code: 'TLE_LAB_EXISTS',
    class: 'LabExistsError',
    area: 'lab',
    meaning: 'A lab of that name (its directory or namespaces) already exists.',
    action: 'tulle lab down --name NAME, or choose another name.',
  },
  { code: 'TLE_LAB_NOT_FOUND', class: 'LabNotFoundError', area: 'lab', meaning: 'No lab of that name.', action: 'tulle lab list shows the labs.' },
  {
    code: 'TLE_LAB_STATE',
    class: 'LabStateError',
    area: 'lab',
    meaning: "The lab's state file cannot be read.",
    action: 'tulle lab down --name NAME removes the lab from its namespaces.',
  },
  {
    code: 'TLE_LAB_UNDO_FAILED',
    class: 'LabUndoError',
    area: 'lab',
    meaning: 'Building a lab failed and removing what was built failed too.',
    action: 'tulle lab down --name NAME.',
  },
  {
    code: 'TLE_LAB_TEARDOWN',
    class: 'LabTeardownError',
    area: 'lab',
    meaning: 'A lab could not be removed completely; what is left is named.',
    action: 'Run tulle lab down again; remove the named leftovers by hand if it repeats.',
  },
  {
    code: 'TLE_LAB_OVERLAY',
    class: 'LabOverlayError',
    area: 'lab',
    meaning: "A step of the lab's overlay failed (store, agents, pods).",
    action: "Read the step; the agents' logs are in the lab directory.",
  },
  {
    code: 'TLE_LAB_NO_OVERLAY',
    class: 'LabOverlayError',
    area: 'lab',
    meaning: 'The lab was built with --bare: it has no store, agents or pods.',
    action: 'Build it without --bare.',
  },
  {
    code: 'TLE_LAB_AGENT_EXITED',
    class: 'LabOverlayError',
    area: 'lab',
    meaning: "A lab host's agent exited; the last lines of its log are quoted.",
    action: 'Read the quoted log lines.',
  },
  {
    code: 'TLE_LAB_CONFIG',
    class: 'LabOverlayError',
    area: 'lab',
    meaning: "Writing the network config to the lab's store failed.",
    action: 'Check the --config file (tulle config put reads it the same way).',
  },
  // tulle install.
  {
    code: 'TLE_INSTALL',
    class: 'InstallError',
    area: 'install',
    meaning: 'tulle install or uninstall cannot go on (the manifest, a file it writes).',
    action: 'Read the reason and the path named.',
  },
  {
    code: 'TLE_INSTALL_ROOT',
    class: 'InstallError',
    area: 'install',
    meaning: '--root does not exist or is not a directory.',
    action: 'Give an existing directory.',
  },
  {
    code: 'TLE_INSTALL_CONFLICT',
    class: 'InstallError',
    area: 'install',
    meaning: 'A file tulle install did not write (or that changed since) is in the way.',
    action: 'Move it away, or --force.',
  },
  {
    code: 'TLE_INSTALL_SETTING',
    class: 'InvalidValueError',
    area: 'install',
    meaning: 'A setting would be written into a file where it cannot stand (a newline, a relative path, ...).',
    action: 'Give a value that follows the rule named.',
  },
  // tulle trace.
  {
    code: 'TLE_TRACE',
    class: 'TulleError',
    area: 'trace',
    meaning: "An agent's /trace endpoint failed without a code of its own.",
    action: "Read the agent's log on that host.",
  },
  {
    code: 'TLE_TRACE_REMOTE',
    class: 'RemoteTraceError',
    area: 'trace',
    meaning: "The destination host's agent did not answer /trace; the hops from there are not checked.",
    action: 'Start that agent, with --health-addr on an address the tracing host reaches.',
  },
  {
    code: 'TLE_TRACE_CAPTURE',
    class: 'LiveCaptureError',
    area: 'trace',
    meaning: '--live could not capture at a hop (tcpdump failed or is missing).',
    action: 'Install tcpdump; run as root.',
  },
  // tulle decode and the wire codec.
  {
    code: 'TLE_CAPTURE_UNREADABLE',
    class: 'TulleError',
    area: 'decode',
    meaning: 'The capture file cannot be opened.',
    action: 'Check the path and its permissions.',
  },
  {
    code: 'TLE_PCAP_BAD_MAGIC',
    class: 'PcapError',
    area: 'decode',
    meaning: 'The file is not a pcap or pcapng capture (its first bytes are quoted).',
    action: 'Write captures with tcpdump -w or tshark -w.',
  },
  {
    code: 'TLE_PCAP_TRUNCATED',
    class: 'PcapError',
    area: 'decode',
    meaning: 'The file ends inside a header, record or block (frames before it are shown).',
    action: 'None if the capture was cut; otherwise let the writer finish.',
  },
  {
    code: 'TLE_PCAP_BAD_LENGTH',
    class: 'PcapError',
    area: 'decode',
    meaning: 'A length field is impossible: zero, odd or larger than any packet.',
    action: 'The file is damaged from the offset named.',
  },
  {
    code: 'TLE_PCAP_MALFORMED',
    class: 'PcapError',
    area: 'decode',
    meaning: 'A block or header is inconsistent (trailing length differs, a packet before any interface).',
    action: 'The file is damaged from the offset named.',
  },
  {
    code: 'TLE_PCAP_UNSUPPORTED',
    class: 'PcapError',
    area: 'decode',
    meaning: 'A valid capture in a version or with a feature tulle does not read.',
    action: 'Convert it: editcap -F pcap IN OUT.',
  },
  {
    code: 'TLE_WIRE_TRUNCATED',
    class: 'WireError',
    area: 'decode',
    meaning: 'A frame: a header does not fit in the bytes captured.',
    action: 'Capture with a larger snap length (tcpdump -s 0).',
  },
  {
    code: 'TLE_WIRE_MALFORMED',
    class: 'WireError',
    area: 'decode',
    meaning: 'A frame: a field holds a value its protocol does not allow (layer and offset named).',
    action: 'None: the frame is shown as far as it goes.',
  },
  {
    code: 'TLE_WIRE_UNSUPPORTED',
    class: 'WireError',
    area: 'decode',
    meaning: 'A frame: well-formed, but not what the operation handles (not VXLAN, a fragment, an unknown link type).',
    action: 'None, or add the port with --port when it is VXLAN on another port.',
  },
];

const HEADER = ['code', 'class', 'meaning', 'what to do'];

/** The catalogue (or one area of it) as a Markdown table. */
export function formatErrorTable(area?: string): string {
  const rows = ERROR_CODES.filter((e) => area === undefined || e.area === area).map((e) => [`\`${e.code}\``, `\`${e.class}\``, e.meaning, e.action]);
  const line = (cells: string[]): string => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(HEADER), line(HEADER.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * Rewrite every error table in a README: the lines between `<!-- error-codes: AREA -->` (or `all`) and
 * `<!-- /error-codes -->` become that area's table.
 */
export function renderErrorTables(readme: string): string {
  return readme.replace(
    /(<!-- error-codes: ([a-z]+) -->\n)[\s\S]*?(<!-- \/error-codes -->)/g,
    (_m, open: string, area: string, close: string) => `${open}${formatErrorTable(area === 'all' ? undefined : area)}\n${close}`,
  );
}
