// Loads folio's dashboard in headless Chromium (Debian's /usr/bin/chromium),
// prints READY once the first numbers show, waits until the request count and
// the hit ratio change (the Rust test drives traffic after READY), saves a
// screenshot, and prints the numbers seen. Exits non-zero if nothing changed.
//
//   node check.mjs http://127.0.0.1:9090/_folio/ screenshot.png
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fail = async (message) => {
  console.error(message);
  await browser.close();
  process.exit(1);
};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("total-requests").textContent !== "–", null, { timeout: 15000 });
  const read = () => page.evaluate(() => ({
    requests: document.getElementById("total-requests").textContent,
    hitRatio: document.getElementById("hit-ratio").textContent,
    status: document.getElementById("status").textContent,
    rows: document.querySelectorAll("#endpoints tbody tr").length,
  }));
  const before = await read();
  console.log("READY " + JSON.stringify(before));
  const deadline = Date.now() + 20000;
  let after = before;
  while (Date.now() < deadline) {
    await page.waitForTimeout(500);
    after = await read();
    if (after.requests !== before.requests && after.hitRatio !== before.hitRatio && after.rows > 0) break;
  }
  await page.waitForTimeout(2500); // one more poll, so the charts have two points
  after = await read();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("AFTER " + JSON.stringify(after));
  if (after.requests === before.requests || after.hitRatio === before.hitRatio) {
    await fail(`the dashboard did not change: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
  }
  if (after.status !== "live") await fail(`the dashboard says ${after.status}`);
} catch (error) {
  await fail(String(error));
}
await browser.close();
