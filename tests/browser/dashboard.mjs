// Opens trail's dashboard in headless Chromium, waits for it to render the live data, prints
// what a person would see as JSON, and saves a screenshot.
// Usage: node dashboard.mjs URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  await page.waitForSelector("#audit tbody tr", { timeout: 15000 });
  await page.waitForSelector("#release-timeline rect.release", { timeout: 15000 });
  await page.waitForSelector("#figures .figure", { timeout: 15000 });
  const seen = await page.evaluate(() => ({
    status: document.getElementById("status").textContent,
    auditRows: document.querySelectorAll("#audit tbody tr").length,
    firstRow: document.querySelector("#audit tbody tr")?.innerText ?? "",
    shares: [...document.querySelectorAll(".share")].map((e) => e.textContent),
    releases: [...document.querySelectorAll("#release-timeline rect.release")].map((e) => e.getAttribute("class")),
    figures: Object.fromEntries([...document.querySelectorAll("#figures .figure")].map((f) => [f.dataset.figure, f.querySelector("b").textContent])),
    dayBars: document.querySelectorAll("#delivery-chart rect.day").length,
  }));
  // Search narrows the table.
  await page.fill("#search", "rolled back");
  seen.searchRows = await page.locator("#audit tbody tr").count();
  await page.fill("#search", "");
  // The table updates live from the feed: wait for a row newer than the first one shown.
  const before = seen.auditRows;
  process.stdout.write(JSON.stringify({ ...seen, ready: true }) + "\n");
  await page.waitForFunction((n) => document.querySelectorAll("#audit tbody tr").length > n, before, { timeout: 20000 });
  seen.liveRows = await page.locator("#audit tbody tr").count();
  await page.screenshot({ path: screenshot, fullPage: true });
  process.stdout.write(JSON.stringify(seen) + "\n");
} finally {
  await browser.close();
}
