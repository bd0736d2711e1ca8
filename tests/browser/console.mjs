// Browser scenarios for the approver console, in headless Chromium driven by Playwright.
// Run by crates/portcullis/tests/e2e/console.rs, which starts the simulator and the gateway,
// plays the agent, and checks what reached Azure. The two talk over stdio: this script
// prints `WAIT <what>` when the test must act, and reads one line (JSON) back.
//
//   node console.mjs <scenario>   with CONSOLE_URL, CHROMIUM, and per scenario more env.
//   PORTCULLIS_SCREENSHOTS=dir    also saves screenshots of the pages at phone and desktop widths.
import { chromium } from "playwright-core";
import readline from "node:readline";
import path from "node:path";
import { createRequire } from "node:module";

const axeSource = createRequire(import.meta.url)("axe-core").source;

const CONSOLE = process.env.CONSOLE_URL;
const SHOTS = process.env.PORTCULLIS_SCREENSHOTS;
const scenario = process.argv[2];
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };

function fail(msg) {
  throw new Error(msg);
}

async function wait(what) {
  console.log(`WAIT ${what}`);
  const { value, done } = await lines.next();
  if (done) fail(`the test went away while we waited for ${what}`);
  return JSON.parse(value || "{}");
}

function say(what, data = {}) {
  console.log(`DONE ${what} ${JSON.stringify(data)}`);
}

async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // As root in a container Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

async function context(b, viewport = DESKTOP) {
  // The gateway's development CA is not in Chromium's store.
  const ctx = await b.newContext({ ignoreHTTPSErrors: true, viewport });
  ctx.setDefaultTimeout(20000);
  return ctx;
}

/// Signs in through the simulator's sign-in page; ends on `next` (a console path).
async function signIn(page, user, next = "/console/approvals") {
  await page.goto(`${CONSOLE}${next}`);
  // Redirected to the identity provider's page: pick the user.
  await page.waitForURL((u) => u.pathname.endsWith("/oauth2/v2.0/authorize"));
  if (!(await page.title()).includes("Sign in")) fail(`not the sign-in page: ${await page.title()}`);
  await page.click(`button[value="${user}"]`);
  await page.waitForURL((u) => u.href.startsWith(CONSOLE) && u.pathname === next.split("?")[0]);
  const who = await page.textContent(".who");
  say("signed-in", { user, who, url: page.url() });
}

/// With PORTCULLIS_SCREENSHOTS: the page as it is, at phone and desktop widths.
async function shot(page, name) {
  if (!SHOTS) return;
  const was = page.viewportSize();
  for (const [kind, vp] of [["phone", PHONE], ["desktop", DESKTOP]]) {
    await page.setViewportSize(vp);
    // Laid out again at the new width before the picture is taken.
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    await page.screenshot({ path: path.join(SHOTS, `console-${name}-${kind}.png`) });
  }
  await page.setViewportSize(was);
}

/// Counts full page loads of the main frame (live updates must not reload).
function loads(page) {
  const n = { count: 0 };
  page.on("load", () => (n.count += 1));
  return n;
}

/// axe-core's WCAG 2.1 A/AA checks on the page as it is; returns the violations.
async function axe(page) {
  await page.addScriptTag({ content: axeSource });
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.html).slice(0, 3) }));
  });
}

