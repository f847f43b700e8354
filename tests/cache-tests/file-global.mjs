// Preloaded (node --import) into the suite's CLI: undici 7, which the suite's interim-response
// tests use, needs the global File that Node.js has from 20 on; Node 18 (Debian bookworm's) has
// it in 'buffer' only.
import { File } from 'buffer'
globalThis.File ??= File
