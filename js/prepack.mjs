// Copies the browser client into this folder before `npm pack` / `npm publish`.
//
// The sources are the very files every aiosocker server serves, in the Python package
// (src/aiosocker/static/): aiosocker.js, aiosocker.d.ts and aiosocker/*.js. Git keeps them
// there only; the copies made here are ignored (.gitignore). LICENSE comes from the
// repository's root. No dependencies: node's own fs and path.
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const from = join(root, "src", "aiosocker", "static");

rmSync(join(here, "aiosocker"), { recursive: true, force: true }); // no stale modules
mkdirSync(join(here, "aiosocker"));
const copies = [["aiosocker.js"], ["aiosocker.d.ts"]];
for (const name of readdirSync(join(from, "aiosocker")).sort()) {
  if (name.endsWith(".js")) copies.push(["aiosocker", name]);
}
for (const parts of copies) copyFileSync(join(from, ...parts), join(here, ...parts));
copyFileSync(join(root, "LICENSE"), join(here, "LICENSE"));
console.log(`prepack: copied ${copies.length} files from src/aiosocker/static/`);
