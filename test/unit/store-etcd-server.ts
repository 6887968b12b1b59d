/**
 * A real etcd server for tests: /usr/bin/etcd on 127.0.0.1 with free ports and a fresh data directory,
 * stopped by its PID (and its directory removed) when the test ends, also when it fails. It can be stopped and
 * started again on the same ports and data, as an outage. Optional TLS with client certificates (made with
 * openssl) and password authentication.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasProgram, run, runSync } from '../../src/base/exec.js';
import { sleep } from '../../src/base/retry.js';

export interface EtcdTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface EtcdServer {
  /** The tulle store URL, etcd://127.0.0.1:PORT */
  url: string;
  endpoint: string;
  dataDir: string;
  /** Client certificate files when started with TLS. */
  tls?: EtcdTlsFiles;
  readonly pid: number | undefined;
  /** etcdctl with this server's endpoint and credentials. */
  etcdctl(args: string[], input?: string): Promise<string>;
  stop(): Promise<void>;
  start(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running)
    if (child.pid)
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
});

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** Start etcd; it is stopped and its data removed by `t.after`. Fails (not skips) when etcd is not installed. */
export async function startEtcd(
  t: { after(fn: () => unknown): void },
  options: { tls?: boolean; auth?: { username: string; password: string } } = {},
): Promise<EtcdServer> {
  if (!hasProgram('etcd') || !hasProgram('etcdctl'))
    throw new Error('these tests need a real etcd server: install etcd-server and etcd-client (bash scripts/install-deps.sh)');
  const dataDir = mkdtempSync(join(tmpdir(), 'tulle-etcd-'));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const tls = options.tls ? makeCertificates(dataDir) : undefined;
  const scheme = tls ? 'https' : 'http';
  const clientUrl = `${scheme}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name',
    'test',
    '--data-dir',
    join(dataDir, 'data'),
    '--listen-client-urls',
    clientUrl,
    '--advertise-client-urls',
    clientUrl,
    '--listen-peer-urls',
    peerUrl,
    '--initial-advertise-peer-urls',
    peerUrl,
    '--initial-cluster',
    `test=${peerUrl}`,
    '--logger',
    'zap',
    '--log-level',
    'error',
    ...(tls
      ? ['--cert-file', join(dataDir, 'server.pem'), '--key-file', join(dataDir, 'server-key.pem'), '--trusted-ca-file', tls.caFile, '--client-cert-auth']
      : []),
  ];
  let child: ChildProcess | undefined;
  let stderr = '';

  const ctlArgs = (): string[] => [
    `--endpoints=${clientUrl}`,
    '--dial-timeout=3s',
    '--command-timeout=5s',
    ...(tls ? [`--cacert=${tls.caFile}`, `--cert=${tls.certFile}`, `--key=${tls.keyFile}`] : []),
    ...(authEnabled && options.auth ? [`--user=${options.auth.username}:${options.auth.password}`] : []),
  ];
  let authEnabled = false;

  const server: EtcdServer = {
    url: `etcd://127.0.0.1:${clientPort}`,
    endpoint: `127.0.0.1:${clientPort}`,
    dataDir,
    ...(tls ? { tls } : {}),
    get pid() {
      return child?.pid;
    },
    async etcdctl(a, input) {
      return (await run(['etcdctl', ...ctlArgs(), ...a], input === undefined ? {} : { input })).stdout;
    },
    async start() {
      stderr = '';
      const c = spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      child = c;
      running.add(c);
      c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
      c.once('exit', () => running.delete(c));
      const deadline = Date.now() + 20_000;
      while (!(await healthy(clientUrl, tls))) {
        if (c.exitCode !== null) throw new Error(`etcd exited with ${c.exitCode}: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`etcd did not become healthy within 20 s: ${stderr}`);
        await sleep(50);
      }
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      process.kill(c.pid!, 'SIGTERM');
      const kill = setTimeout(() => process.kill(c.pid!, 'SIGKILL'), 5000);
      await exited;
      clearTimeout(kill);
    },
  };
  t.after(async () => {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await server.start();
  if (options.auth) {
    const { username, password } = options.auth;
    await server.etcdctl(['user', 'add', `${username}:${password}`]);
    if (username !== 'root') await server.etcdctl(['user', 'add', 'root:rootpw']);
    await server.etcdctl(['user', 'grant-role', 'root', 'root']);
    if (username !== 'root') {
      await server.etcdctl(['role', 'add', 'tulle']);
      await server.etcdctl(['role', 'grant-permission', '--prefix=true', 'tulle', 'readwrite', '/']);
      await server.etcdctl(['user', 'grant-role', username, 'tulle']);
    }
    await server.etcdctl(['auth', 'enable']);
    authEnabled = true;
  }
  return server;
}

function healthy(clientUrl: string, tls: EtcdTlsFiles | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const url = `${clientUrl}/health`;
    const done = (ok: boolean): void => resolve(ok);
    const req = tls
      ? httpsRequest(url, { ca: readPem(tls.caFile), cert: readPem(tls.certFile), key: readPem(tls.keyFile), timeout: 1000 })
      : httpRequest(url, { timeout: 1000 });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => done(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
    });
    req.on('error', () => done(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

function readPem(path: string): Buffer {
  return readFileSync(path);
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all made with openssl in `dir`. */
function makeCertificates(dir: string): EtcdTlsFiles {
  if (!hasProgram('openssl')) throw new Error('the etcd TLS test needs openssl');
  const p = (name: string): string => join(dir, name);
  const ssl = (...args: string[]): void => void runSync(['openssl', ...args]);
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=tulle-test-ca', '-keyout', p('ca-key.pem'), '-out', p('ca.pem'));
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, cn] of [
    ['server', '127.0.0.1'],
    ['client', 'tulle-client'],
  ] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', p(`${name}-key.pem`), '-out', p(`${name}.csr`));
    ssl(
      'x509',
      '-req',
      '-in',
      p(`${name}.csr`),
      '-CA',
      p('ca.pem'),
      '-CAkey',
      p('ca-key.pem'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      p(`${name}.ext`),
      '-out',
      p(`${name}.pem`),
    );
  }
  return { caFile: p('ca.pem'), certFile: p('client.pem'), keyFile: p('client-key.pem') };
}
