/**
 * tulle-cni entry. The CNI plugin is built by the CNI issue; until then it answers every command with a CNI
 * error object (code 4 would be wrong: the environment is fine, the plugin is not) and a non-zero exit.
 */
export async function main(_env: NodeJS.ProcessEnv, _stdin: NodeJS.ReadableStream, stdout: NodeJS.WritableStream): Promise<number> {
  stdout.write(JSON.stringify({ cniVersion: '1.1.0', code: 999, msg: 'tulle-cni is not yet implemented' }) + '\n');
  return 1;
}
