// Accessibility basics of a page with axe-core (Deque's checker, from the npm registry): the
// WCAG 2 A and AA rules, which cover labels, names, contrast, landmarks and keyboard focus
// order. Returns the violations as short lines, empty when there are none.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export async function accessibilityViolations(page) {
  // Evaluated through the DevTools protocol, which the page's Content-Security-Policy (no
  // inline scripts) does not govern; a <script> tag would be refused by it.
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
    return result.violations.map((v) => ({
      id: v.id,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    }));
  });
  return violations.map((v) => `${v.id}: ${v.help} (${v.nodes.join("; ")})`);
}
