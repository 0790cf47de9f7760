// Opens trail's dashboard in headless Chromium, uses it as a person would (zoom, a click on a
// release, the people-only filter, paging, export), prints what it saw as JSON lines, and saves
// screenshots 1280 and 800 px wide.
// Usage: node dashboard.mjs URL WIDE.png NARROW.png
// Line 1: everything but the live row (the test then appends an event); line 2: the live row.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { accessibilityViolations } from "./a11y.mjs";

const [url, wide, narrow] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const texts = (page, selector) => page.$$eval(selector, (els) => els.map((e) => e.textContent.trim()));
const firstSeq = (page) => page.$eval("#audit tbody tr", (tr) => Number(tr.dataset.seq));
const lastSeq = (page) => page.$eval("#audit tbody tr:last-child", (tr) => Number(tr.dataset.seq));
// Waits until the audit table shows something other than `before` (its first row's seq and
// row count), as after a new page or filter.
async function tableChanged(page, before) {
  await page.waitForFunction((b) => {
    const rows = document.querySelectorAll("#audit tbody tr");
    const seq = rows.length ? Number(rows[0].dataset.seq) : 0;
    return seq !== b.seq || rows.length !== b.rows;
  }, before, { timeout: 15000 });
}
const tableState = (page) => page.evaluate(() => {
  const rows = document.querySelectorAll("#audit tbody tr");
  return { seq: rows.length ? Number(rows[0].dataset.seq) : 0, rows: rows.length };
});
async function download(page, button) {
  const [file] = await Promise.all([page.waitForEvent("download", { timeout: 15000 }), page.click(button)]);
  return { name: file.suggestedFilename(), body: readFileSync(await file.path(), "utf8") };
}

