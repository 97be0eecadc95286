// Ciro's web app: plain JavaScript against the same /v1 API as ciro-cli and the SDK.
"use strict";

const KEY_STORE = "ciro.apiKey";
const FINAL = ["verified", "failed", "cancelled"];
const DEFAULT_SYSTEM = { starknet: "stwo", ethereum: "halo2", polygon: "halo2" };
const $ = (id) => document.getElementById(id);

let apiKey = localStorage.getItem(KEY_STORE);
let models = [];
let imageBase64 = null;
let following = null; // AbortController of the job being followed

class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function api(method, path, body, raw) {
  const headers = {};
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let payload;
  if (raw) {
    payload = raw;
    headers["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError("Cannot reach the service. Check your connection and try again.", "network", 0);
  }
  const text = await res.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!res.ok) {
    throw new ApiError((doc && doc.error) || `The service answered ${res.status}.`, doc && doc.code, res.status);
  }
  return doc;
}

function show(message, ok) {
  const m = $("message");
  m.textContent = message;
  m.className = ok ? "ok" : "";
  m.hidden = false;
}

function clearMessage() { $("message").hidden = true; }

// Runs an action from a form or button, showing its error in plain words.
function action(fn) {
  return async (ev) => {
    if (ev) ev.preventDefault();
    clearMessage();
    try { await fn(ev); } catch (e) { show(e.message || String(e)); }
  };
}

function amount(micro) {
  const s = (micro / 1e6).toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
  return s;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

// ---- account ----

function setKey(key) {
  apiKey = key;
  if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
}

async function refreshAccount() {
  $("signed-out").hidden = !!apiKey;
  $("signed-in").hidden = !apiKey;
  if (!apiKey) return;
  let acct;
  try {
    acct = await api("GET", "/v1/account");
  } catch (e) {
    if (e.status === 401) {
      setKey(null);
      $("signed-out").hidden = false;
      $("signed-in").hidden = true;
      throw new ApiError("That API key is not known to this service. Create an account or paste another key.");
    }
    throw e;
  }
  $("account-id").textContent = `#${acct.account_id}`;
  const body = $("balances").querySelector("tbody");
  body.replaceChildren();
  for (const b of acct.balances) {
    const tr = document.createElement("tr");
    cell(tr, b.chain); cell(tr, b.token);
    cell(tr, amount(b.available_micro)); cell(tr, amount(b.held_micro)); cell(tr, amount(b.spent_micro));
    body.appendChild(tr);
  }
  if (!acct.balances.length) {
    const tr = document.createElement("tr");
    cell(tr, "No balance yet: get test tokens below (development services) or fund your account.").colSpan = 5;
    body.appendChild(tr);
  }
  await refreshJobs();
}

// ---- models ----

async function refreshModels() {
  const all = (await api("GET", "/v1/models")).models;
  models = all.filter((m) => !m.error);
  const body = $("model-table").querySelector("tbody");
  body.replaceChildren();
  const select = $("job-model");
  const chosen = select.value;
  select.replaceChildren();
  for (const m of all) {
    const tr = document.createElement("tr");
    cell(tr, m.name);
    if (m.error) {
      // A model the service can no longer load: listed with why, not offered for jobs.
      cell(tr, `unavailable: ${m.error}`).colSpan = 4;
      body.appendChild(tr);
      continue;
    }
    cell(tr, m.accepts_images ? `image ${m.image.height}×${m.image.width}×${m.image.channels}` : m.inputs.map((i) => `[${i.shape.join("×")}]`).join(", "));
    cell(tr, m.inputs.map((i) => `${i.range[0]} … ${i.range[1]}`).join(", "));
    const p = m.prices_micro || {};
    cell(tr, ["stwo", "halo2", "plonky2"].map((s) => (s in p ? amount(p[s]) : "–")).join(" / "));
    const c = cell(tr, m.commitment.slice(0, 16) + "…");
    c.title = m.commitment;
    body.appendChild(tr);
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = m.name;
    select.appendChild(opt);
  }
  if (chosen) select.value = chosen;
  modelChanged();
}

function currentModel() { return models.find((m) => m.name === $("job-model").value); }

function modelChanged() {
  const m = currentModel();
  $("image-input").hidden = !(m && m.accepts_images);
  updateQuote();
}

function chosenSystem() { return $("job-system").value || DEFAULT_SYSTEM[$("job-chain").value]; }

function updateQuote() {
  const m = currentModel();
  if (!m) { $("quote").textContent = ""; return; }
  const system = chosenSystem();
  const price = (m.prices_micro || {})[system];
  $("quote").textContent = price === undefined
    ? `This model has no ${system} price.`
    : `Quote: ${amount(price)} ${$("job-token").value} on ${$("job-chain").value} with ${system}. It is held when you submit and charged only once the proof verifies.`;
}

function upload(file) {
  // XMLHttpRequest rather than fetch: it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const bar = $("upload-progress");
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
    xhr.onload = () => {
      bar.hidden = true;
      let doc = null;
      try { doc = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(doc);
      else reject(new ApiError((doc && doc.error) || `The service answered ${xhr.status}.`, doc && doc.code, xhr.status));
    };
    xhr.onerror = () => { bar.hidden = true; reject(new ApiError("The upload did not reach the service.")); };
    xhr.open("POST", "/v1/models");
    xhr.setRequestHeader("Authorization", `Bearer ${apiKey}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.send(file);
  });
}

// ---- jobs ----

async function refreshJobs() {
  if (!apiKey) return;
  const jobs = (await api("GET", "/v1/jobs")).jobs;
  const body = $("job-table").querySelector("tbody");
  body.replaceChildren();
  for (const j of jobs) {
    const tr = document.createElement("tr");
    const first = cell(tr, "");
    const link = document.createElement("button");
    link.type = "button";
    link.textContent = `#${j.id}`;
    link.setAttribute("aria-label", `Show job ${j.id}`);
    link.addEventListener("click", action(() => follow(j.id)));
    first.appendChild(link);
    cell(tr, j.model); cell(tr, j.state); cell(tr, j.proof_system);
    cell(tr, `${amount(j.price_micro)} ${j.token} on ${j.chain}`);
    body.appendChild(tr);
  }
}

function readFileBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1]);
    r.onerror = () => reject(new ApiError("Cannot read that file."));
    r.readAsDataURL(file);
  });
}

