// Runs tugboat's conformance corpus (tests/fixtures/states/dataflow.json and intrinsics.json)
// through aws-local-stepfunctions, another Amazon States Language implementation, and prints
// each case whose outcome differs from what the corpus (and tugboat) says.
//
//     cd scripts/asl-compare && npm ci && node compare.mjs
//
// Tasks answer as the corpus says (`results`, `fail` with `Times`); waits and retry delays
// are overridden to 0 ms. Not part of the tests: a by-hand comparison (issue 31).
import { readFileSync } from 'node:fs';

// The package wants Node.js 22 for this one call; Debian's Node.js 20 runs it with it added.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((ok, fail) => { resolve = ok; reject = fail; });
    return { promise, resolve, reject };
  };
}
const { StateMachine } = await import('aws-local-stepfunctions');

const root = new URL('../../tests/fixtures/states/', import.meta.url);
const read = (name) => JSON.parse(readFileSync(new URL(name, root), 'utf8'));

function taskStates(definition, out = []) {
  for (const [name, s] of Object.entries(definition.States)) {
    if (s.Type === 'Task') out.push(name);
    for (const b of s.Branches ?? []) taskStates(b, out);
    if (s.ItemProcessor) taskStates(s.ItemProcessor, out);
    if (s.Iterator) taskStates(s.Iterator, out);
  }
  return out;
}

function waitStates(definition, out = []) {
  for (const [name, s] of Object.entries(definition.States)) {
    if (s.Type === 'Wait') out.push(name);
    for (const b of s.Branches ?? []) waitStates(b, out);
    if (s.ItemProcessor) waitStates(s.ItemProcessor, out);
  }
  return out;
}

async function outcome(definition, input, results = {}, fail = {}) {
  const tries = {};
  const handlers = {};
  for (const name of taskStates(definition)) {
    handlers[name] = async () => {
      tries[name] = (tries[name] ?? 0) + 1;
      const f = fail[name];
      if (f && tries[name] <= (f.Times ?? Infinity)) {
        const e = new Error(f.Cause);
        e.name = f.Error;
        throw e;
      }
      return results[name] ?? {};
    };
  }
  const waits = Object.fromEntries(waitStates(definition).map((n) => [n, 0]));
  const retries = Object.fromEntries(taskStates(definition).map((n) => [n, 0]));
  const machine = new StateMachine(definition, { validationOptions: { checkArn: false, checkPaths: false } });
  try {
    const execution = machine.run(input, { overrides: { taskResourceLocalHandlers: handlers, waitTimeOverrides: waits, retryIntervalOverrides: retries } });
    return { output: await execution.result };
  } catch (err) {
    const e = err.cause ?? err;
    return { error: { Error: e.name, Cause: typeof e.cause === 'string' ? e.cause : e.message } };
  }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let differ = 0;
let total = 0;

for (const c of read('dataflow.json')) {
  total += 1;
  const got = await outcome(c.definition, c.input, c.results, c.fail);
  const want = 'error' in c ? { error: c.error } : { output: c.output };
  if (!same(got, want)) {
    differ += 1;
    console.log(`DIFFERS ${c.source}\n  corpus:                  ${JSON.stringify(want)}\n  aws-local-stepfunctions: ${JSON.stringify(got)}`);
  }
}

for (const c of read('intrinsics.json')) {
  total += 1;
  const definition = { StartAt: 'P', States: { P: { Type: 'Pass', Parameters: { 'v.$': c.field }, End: true } } };
  const got = await outcome(definition, c.input);
  const want = { output: { v: c.output } };
  if (!same(got, want)) {
    differ += 1;
    console.log(`DIFFERS ${c.source}: ${c.field}\n  corpus:                  ${JSON.stringify(want)}\n  aws-local-stepfunctions: ${JSON.stringify(got)}`);
  }
}

console.log(`${total - differ} of ${total} cases agree with aws-local-stepfunctions`);
