// Loads folio's dashboard in headless Chromium (Debian's /usr/bin/chromium),
// prints READY once the first numbers show, waits until the request count and
// the hit ratio change (the Rust test drives traffic after READY), saves a
// screenshot, and prints the numbers seen. Exits non-zero if nothing changed.
//
// On every run it also fails if any script but the dashboard's own ran (a
// payload sets window.__pwned or logs PWNED), if the Content-Security-Policy
// had to block anything (nothing may be inserted as HTML in the first place),
// or if the page threw.
//
//   node check.mjs http://127.0.0.1:9090/_folio/ screenshot.png
//
// Environment:
//   FOLIO_HOSTILE=1          the stats the page reads also carry hostile
//                            endpoint, tenant and path names (as a client of
//                            the proxy could choose them); they must show as
//                            text, in the tables and the chart legend
//   FOLIO_EXPECT_TEXT='[…]'  strings that must show literally on the page
//   FOLIO_TOKEN=…            the page must first ask for a token ("token
//                            needed"); the check types this one in
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const hostile = process.env.FOLIO_HOSTILE === "1";
const expected = JSON.parse(process.env.FOLIO_EXPECT_TEXT || "[]");
const PAYLOADS = [
  `<img src=x onerror="window.__pwned=1;console.log('PWNED img')">`,
  `"><svg onload="window.__pwned=2;console.log('PWNED svg')">`,
  `</td></tr><script>window.__pwned=3;console.log('PWNED script')</script>`,
  `<iframe srcdoc="<script>parent.__pwned=4</script>"></iframe>`,
];

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
  const incidents = [];
  page.on("console", (message) => {
    const text = message.text();
    if (text.includes("PWNED")) incidents.push(`a payload ran: ${text}`);
    if (text.includes("Content Security Policy")) incidents.push(`CSP: ${text}`);
  });
  page.on("pageerror", (error) => incidents.push(`the page threw: ${error}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.log(`Content Security Policy violation: ${e.violatedDirective} ${e.blockedURI}`);
    }, true);
  });
  if (hostile) {
    await page.route("**/_folio/stats", async (route) => {
      const response = await route.fetch();
      if (!response.ok()) return route.fulfill({ response });
      const stats = await response.json();
      stats.endpoints.unshift({
        endpoint: PAYLOADS[0], tenant: PAYLOADS[1],
        hit: 1, miss: 1, stale: 0, bypass: 0, error: 0, refused: 0, hit_ratio: 0.5,
      });
      stats.top_paths.unshift(
        { path: PAYLOADS[2], tenant: PAYLOADS[3], requests: 1 },
        { path: PAYLOADS[1], tenant: PAYLOADS[0], requests: 1 },
      );
      return route.fulfill({ response, json: stats });
    });
  }
  await page.goto(url);
  if (process.env.FOLIO_TOKEN) {
    await page.waitForFunction(() => !document.getElementById("token-box").hidden, null, { timeout: 15000 });
    const asked = await page.evaluate(() => document.getElementById("status").textContent);
    if (asked !== "token needed") await fail(`the dashboard says ${asked}, not "token needed"`);
    await page.fill("#token", process.env.FOLIO_TOKEN);
    await page.click("#token-use");
  }
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

  const shown = await page.evaluate(() => ({
    pwned: window.__pwned,
    text: document.body.innerText,
    legend: document.getElementById("legend-hit").textContent,
    injected: document.querySelectorAll("main img, main svg, main script, main iframe").length,
  }));
  if (shown.pwned !== undefined) incidents.push(`a payload ran: window.__pwned = ${shown.pwned}`);
  if (shown.injected > 0) incidents.push(`${shown.injected} element(s) came from data`);
  const literal = [...expected, ...(hostile ? PAYLOADS : [])];
  for (const text of literal) {
    if (!shown.text.includes(text)) incidents.push(`not shown as text: ${text}`);
  }
  if (hostile && !shown.legend.includes(`${PAYLOADS[0]} · ${PAYLOADS[1]}`)) {
    incidents.push(`the legend does not show the names as text: ${shown.legend}`);
  }
  if (incidents.length > 0) await fail(incidents.join("\n"));
  console.log("SAFE " + literal.length + " hostile names shown as text");
} catch (error) {
  await fail(String(error));
}
await browser.close();