async function chooseImage(file) {
  if (!file) return;
  if (!["image/png", "image/jpeg"].includes(file.type)) throw new ApiError("Choose a PNG or JPEG image.");
  imageBase64 = await readFileBase64(file);
  const img = $("preview");
  img.src = `data:${file.type};base64,${imageBase64}`;
  img.hidden = false;
  $("drop").textContent = file.name;
}

async function submitJob() {
  if (!apiKey) throw new ApiError("Create an account or paste an API key first.");
  const m = currentModel();
  if (!m) throw new ApiError("Choose a model.");
  const req = { model: m.name, chain: $("job-chain").value, token: $("job-token").value };
  if ($("job-system").value) req.proof_system = $("job-system").value;
  const text = $("job-input").value.trim();
  if (text) {
    try { req.input = JSON.parse(text); } catch (_) { throw new ApiError("The tensor is not valid JSON."); }
  } else if (imageBase64 && m.accepts_images) {
    req.image_base64 = imageBase64;
  } else {
    throw new ApiError(m.accepts_images ? "Choose an image or paste a JSON tensor." : "Paste a JSON tensor for this model.");
  }
  // Pin the model's key before the service proves anything: the proof is later checked against
  // this key, so a key swapped afterwards is noticed.
  const system = chosenSystem();
  const keyRes = await fetch(`/v1/models/${encodeURIComponent(m.name)}/vk?proof_system=${system}`);
  if (!keyRes.ok) throw new ApiError(`Cannot fetch the model's ${system} key (${keyRes.status}).`);
  const pinnedKey = await keyRes.text();
  const job = await api("POST", "/v1/jobs", req);
  try {
    localStorage.setItem(`ciro.key.${job.id}`, pinnedKey);
    if (req.input) localStorage.setItem(`ciro.input.${job.id}`, JSON.stringify(req.input));
  } catch (_) { /* storage full: the key is fetched again at download */ }
  await refreshAccount();
  await follow(job.id, job);
}

function step(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("job-steps").appendChild(li);
}

