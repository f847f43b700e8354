// Counts cache-tests results the way cache-tests.fyi shows them (imgedge's, not the suite's).
//
// usage: node count.mjs [--list] [--max-required N] [--min-passes N] RESULTS.json...
//   one line of counts per results file (the CLI's output, or a published results/*.json);
//   --list            also print every required failure (⛔️) with the suite's reason
//   --max-required N  exit 1 when a file has more than N required failures
//   --min-passes N    exit 1 when a file has fewer than N passes
//
// The classification is the suite's determineTestResult() (test-engine/lib/results.mjs), which
// the cache-tests.fyi page uses for its symbols. passed = ✅ (a required or optimal test returned
// true); required failures = ⛔️ (a required test failed and every test in its depends_on
// passed; otherwise it is ⚪️ dependency_fail, which counts as neither).
import fs from 'fs'
import suites from './tests/index.mjs'
import { determineTestResult, resultTypes } from './test-engine/lib/results.mjs'

const args = process.argv.slice(2)
let list = false
let maxRequired = null
let minPasses = null
const files = []
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === '--list') list = true
  else if (a === '--max-required') maxRequired = intArg(a, args[++i])
  else if (a === '--min-passes') minPasses = intArg(a, args[++i])
  else if (a.startsWith('--')) usage(`unknown option ${a}`)
  else files.push(a)
}
if (files.length === 0) usage('no results file')

function intArg (name, value) {
  if (!/^[0-9]+$/.test(value || '')) usage(`${name} needs a number, got ${value}`)
  return Number(value)
}

function usage (why) {
  console.error(`count.mjs: ${why}`)
  console.error('usage: node count.mjs [--list] [--max-required N] [--min-passes N] RESULTS.json...')
  process.exit(2)
}

const suiteOf = new Map()
for (const s of suites) for (const t of s.tests) suiteOf.set(t.id, s.id)

// the suite's own classification, named by its key in resultTypes
const typeName = new Map(Object.entries(resultTypes).map(([name, type]) => [type, name]))
const classify = (results, id) => typeName.get(determineTestResult(suites, id, results))

let missed = false
for (const file of files) {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  const counts = {}
  const failures = []
  for (const id of suiteOf.keys()) {
    const c = classify(results, id)
    counts[c] = (counts[c] || 0) + 1
    if (c === 'fail') failures.push(id)
  }
  const n = k => counts[k] || 0
  const others = ['optional_fail', 'yes', 'no', 'setup_fail', 'harness_fail', 'dependency_fail', 'retry', 'untested']
  console.log(`${file}: ${n('pass')} passed, ${n('fail')} required failures ` +
    `(of ${suiteOf.size} tests; ${others.map(k => `${k} ${n(k)}`).join(', ')})`)
  if (list) {
    for (const id of failures) {
      const r = results[id]
      console.log(`  FAIL ${suiteOf.get(id)}/${id}: ${Array.isArray(r) ? r.join(': ') : r}`)
    }
  }
  const bad = []
  if (maxRequired !== null && n('fail') > maxRequired) bad.push(`${n('fail')} required failures > ${maxRequired}`)
  if (minPasses !== null && n('pass') < minPasses) bad.push(`${n('pass')} passes < ${minPasses}`)
  if (bad.length) {
    console.log(`  NOT MET: ${bad.join('; ')}`)
    missed = true
  }
}
process.exit(missed ? 1 : 0)