const scenarios = {
  // An approver on a phone sees a held request appear live: what is asked, by whom, why and
  // the decision controls on the first screen. They approve with a comment; the agent's
  // request completes (checked by the test); the confirmation stays through the live
  // list's refreshes until dismissed.
  async approve(b) {
    const page = await (await context(b, PHONE)).newPage();
    await signIn(page, process.env.APPROVER || "alice");
    const loaded = loads(page);
    // The page says when its event stream is connected: only then is the request held.
    await page.locator('#live[data-live="on"]').waitFor();
    const { words, reason, scope } = await wait("held");
    const card = page.locator("article.card", { hasText: words }).first();
    await card.waitFor();
    if (loaded.count !== 0) fail(`the page reloaded ${loaded.count} time(s) to show the request`);
    const text = await card.innerText();
    for (const want of [words, "demo-approve-storage-create", "Microsoft.Storage/storageAccounts/write", reason]) {
      if (!text.includes(want)) fail(`the card does not show '${want}':\n${text}`);
    }
    // The scope once; the rule's file only on request.
    const times = text.split(scope).length - 1;
    if (times !== 1) fail(`the scope appears ${times} times:\n${text}`);
    if (/policy\.yaml/.test(text)) fail(`the rule's file shows before it is asked for:\n${text}`);
    await card.locator("details.origin summary").click();
    if (!/policy\.yaml:\d+/.test(await card.locator("details.origin").innerText())) fail("no rule file on request");
    // Approve within the first screen of the first card (the test asserts it; where it
    // ends on the page is reported too).
    await page.evaluate(() => window.scrollTo(0, 0));
    const first = page.locator("article.card").first();
    const approve = first.getByRole("button", { name: "Approve" });
    const cardBox = await first.boundingBox();
    const box = await approve.boundingBox();
    const height = page.viewportSize().height;
    say("first-screen", { approveBottom: box.y + box.height - cardBox.y, pageBottom: box.y + box.height, height });
    await card.locator("details.body summary").click();
    if (!(await card.locator("pre.body").innerText()).includes("Standard_LRS")) fail("the card does not show the request body");
    await card.locator("details.body summary").click();
    await card.locator("details.origin summary").click();
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, "pending");
    await card.locator("textarea").fill("ok: ticket 4711");
    await card.getByRole("button", { name: "Approve" }).click();
    const confirmation = page.locator("#confirmations .confirmation", { hasText: words });
    await confirmation.waitFor();
    const said = await confirmation.innerText();
    if (!(await confirmation.evaluate((c) => c === document.activeElement))) fail("the confirmation is not focused");
    // Decided: it leaves the pending list (live, as everyone's does).
    await page.waitForFunction(
      (w) => ![...document.querySelectorAll("#approval-list article.card")].some((c) => c.innerText.includes(w)),
      words,
    );
    await shot(page, "confirmation");
    say("approved", { confirmation: said });
    // A new request arrives: the list is fetched again; the confirmation stays.
    const next = await wait("another");
    await page.locator("#approval-list article.card", { hasText: next.words }).waitFor();
    if (!(await confirmation.isVisible())) fail("the confirmation went with the live refresh");
    if (loaded.count !== 0) fail(`the page reloaded ${loaded.count} time(s)`);
    await confirmation.getByRole("button", { name: /Dismiss/ }).click();
    await confirmation.waitFor({ state: "detached" });
    if (loaded.count !== 0) fail("dismissing reloaded the page");
    say("kept", { reloads: loaded.count });
    await wait("forwarded");
    await page.goto(`${CONSOLE}/console/approvals/history`);
    const decided = page.locator("article.card", { hasText: words });
    await decided.waitFor();
    const h = await decided.innerText();
    if (!h.includes("ok: ticket 4711")) fail(`the history does not show the comment:\n${h}`);
    await shot(page, "history");
  },

  // An approver opens the link a webhook carried and denies with a comment.
  async deny(b) {
    const page = await (await context(b, PHONE)).newPage();
    const { link, words } = await wait("link");
    const next = new URL(link).pathname;
    await signIn(page, process.env.APPROVER || "bob", next);
    const card = page.locator("article.card", { hasText: words });
    await card.waitFor();
    await shot(page, "approval");
    await card.locator("textarea").fill("not in prod");
    await card.getByRole("button", { name: "Deny" }).click();
    await page.locator("article.card .badge", { hasText: /denied/i }).waitFor();
    const confirmation = page.locator("#confirmations .confirmation");
    await confirmation.waitFor();
    say("denied", { confirmation: await confirmation.innerText() });
  },

  // An approver's page is stale: another approver denied meanwhile. Their vote is not
  // counted, and the page says so instead of doing nothing.
  async stale(b) {
    const page = await (await context(b, PHONE)).newPage();
    const { id, words } = await wait("held");
    await signIn(page, "alice", `/console/approvals/${id}`);
    const card = page.locator("article.card", { hasText: words });
    await card.waitFor();
    await wait("denied-elsewhere");
    await card.getByRole("button", { name: "Approve" }).click();
    const notice = page.locator("#confirmations .confirmation-refused");
    await notice.waitFor();
    const text = await notice.innerText();
    if (!(await notice.evaluate((n) => n === document.activeElement))) fail("the notice is not focused");
    await notice.getByRole("button", { name: "Dismiss" }).click();
    await notice.waitFor({ state: "detached" });
    say("not-counted", { text });
  },

  // A signed-in reader who is not among the approvers sees the request, with no buttons;
  // a hostile agent's reason is shown as the text it is.
  async nonapprover(b) {
    const page = await (await context(b, PHONE)).newPage();
    const { words, reason } = await wait("held");
    await signIn(page, process.env.VIEWER || "carol");
    const card = page.locator("article.card", { hasText: words });
    await card.waitFor();
    // No element of the agent's making, and the text exactly as sent.
    if ((await page.locator("main img, main b:has-text('approve me')").count()) !== 0) fail("the agent's markup became elements");
    const why = await card.locator("dl.lead dd").nth(2).innerText();
    if (why !== reason) fail(`the reason is not shown as sent: ${JSON.stringify(why)}`);
    const buttons = await page.getByRole("button", { name: /approve|deny/i }).count();
    if (buttons !== 0) fail(`a non-approver sees ${buttons} decision button(s)`);
    if (!(await card.innerText()).includes("You cannot decide this")) fail("no explanation for the missing buttons");
    say("no-buttons", { buttons, why });
  },

  // Forged POSTs: without the CSRF token, and with it from another origin.
  async csrf(b) {
    const ctx = await context(b);
    const page = await ctx.newPage();
    const { id, words } = await wait("held");
    await signIn(page, "alice");
    await page.locator("article.card", { hasText: words }).waitFor();
    const url = `${CONSOLE}/console/approvals/${id}/approve`;
    const origin = new URL(CONSOLE).origin;
    // The browser's own cookies, but no token: what a forged form would send.
    const noToken = await ctx.request.post(url, { form: { comment: "forged" }, headers: { origin }, maxRedirects: 0 });
    const token = await page.locator('input[name="csrf"]').first().inputValue();
    const elsewhere = await ctx.request.post(url, {
      form: { comment: "forged", csrf: token },
      headers: { origin: "https://evil.example" },
      maxRedirects: 0,
    });
    // A cross-site page submitting a form: the browser itself sends it (SameSite, Origin).
    const evil = await ctx.newPage();
    await evil.setContent(`<form method="post" action="${url}"><input name="comment" value="forged"></form>`);
    const [answer] = await Promise.all([
      evil.waitForResponse((r) => r.url() === url),
      evil.evaluate(() => document.forms[0].submit()),
    ]);
    say("forged", { noToken: noToken.status(), elsewhere: elsewhere.status(), crossSite: answer.status() });
    await wait("checked");
  },

  // A reviewer filters the sessions, opens the agent's and replays it step by step.
  async replay(b) {
    const page = await (await context(b)).newPage();
    const { principal } = await wait("session");
    await signIn(page, "alice", "/console/sessions");
    await shot(page, "sessions");
    // On a phone each session is a card: nothing wider than the screen, every count on it.
    await page.setViewportSize(PHONE);
    const fit = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const cells = [...document.querySelectorAll("tbody td")].map((td) => td.getBoundingClientRect().right);
      return { width: w, scroll: document.documentElement.scrollWidth, right: Math.max(...cells), cells: cells.length };
    });
    if (fit.cells === 0 || fit.scroll > fit.width || fit.right > fit.width) fail(`the sessions list overflows a phone: ${JSON.stringify(fit)}`);
    const counts = await page.locator("tbody tr").first().locator("td.count").allInnerTexts();
    if (counts.length < 3) fail(`counts missing on a phone: ${counts}`);
    await page.setViewportSize(DESKTOP);
    if (!(await page.getByRole("columnheader", { name: "Denied" }).isVisible())) fail("no table on a desktop");
    say("sessions-fit", fit);
    await page.getByLabel("Principal (object id)").fill(principal);
    await page.getByLabel("Decision").selectOption("refused");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL((u) => u.search.includes("decision=refused"));
    const rows = page.locator("tbody tr");
    if ((await rows.count()) !== 1) fail(`expected the agent's one session, got ${await rows.count()} rows`);
    await rows.first().locator("a").click();
    await page.getByRole("link", { name: "Replay step by step" }).click();
    await page.waitForURL((u) => u.search.includes("step=0"));
    if ((await page.locator("ol.timeline > li").count()) !== 1) fail("a replay starts with one step");
    // Step through with the keyboard, as far as the refusal.
    let steps = 1;
    while (!(await page.locator('li[aria-current="step"]').innerText()).includes("refused")) {
      const next = page.getByRole("link", { name: "Next step →" });
      if ((await next.count()) === 0) fail("the replay ended without showing the refusal");
      await next.focus();
      await page.keyboard.press("Enter");
      steps += 1;
      await page.waitForURL((u) => u.search.includes(`step=${steps - 1}`));
    }
    const current = page.locator('li[aria-current="step"]');
    const text = await current.innerText();
    if (!text.includes("delete virtual machine")) fail(`the refused step is not the VM delete:\n${text}`);
    await shot(page, "replay");
    say("replayed", { steps, text });
  },

  // Every page against WCAG 2.1 A and AA (axe-core), at phone and desktop widths. The CSP
  // forbids the inline script axe is injected as: this context alone bypasses it.
  async accessibility(b) {
    const ctx = await b.newContext({ ignoreHTTPSErrors: true, bypassCSP: true, viewport: DESKTOP });
    ctx.setDefaultTimeout(20000);
    const page = await ctx.newPage();
    const { words, request } = await wait("held");
    await signIn(page, "alice");
    await page.locator("article.card", { hasText: words }).waitFor();
    const pages = ["/console/approvals", "/console/approvals/history", "/console/sessions"];
    const found = {};
    for (const vp of [PHONE, DESKTOP]) {
      await page.setViewportSize(vp);
      for (const p of pages) {
        await page.goto(`${CONSOLE}${p}`);
        found[`${p} ${vp.width}px`] = await axe(page);
      }
      await page.goto(`${CONSOLE}/console/sessions`);
      await page.locator("tbody tr a").first().click();
      found[`a session ${vp.width}px`] = await axe(page);
      const q = new URLSearchParams({ principal: "group:ai-agents", request });
      await page.goto(`${CONSOLE}/console/policy?${q}`);
      await page.locator("#explained").waitFor();
      found[`/console/policy (explained) ${vp.width}px`] = await axe(page);
    }
    // A vote's confirmation, on a phone.
    await page.setViewportSize(PHONE);
    await page.goto(`${CONSOLE}/console/approvals`);
    await page.locator('#live[data-live="on"]').waitFor();
    await page.locator("article.card", { hasText: words }).getByRole("button", { name: "Approve" }).click();
    await page.locator("#confirmations .confirmation").waitFor();
    found[`a vote's confirmation ${PHONE.width}px`] = await axe(page);
    const bad = Object.entries(found).filter(([, v]) => v.length > 0);
    say("audited", { pages: Object.keys(found).length, violations: Object.fromEntries(bad) });
  },

  // The policy page: rules in force, and explain.
  async policy(b) {
    const page = await (await context(b)).newPage();
    const { request } = await wait("ready");
    await signIn(page, "alice", "/console/policy");
    if ((await page.locator("article.rule").count()) === 0) fail("no rules shown");
    await page.getByLabel("Principal attributes").fill("group:ai-agents");
    await page.getByLabel("Request", { exact: true }).fill(request);
    await page.getByRole("button", { name: "Explain" }).click();
    const result = page.locator("#explained");
    await result.waitFor();
    const text = await result.innerText();
    await shot(page, "policy");
    say("explained", { text });
  },
};

async function main() {
  if (!CONSOLE) fail("CONSOLE_URL is not set");
  const run = scenarios[scenario];
  if (!run) fail(`no scenario '${scenario}'`);
  const b = await browser();
  try {
    await run(b);
  } finally {
    await b.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`FAILED ${scenario}: ${e.stack || e}`);
    process.exit(1);
  },
);
