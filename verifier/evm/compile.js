#!/usr/bin/env node
// Compiles the Solidity verifier read from stdin with solc-js 0.8.19 through standard JSON and
// prints, as JSON, each contract's deployment bytecode (hex) and runtime code size in bytes.
// Optimizer off and no viaIR: snark-verifier's generated assembly is written for the legacy
// pipeline (viaIR yields a contract that always reverts; the optimizer runs out of memory on it).
// `--optimize` turns the optimizer on (200 runs) for hand-written contracts (the escrow).
const solc = require('solc');
const source = require('fs').readFileSync(0, 'utf8');
const input = {
  language: 'Solidity',
  sources: { 'Verifier.sol': { content: source } },
  settings: {
    optimizer: { enabled: process.argv.includes('--optimize'), runs: 200 },
    outputSelection: { '*': { '*': ['evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
if (errors.length > 0) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const result = {};
for (const [name, c] of Object.entries(out.contracts['Verifier.sol'] || {})) {
  result[name] = {
    bytecode: c.evm.bytecode.object,
    runtime_bytes: c.evm.deployedBytecode.object.length / 2,
  };
}
process.stdout.write(JSON.stringify(result) + '\n');