function ms(v) { return v == null ? "–" : `${(v / 1000).toFixed(2)} s`; }

// Follows a job through the server-sent event stream (fetch, so that the API key travels in
// a header), reconnecting if the stream ends before the job's final state. `submitted` is the
// job as its submission returned it (shown as the first step).
async function follow(id, submitted) {
  if (following) following.abort();
  const ctl = new AbortController();
  following = ctl;
  $("current").hidden = false;
  $("job-id").textContent = `#${id}`;
  $("job-state").textContent = "connecting…";
  $("job-steps").replaceChildren();
  $("job-result").hidden = true;
  $("job-error").hidden = true;
  let last = null;
  if (submitted) {
    step(`${submitted.state} (submitted; ${amount(submitted.price_micro)} ${submitted.token} held)`);
    last = submitted;
  }
  // Shows the job (a step for each new state); true once it is final.
  const see = (doc) => {
    if (!last || last.state !== doc.state) {
      const t = doc.timings || {};
      const since = doc.finished_at ? doc.finished_at - doc.created_at : Date.now() / 1000 - doc.created_at;
      step(`${doc.state} (${since.toFixed(2)} s after submission)` +
        (doc.state === "verified" ? ` — queue ${ms(t.queue_wait_ms)}, witness ${ms(t.witness_ms)}, prove ${ms(t.prove_ms)}, verify ${ms(t.verify_ms)}` : ""));
    }
    last = doc;
    $("job-state").textContent = doc.state;
    // A job paid through an escrow ends once the escrow is settled or refunded too.
    if (!FINAL.includes(doc.state) || (doc.payment && doc.payment.status === "open")) return false;
    following = null;
    return true;
  };
  while (!ctl.signal.aborted) {
    let res;
    try {
      res = await fetch(`/v1/jobs/${id}/events`, { headers: { Authorization: `Bearer ${apiKey}` }, signal: ctl.signal });
    } catch (e) {
      if (ctl.signal.aborted) return;
      throw new ApiError("Lost the connection to the service while following the job.");
    }
    if (res.status === 503 || res.status === 404) {
      // Too many live streams (or none on this service): poll the job instead.
      const doc = await api("GET", `/v1/jobs/${id}`);
      if (see(doc)) return finished(doc);
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    if (!res.ok) {
      const doc = await res.json().catch(() => null);
      throw new ApiError((doc && doc.error) || `The service answered ${res.status}.`, doc && doc.code, res.status);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      let chunk;
      try { chunk = await reader.read(); } catch (_) { break; }
      if (chunk.done) break;
      buf += decoder.decode(chunk.value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
        }
        if (!data) continue;
        const doc = JSON.parse(data);
        if (event === "error") throw new ApiError(doc.error, doc.code);
        if (event !== "job") continue;
        if (see(doc)) return finished(doc);
      }
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function finished(job) {
  await refreshAccount();
  if (job.state !== "verified") {
    $("job-error").textContent = job.error ? `The job ${job.state}: ${job.error}. Its hold was released.` : `The job was ${job.state}; its hold was released.`;
    $("job-error").hidden = false;
    return;
  }
  const r = await api("GET", `/v1/jobs/${job.id}/result`);
  $("job-label").textContent = r.label == null ? "(no label)" : String(r.label);
  drawChart(r.outputs);
  const system = r.proof_system;
  const keyName = `${r.model}.${system}.vk`;
  const pinned = localStorage.getItem(`ciro.key.${job.id}`);
  const input = localStorage.getItem(`ciro.input.${job.id}`);
  $("dl-bundle").onclick = action(() => download(`/v1/jobs/${job.id}/proof`, `job-${job.id}.bundle`));
  $("dl-key").onclick = action(async () => {
    if (!pinned) return download(`/v1/models/${encodeURIComponent(r.model)}/vk?proof_system=${system}`, keyName);
    const served = await (await fetch(`/v1/models/${encodeURIComponent(r.model)}/vk?proof_system=${system}`)).text();
    if (served !== pinned) show("The service now serves another key for this model than when you submitted; the downloaded key is the one pinned at submission.");
    save(new Blob([pinned]), keyName);
  });
  $("dl-input").hidden = !input;
  $("dl-input").onclick = () => save(new Blob([input]), `job-${job.id}.input.json`);
  $("dl-calldata").hidden = !r.evm_calldata;
  $("dl-calldata").onclick = () => save(new Blob([r.evm_calldata]), `job-${job.id}.calldata.hex`);
  $("verify-command").textContent = `ciro verify job-${job.id}.bundle --vk ${keyName}` + (input ? ` --input job-${job.id}.input.json` : "");
  $("key-note").textContent = pinned
    ? "The key was fetched when you submitted, before the service proved anything."
    : "This job was not submitted from this browser: the key is the one the service serves now.";
  $("job-result").hidden = false;
}

function drawChart(outputs) {
  const values = (outputs || []).flat(Infinity);
  const chart = $("chart");
  chart.replaceChildren();
  if (!values.length) return;
  const lo = Math.min(0, ...values);
  const hi = Math.max(...values);
  const top = values.indexOf(hi);
  values.forEach((v, i) => {
    const row = document.createElement("div");
    row.className = i === top ? "bar top" : "bar";
    const name = document.createElement("span");
    name.textContent = String(i);
    const track = document.createElement("div");
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${hi > lo ? (100 * (v - lo)) / (hi - lo) : 0}%`;
    track.appendChild(fill);
    const val = document.createElement("span");
    val.textContent = v.toFixed(3);
    row.append(name, track, val);
    chart.appendChild(row);
  });
  chart.setAttribute("aria-label", `The model's outputs: ${values.map((v, i) => `${i}: ${v.toFixed(3)}`).join(", ")}`);
}

function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function download(path, name) {
  const res = await fetch(path, { headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {} });
  if (!res.ok) {
    const doc = await res.json().catch(() => null);
    throw new ApiError((doc && doc.error) || `The service answered ${res.status}.`);
  }
  save(await res.blob(), name);
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("signup-form").addEventListener("submit", action(async () => {
    const a = await api("POST", "/v1/accounts", { name: $("signup-name").value });
    setKey(a.api_key);
    $("new-key-value").textContent = a.api_key;
    $("new-key").hidden = false;
    await refreshAccount();
    show("Account created. Keep your API key somewhere safe: it is shown only once.", true);
  }));
  $("key-form").addEventListener("submit", action(async () => {
    setKey($("api-key").value.trim());
    $("new-key").hidden = true;
    await refreshAccount();
  }));
  $("sign-out").addEventListener("click", action(async () => {
    if (following) following.abort();
    setKey(null);
    $("current").hidden = true;
    $("job-table").querySelector("tbody").replaceChildren();
    await refreshAccount();
  }));
  $("faucet-form").addEventListener("submit", action(async () => {
    const amountMicro = Math.round(Number($("faucet-amount").value) * 1e6);
    await api("POST", "/v1/faucet", { chain: $("faucet-chain").value, token: $("faucet-token").value, amount_micro: amountMicro });
    await refreshAccount();
    show("Test tokens credited.", true);
  }));
  $("upload-form").addEventListener("submit", action(async () => {
    if (!apiKey) throw new ApiError("Create an account or paste an API key first.");
    const file = $("upload-file").files[0];
    if (!file) throw new ApiError("Choose an ONNX file.");
    const out = $("upload-result");
    out.hidden = true;
    const info = await upload(file);
    out.textContent = `Compiled: ${info.name}\ninputs: ${JSON.stringify(info.inputs)}\noutputs: ${JSON.stringify(info.outputs)}\ntrace rows: ${info.trace_rows}\ncommitment: ${info.commitment}`;
    out.hidden = false;
    await refreshModels();
    $("job-model").value = info.name;
    modelChanged();
    show(`Model ${info.name} uploaded and compiled.`, true);
  }));
  $("job-form").addEventListener("submit", action(submitJob));
  $("job-model").addEventListener("change", modelChanged);
  for (const id of ["job-chain", "job-token", "job-system"]) $(id).addEventListener("change", updateQuote);
  $("job-image").addEventListener("change", action(() => chooseImage($("job-image").files[0])));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", action(async (e) => {
    drop.classList.remove("over");
    await chooseImage(e.dataTransfer.files[0]);
  }));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("job-image").click(); } });
  action(async () => { await refreshModels(); await refreshAccount(); })();
});
