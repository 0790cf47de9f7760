// Drives the roller console in headless Chromium as a person would: signs in, releases v2 from
// the page, sees the canary wait, promotes, watches the steps advance, sees an alarm (set
// through the simulator) roll the release back with its cause; then a viewer sees no action
// buttons and is refused by the API; the config diff shows the changed field. Prints what it
// saw as one JSON object and saves screenshots (1280 and 800 px wide).
// Usage: node console.mjs ROLLER_URL ADMIN_TOKEN VIEWER_TOKEN OUT_DIR
import { chromium } from "playwright-core";
import { accessibilityViolations } from "./a11y.mjs";

const [url, adminToken, viewerToken, outDir] = process.argv.slice(2);
const seen = { a11y: {} };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const text = (page, selector) => page.locator(selector).first().innerText();
const ready = (page) => page.waitForSelector("body[data-ready=true]", { timeout: 15000 });

/// Opens the command dialog for `action`, fills it, previews, then confirms.
async function command(page, action, fill) {
  await page.click(`#actions button[data-action="${action}"]`);
  await page.waitForSelector("#confirm[open]");
  if (fill) await fill();
  await page.click("#preview-button");
  await page.waitForSelector("#confirm-button:not([disabled])", { timeout: 10000 });
  const preview = await text(page, "#preview");
  await page.click("#confirm-button");
  await page.waitForSelector("#confirm", { state: "hidden", timeout: 10000 });
  return preview;
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => { seen.pageErrors = [...(seen.pageErrors || []), String(e)]; });

  // Signed out: the sign-in form, then the services list.
  await page.goto(url + "/");
  await ready(page);
  seen.signInShown = await page.isVisible("#sign-in-form");
  seen.a11y.signIn = await accessibilityViolations(page);
  await page.fill("#token-input", adminToken);
  await page.click("#sign-in-form button[type=submit]");
  await page.waitForSelector("#services tbody tr[data-service=hello]", { timeout: 15000 });
  seen.who = await text(page, "#who");
  seen.servicesRow = await text(page, "#services tbody tr[data-service=hello]");
  seen.trailLink = await page.getAttribute("#trail-link", "href");
  seen.a11y.services = await accessibilityViolations(page);

  // The service: release v2 from the page.
  await page.click("#services a[href='#/services/hello']");
  await page.waitForSelector("#service-view:not([hidden]) #history tbody tr", { timeout: 15000 });
  seen.releasePreview = await command(page, "release", async () => {
    await page.fill("#release-version", "v2");
    await page.fill("#reason", "ship the new greeting");
  });
  await page.waitForFunction(() => document.querySelector("#rollout")?.innerText.includes("Waiting for: promote"), null, { timeout: 30000 });
  seen.canary = await text(page, "#rollout");
  seen.canaryCurrentStep = await text(page, ".ladder li[aria-current=step]");
  // Each version's part of the traffic bar, as its label and its share of the bar's width.
  seen.canaryTraffic = await page.$$eval("#traffic .share", (parts) => parts.map((p) => [
    p.textContent, Math.round((p.getBoundingClientRect().width / p.parentElement.getBoundingClientRect().width) * 100)]));
  seen.a11y.service = await accessibilityViolations(page);
  await page.screenshot({ path: `${outDir}/console.png`, fullPage: true });
  await page.setViewportSize({ width: 800, height: 900 });
  await page.screenshot({ path: `${outDir}/console-800.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });

  // Promote: the steps advance past the canary (25% of two instances moves nothing more, so
  // it is passed at once) to the 50% step's timed pause.
  seen.promotePreview = await command(page, "promote", async () => {
    await page.fill("#reason", "canary is clean");
  });
  await page.waitForFunction(() => document.querySelector("#rollout")?.innerText.includes("Waiting for: pause"), null, { timeout: 30000 });
  seen.afterPromoteStep = await text(page, ".ladder li[aria-current=step]");
  seen.doneSteps = await page.locator(".ladder li.done").count();

  // An alarm through the simulator: the release rolls back, and the page says why.
  const alarm = await fetch(`${url}/v1/sim/alarms/hello-5xx`, {
    method: "POST",
    headers: { Authorization: "Bearer " + adminToken, "Content-Type": "application/json" },
    body: JSON.stringify({ state: "ALARM", reason: "5xx above 1% for 1 minute", value: 4.2 }),
  });
  seen.alarmSet = alarm.status;
  await page.waitForFunction(() => document.querySelector("#history tbody tr")?.innerText.includes("rolled back"), null, { timeout: 30000 });
  seen.rolledBack = await text(page, "#history tbody tr");
  seen.alarmRow = await text(page, "#alarms tbody tr");

  // Events: the log in sentences, the raw event one click away.
  await page.click("#tab-events");
  await page.waitForSelector("#events tbody tr", { timeout: 15000 });
  await page.check("#people-only");
  // The list is drawn again for the filter: wait for a person's row rather than reading it
  // mid-draw (an empty list was read once on a loaded machine).
  await page.waitForFunction(
    () => [...document.querySelectorAll("#events tbody tr")].some((r) => r.innerText.includes("admin via token")),
    null,
    { timeout: 15000 },
  );
  seen.peopleEvents = await page.locator("#events tbody tr").allInnerTexts();
  await page.locator("#events tbody tr details summary").first().click();
  seen.rawEvent = await text(page, "#events tbody tr details pre");
  seen.a11y.events = await accessibilityViolations(page);

  // Config: the diff between the two versions names the changed field.
  await page.click("#tab-config");
  await page.waitForSelector("#diff tbody tr", { timeout: 15000 });
  seen.diffRows = await page.locator("#diff tbody tr").allInnerTexts();
  await page.fill("#plan-version", "v3");
  await page.click("#plan-form button[type=submit]");
  await page.waitForSelector("#plan-out table", { timeout: 10000 });
  seen.plan = await text(page, "#plan-out");
  seen.a11y.config = await accessibilityViolations(page);

  // A viewer: reads everything, sees no action, and the API refuses its command.
  const viewer = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await viewer.goto(`${url}/#token=${viewerToken}`);
  await viewer.waitForSelector("#services tbody tr[data-service=hello]", { timeout: 15000 });
  seen.viewerUrl = viewer.url();
  await viewer.click("#services a[href='#/services/hello']");
  await viewer.waitForSelector("#service-view:not([hidden]) #history tbody tr", { timeout: 15000 });
  seen.viewerActionsHidden = await viewer.locator("#actions").isHidden();
  seen.viewerPost = await viewer.evaluate(async (t) => {
    const r = await fetch("/v1/services/hello/releases", {
      method: "POST",
      headers: { Authorization: "Bearer " + t, "Content-Type": "application/json" },
      body: JSON.stringify({ version: "v9" }),
    });
    return { status: r.status, body: await r.json() };
  }, viewerToken);
  // A service outside the viewer's scope: the refusal, and nothing of hello left on screen.
  await viewer.evaluate(() => { location.hash = "#/services/shop"; });
  await viewer.waitForFunction(() => document.getElementById("notice").textContent.includes("needs the role"), null, { timeout: 10000 });
  seen.viewerElsewhere = {
    notice: await text(viewer, "#notice"),
    serviceViewHidden: await viewer.locator("#service-view").isHidden(),
  };
  seen.viewerStored = await viewer.evaluate(() => ({ session: !!sessionStorage.getItem("ionroller-token"), local: localStorage.length, cookies: document.cookie }));
  seen.pageErrors = seen.pageErrors || [];
  process.stdout.write(JSON.stringify(seen) + "\n");
} catch (e) {
  seen.error = String(e.stack || e);
  process.stdout.write(JSON.stringify(seen) + "\n");
  process.exitCode = 1;
} finally {
  await browser.close();
}