try {
  // A browser far from UTC: the page starts in UTC and offers the browser's zone.
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, timezoneId: "America/New_York" });
  await page.goto(url);
  // The page says when its first paint holds data.
  await page.waitForSelector("body[data-ready='true']", { timeout: 20000 });
  const seen = await page.evaluate(() => ({
    status: document.getElementById("status").textContent,
    shares: [...document.querySelectorAll(".share")].map((e) => e.textContent),
    lastRelease: document.querySelector("#service-list .last")?.textContent ?? "",
    auditRows: document.querySelectorAll("#audit tbody tr").length,
    firstTime: document.querySelector("#audit tbody tr td:nth-child(2)")?.textContent ?? "",
    timeHeader: document.getElementById("time-header").textContent,
    figures: Object.fromEntries([...document.querySelectorAll("#figures .figure")].map((f) =>
      [f.dataset.figure, { value: f.querySelector("b").textContent, of: f.querySelector(".of").textContent }])),
    perService: [...document.querySelectorAll("#per-service tbody tr")].map((tr) => [...tr.cells].map((c) => c.textContent)),
    dayBars: document.querySelectorAll("#delivery-chart rect.day").length,
    chartTicks: [...document.querySelectorAll("#delivery-chart text")].map((t) => t.textContent),
  }));
  seen.laneLabels = await texts(page, "#lanes .lane-label:not(.axis-title)");
  seen.axisTitle = await page.textContent("#lanes .axis-title");
  seen.ticks = await texts(page, "#lanes .tick");
  seen.legend = await texts(page, "#legend li");
  seen.releases = await page.$$eval("#lanes button.release", (bs) => bs.map((b) => `${b.textContent} ${b.className}`));
  seen.releaseColours = await page.$$eval("#lanes button.release", (bs) =>
    Object.fromEntries(bs.map((b) => [b.dataset.outcome, getComputedStyle(b).backgroundColor])));

  // Zoom: the axis is redrawn for the window.
  await page.click(".windows button[data-window='24h']");
  await page.waitForFunction(() => document.getElementById("lanes-window").textContent.includes("24 hours"));
  seen.ticks24h = await texts(page, "#lanes .tick");
  seen.releases24h = await page.locator("#lanes button.release").count();
  await page.click(".windows button[data-window='all']");
  await page.waitForFunction(() => document.getElementById("lanes-window").textContent.includes("all time"));

  // A click on the alarm rollback: its details, and the audit narrowed to its rows.
  let before = await tableState(page);
  await page.click("#lanes button.release.alarm");
  await page.waitForSelector("#release-details:not([hidden])");
  await tableChanged(page, before);
  seen.details = await page.textContent("#release-details");
  seen.rolloutFilter = await page.textContent("#rollout-filter");
  seen.rolloutRows = await page.$$eval("#audit tbody tr", (trs) => trs.map((tr) => ({
    version: tr.cells[5].textContent, type: tr.cells[4].textContent, actor: tr.cells[3].textContent })));
  seen.a11yDetails = await accessibilityViolations(page);
  before = await tableState(page);
  await page.click("#clear-rollout");
  await tableChanged(page, before);
  seen.afterClear = (await tableState(page)).rows;

  // People only: no row by the roller itself; exported as CSV and JSON, the same rows.
  before = await tableState(page);
  await page.check("#f-people");
  await tableChanged(page, before);
  seen.peopleActors = [...new Set(await page.$$eval("#audit tbody tr", (trs) => trs.map((tr) => tr.dataset.actor)))];
  seen.peopleRows = (await tableState(page)).rows;
  const csv = await download(page, "#export-csv");
  await page.waitForFunction(() => document.getElementById("export-status").textContent.startsWith("exported"));
  const json = await download(page, "#export-json");
  const exported = JSON.parse(json.body);
  seen.csv = { name: csv.name, lines: csv.body.trim().split(/\r?\n/) };
  seen.json = { name: json.name, rows: exported.length, actors: [...new Set(exported.map((r) => r.actor))] };
  before = await tableState(page);
  await page.uncheck("#f-people");
  await tableChanged(page, before);

  // Paging with the cursor: 25 a page, the next page, and back to the first.
  before = await tableState(page);
  await page.selectOption("#f-limit", "25");
  await tableChanged(page, before);
  const page1 = { first: await firstSeq(page), last: await lastSeq(page), rows: (await tableState(page)).rows, info: await page.textContent("#page-info") };
  before = await tableState(page);
  await page.click("#next-page");
  await tableChanged(page, before);
  const page2 = { first: await firstSeq(page), rows: (await tableState(page)).rows, info: await page.textContent("#page-info") };
  before = await tableState(page);
  await page.click("#first-page");
  await tableChanged(page, before);
  const back = { first: await firstSeq(page), info: await page.textContent("#page-info") };
  seen.paging = { page1, page2, back };

  // Search within the page.
  before = await tableState(page);
  await page.selectOption("#f-limit", "500");
  await tableChanged(page, before);
  await page.fill("#search", "rolled back: alarm");
  seen.searchRows = await page.locator("#audit tbody tr").count();
  seen.searchRow = await page.textContent("#audit tbody tr");
  await page.fill("#search", "");
  seen.a11y = await accessibilityViolations(page);

  // Times in the browser's zone, then back to UTC.
  seen.zones = await page.$$eval("#zone option", (os) => os.map((o) => o.value));
  await page.selectOption("#zone", "America/New_York");
  seen.localHeader = await page.textContent("#time-header");
  seen.localTime = await page.textContent("#audit tbody tr td:nth-child(2)");
  seen.localAxis = await page.textContent("#lanes .axis-title");
  await page.selectOption("#zone", "UTC");

  // The table updates live from the feed: the test appends an event after this line.
  seen.rowsBeforeLive = await page.locator("#audit tbody tr").count();
  process.stdout.write(JSON.stringify(seen) + "\n");
  await page.waitForFunction((n) => document.querySelectorAll("#audit tbody tr").length > n, seen.rowsBeforeLive, { timeout: 20000 });
  const live = { liveRows: await page.locator("#audit tbody tr").count() };
  // Screenshots of a first page of 25 rows.
  before = await tableState(page);
  await page.selectOption("#f-limit", "25");
  await tableChanged(page, before);
  await page.screenshot({ path: wide, fullPage: true });
  await page.setViewportSize({ width: 800, height: 900 });
  await page.waitForFunction(() => Number(document.getElementById("lanes").dataset.width) < 800, null, { timeout: 10000 });
  live.a11yNarrow = await accessibilityViolations(page);
  live.narrowTicks = await texts(page, "#lanes .tick");
  await page.screenshot({ path: narrow, fullPage: true });
  process.stdout.write(JSON.stringify(live) + "\n");
} finally {
  await browser.close();
}
