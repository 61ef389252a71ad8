// The GJS tests' TAP runner on the GLib main loop, and the assertions they share.
//
//   import {test, assert, assertEqual, waitUntil, sleep, runTests} from './tap.js';
//   test('name', async () => { ... });
//   runTests();   // runs them in order, prints TAP, exits 1 if any failed

import GLib from 'gi://GLib';
import System from 'system';

const TIME_SCALE = Number(GLib.getenv('CHATHUB_TEST_TIME_SCALE') || '1');
const tests = [];

export function test(name, fn) {
    tests.push([name, fn]);
}

export class AssertionError extends Error {}

export function assert(condition, what) {
    if (!condition)
        throw new AssertionError(what ?? 'assertion failed');
}

export function assertEqual(actual, expected, what) {
    const a = JSON.stringify(actual), e = JSON.stringify(expected);
    if (a !== e)
        throw new AssertionError(`${what ?? 'value'}: expected ${e}, got ${a}`);
}

export function sleep(ms) {
    return new Promise(resolve => GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
        resolve();
        return GLib.SOURCE_REMOVE;
    }));
}

// Resolves with what predicate() returns once it is truthy; checks every 5 ms. The bound is a
// deadline, not a measurement (CHATHUB_TEST_TIME_SCALE stretches it on slow machines).
export function waitUntil(predicate, what, ms = 10000) {
    return new Promise((resolve, reject) => {
        const deadline = GLib.get_monotonic_time() + ms * 1000 * TIME_SCALE;
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, 5, () => {
            let result;
            try {
                result = predicate();
            } catch (e) {
                reject(e);
                return GLib.SOURCE_REMOVE;
            }
            if (result) {
                resolve(result);
                return GLib.SOURCE_REMOVE;
            }
            if (GLib.get_monotonic_time() > deadline) {
                reject(new AssertionError(`timed out waiting for ${what}`));
                return GLib.SOURCE_REMOVE;
            }
            return GLib.SOURCE_CONTINUE;
        });
    });
}

export function runTests() {
    const loop = new GLib.MainLoop(null, false);
    let failures = 0;

    async function main() {
        print(`1..${tests.length}`);
        let n = 0;
        for (const [name, fn] of tests) {
            n++;
            try {
                await fn();
                print(`ok ${n} - ${name}`);
            } catch (e) {
                failures++;
                print(`not ok ${n} - ${name}`);
                for (const line of `${e}\n${e.stack ?? ''}`.split('\n'))
                    print(`# ${line}`);
            }
        }
        loop.quit();
    }

    GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
        main().catch(e => {
            print(`Bail out! ${e}`);
            failures++;
            loop.quit();
        });
        return GLib.SOURCE_REMOVE;
    });
    loop.run();
    System.exit(failures > 0 ? 1 : 0);
}
