// Drives the real web app in headless Chromium against a real `ciro serve` (started by the
// Rust test `cli/tests/web_app.rs`, which passes its URL): sign up, a refused job with no
// balance, the faucet, the bundled digit image proved and followed live to `verified`, label
// 7, the bundle and key downloaded and verified by `ciro verify`, a bad ONNX upload refused,
// the phone-width layout and keyboard use. Writes screenshots of the main screens.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.CIRO_URL;
const repo = process.env.CIRO_REPO;
const ciro = process.env.CIRO_BIN;
const shots = process.env.CIRO_SHOTS;
const work = process.env.CIRO_WORK;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

// The flags a closed network needs (no background connections to Google's hosts).
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

test("the web app runs a job end to end and explains refusals", { timeout: 600_000 }, async () => {
  assert.ok(url && repo && ciro && shots && work, "run through cli/tests/web_app.rs");
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({ executablePath: chromiumPath, args: FLAGS });
  try {
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    const message = page.locator("#message");

    // Sign up; the key is shown once and kept by the browser.
    await page.getByLabel("Name", { exact: true }).fill("browser-test");
    await page.getByRole("button", { name: "Create account" }).click();
    await page.locator("#signed-in").waitFor();
    const key = (await page.locator("#new-key-value").textContent()).trim();
    assert.match(key, /\S{16,}/);
    await page.locator("#job-model option[value=image_recognition_v1]").waitFor({ state: "attached" });

    // No balance: the job is refused and the page says why.
    await page.getByLabel("Model", { exact: true }).selectOption("image_recognition_v1");
    await page.locator("#job-image").setInputFiles(join(repo, "fixtures/images/digit_7.png"));
    await page.locator("#preview").waitFor();
    await page.getByRole("button", { name: "Pay and prove" }).click();
    await message.filter({ hasText: "no balance" }).waitFor();
    assert.match(await message.textContent(), /faucet/);
    await page.screenshot({ path: join(shots, "no-balance.png"), fullPage: true });

    // The faucet, then the quote and the job, followed live to `verified`.
    await page.getByRole("button", { name: "Get test tokens" }).click();
    await message.filter({ hasText: "credited" }).waitFor();
    assert.match(await page.locator("#balances tbody").textContent(), /starknet\s*CIRO\s*10/);
    assert.match(await page.locator("#quote").textContent(), /Quote: [0-9.]+ CIRO on starknet with stwo/);
    await page.getByRole("button", { name: "Pay and prove" }).click();
    await page.locator("#job-state", { hasText: "verified" }).waitFor({ timeout: 300_000 });
    await page.locator("#job-result").waitFor();
    assert.equal((await page.locator("#job-label").textContent()).trim(), "7");
    const steps = await page.locator("#job-steps li").allTextContents();
    assert.ok(/^queued \(submitted/.test(steps[0]) && /^verified/.test(steps.at(-1)), steps.join(" | "));
    assert.equal(await page.locator("#chart .bar").count(), 10);
    await page.screenshot({ path: join(shots, "job-verified.png"), fullPage: true });

    // Download the bundle and the key; `ciro verify` accepts them.
    const bundle = join(work, "job.bundle");
    const vk = join(work, "model.vk");
    for (const [button, path] of [["#dl-bundle", bundle], ["#dl-key", vk]]) {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
      await download.saveAs(path);
    }
    assert.match(await page.locator("#key-note").textContent(), /fetched when you submitted/);
    const command = await page.locator("#verify-command").textContent();
    assert.match(command, /^ciro verify job-\d+\.bundle --vk image_recognition_v1\.stwo\.vk$/);
    const out = execFileSync(ciro, ["verify", bundle, "--vk", vk], { encoding: "utf8" });
    assert.match(out, /OK: proof verified/);

    // A JSON tensor paid on Ethereum: proved with halo2 (the chain's default), with EVM
    // calldata to download, and its bundle verified by `ciro verify` too.
    await page.locator("#faucet-chain").selectOption("ethereum");
    await page.getByRole("button", { name: "Get test tokens" }).click();
    await message.filter({ hasText: "credited" }).waitFor();
    await page.getByLabel("Model", { exact: true }).selectOption("mlp_small");
    await page.locator("#job-input").fill(readFileSync(join(repo, "fixtures/models/mlp_small/input.json"), "utf8"));
    await page.locator("#job-chain").selectOption("ethereum");
    assert.match(await page.locator("#quote").textContent(), /on ethereum with halo2/);
    await page.getByRole("button", { name: "Pay and prove" }).click();
    await page.locator("#job-id", { hasText: "#2" }).waitFor();
    await page.locator("#job-state", { hasText: "verified" }).waitFor({ timeout: 300_000 });
    await page.locator("#job-result").waitFor();
    assert.match(await page.locator("#verify-command").textContent(), /--vk mlp_small\.halo2\.vk --input job-\d+\.input\.json$/);
    const calldata = join(work, "job.calldata.hex");
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-calldata")]);
    await dl.saveAs(calldata);
    assert.match(readFileSync(calldata, "utf8"), /^0x[0-9a-f]{64,}$/);
    const halo2Bundle = join(work, "halo2.bundle");
    const halo2Key = join(work, "halo2.vk");
    const halo2Input = join(work, "halo2.input.json");
    for (const [button, path] of [["#dl-bundle", halo2Bundle], ["#dl-key", halo2Key], ["#dl-input", halo2Input]]) {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
      await download.saveAs(path);
    }
    assert.match(execFileSync(ciro, ["verify", halo2Bundle, "--vk", halo2Key, "--input", halo2Input], { encoding: "utf8" }), /OK: proof verified/);
    // Another input is refused by the same check.
    const other = JSON.parse(readFileSync(halo2Input, "utf8"));
    other.input_data[0][0] = other.input_data[0][0] === 0 ? 0.5 : 0;
    writeFileSync(halo2Input, JSON.stringify(other));
    assert.throws(() => execFileSync(ciro, ["verify", halo2Bundle, "--vk", halo2Key, "--input", halo2Input], { stdio: "pipe" }));

    // A bad ONNX upload: refused, with the reason on the page.
    await page.locator("#upload-file").setInputFiles({ name: "bad.onnx", mimeType: "application/octet-stream", buffer: Buffer.from("this is not an ONNX model") });
    await page.getByRole("button", { name: "Upload", exact: true }).click();
    await message.filter({ hasText: /ONNX|model/i }).waitFor();
    assert.ok(!(await message.getAttribute("class") || "").includes("ok"), await message.textContent());
    await page.screenshot({ path: join(shots, "upload-refused.png"), fullPage: true });

    // Keyboard: the sign-out button is reachable and works with Enter.
    await page.locator("#sign-out").focus();
    await page.keyboard.press("Enter");
    await page.locator("#signed-out").waitFor();
    // Paste the key back.
    await page.getByLabel("Or paste an API key").fill(key);
    await page.getByLabel("Or paste an API key").press("Enter");
    await page.locator("#signed-in").waitFor();

    // Phone width: nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page is ${overflow} px wider than a phone screen`);
    await page.screenshot({ path: join(shots, "phone.png"), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
