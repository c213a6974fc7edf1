// The accessibility audit shared by the page tests: axe-core, injected into
// the page as it is, WCAG 2.1 A and AA; a failure lists every violation.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const AXE_SOURCE = fs.readFileSync(
  path.join(__dirname, '..', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

// Runs axe on the page as it is now; fails listing every violation.
async function audit(page, state) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.addScriptTag({ content: AXE_SOURCE });
  }
  const result = await page.evaluate((tags) => window.axe.run(document, {
    runOnly: { type: 'tag', values: tags },
    resultTypes: ['violations'],
  }), WCAG_TAGS);
  const report = result.violations.map((v) => [
    `${v.id} (${v.impact}): ${v.help}`,
    ...v.nodes.map((n) => `    at ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' / ')}`),
  ].join('\n'));
  assert.equal(report.length, 0,
    `axe found ${report.length} WCAG violation(s) ${state}:\n${report.join('\n')}`);
  // The audit really looked: many rules found elements to check and passed.
  assert.ok(result.passes.length > 10,
    `axe passed only ${result.passes.length} rules ${state}: did it run?`);
}

module.exports = { audit, WCAG_TAGS };
