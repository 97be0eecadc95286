//! Test helpers: an in-process service in a fresh data directory, and an HTTP client that
//! checks every exchange against `openapi.json` (path, method, documented status, response
//! schema) and records which operations were exercised.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ciro_scheduler::{Config, Running};
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn start(name: &str, workers: usize) -> Running {
    ciro_scheduler::start(config(name, workers)).expect("the service starts")
}

/// A test service's configuration: a fresh folder, a free port, the dev faucet, no rate limits
/// to speak of, the shared SRS cache.
pub fn config(name: &str, workers: usize) -> Config {
    let mut c = Config::new(fresh_dir(name));
    c.addr = "127.0.0.1:0".parse().unwrap();
    c.workers = workers;
    c.warm_models = false;
    // One KZG SRS cache for every test binary of the workspace.
    c.srs_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs");
    c.dev_faucet = true;
    c.rate_per_minute = 100_000;
    c
}

pub struct Spec {
    doc: Value,
    pub covered: Mutex<BTreeSet<(String, String)>>,
}

impl Spec {
    pub fn load() -> Spec {
        Spec {
            doc: serde_json::from_str(ciro_scheduler::api::OPENAPI).expect("openapi.json parses"),
            covered: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every (method, path template) the document declares.
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    fn find(&self, method: &str, path: &str) -> (String, &Value) {
        let path = path.split('?').next().unwrap();
        let segs: Vec<&str> = path.split('/').collect();
        for (template, item) in self.doc["paths"].as_object().unwrap() {
            let t: Vec<&str> = template.split('/').collect();
            let matches = t.len() == segs.len()
                && t.iter()
                    .zip(&segs)
                    .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
            if matches {
                if let Some(op) = item.get(method.to_lowercase()) {
                    return (template.clone(), op);
                }
            }
        }
        panic!("{method} {path} is not in openapi.json");
    }

    /// Checks one response against the document.
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
        let (template, op) = self.find(method, path);
        self.covered
            .lock()
            .unwrap()
            .insert((method.to_string(), template.clone()));
        let resp = op["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {template}: status {status} is not documented"));
        let Some(content) = resp.get("content").and_then(Value::as_object) else {
            return;
        };
        let ct = content_type.split(';').next().unwrap_or("").trim();
        let media = content.get(ct).unwrap_or_else(|| {
            panic!("{method} {template} {status}: content type {ct:?} is not documented")
        });
        if ct == "application/json" {
            let v: Value = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("{method} {template} {status}: body is not JSON: {e}"));
            if let Err(e) = self.validate(&media["schema"], &v, "$") {
                panic!("{method} {template} {status}: {e}\nbody: {v}");
            }
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap();
                &self.doc["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    /// The subset of JSON Schema the document uses: type (or list of types), required,
    /// properties, items, enum, $ref.
    pub fn validate(&self, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok = types.iter().any(|t| match *t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                "null" => v.is_null(),
                _ => false,
            });
            if !ok {
                return Err(format!("{at}: expected {types:?}, got {v}"));
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                return Err(format!("{at}: {v} is not one of {e:?}"));
            }
        }
        if let Some(obj) = v.as_object() {
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    return Err(format!("{at}: missing required property {r}"));
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if let Some(x) = obj.get(k) {
                        self.validate(s, x, &format!("{at}.{k}"))?;
                    }
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
            for (i, x) in arr.iter().enumerate() {
                self.validate(items, x, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

pub struct Resp {
    pub status: u16,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
}

pub enum Body<'a> {
    None,
    Json(Value),
    Raw(&'a [u8], &'a str),
}

pub struct Api<'s> {
    pub url: String,
    pub spec: &'s Spec,
    agent: ureq::Agent,
}

impl<'s> Api<'s> {
    pub fn new(url: String, spec: &'s Spec) -> Self {
        Api {
            url,
            spec,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build(),
        }
    }

    pub fn call(&self, method: &str, path: &str, key: Option<&str>, body: Body<'_>) -> Resp {
        self.call_with(method, path, key, &[], body)
    }

    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Resp {
        let mut req = self.agent.request(method, &format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        for (h, v) in headers {
            req = req.set(h, v);
        }
        let res = match body {
            Body::None => req.call(),
            Body::Json(v) => req.send_json(v),
            Body::Raw(b, ct) => req.set("Content-Type", ct).send_bytes(b),
        };
        let r = match res {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: transport error {e}"),
        };
        let status = r.status();
        let ct = r.content_type().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).unwrap();
        self.spec.check(method, path, status, &ct, &bytes);
        Resp { status, bytes }
    }

    /// Creates an account with `tokens` CIRO on starknet; returns its key.
    pub fn funded_account(&self, name: &str, tokens: i64) -> String {
        let r = self.call(
            "POST",
            "/v1/accounts",
            None,
            Body::Json(serde_json::json!({ "name": name })),
        );
        assert_eq!(r.status, 201, "{}", r.error());
        let key = r.json()["api_key"].as_str().unwrap().to_string();
        if tokens > 0 {
            let r = self.call(
                "POST",
                "/v1/faucet",
                Some(&key),
                Body::Json(serde_json::json!({ "chain": "starknet", "token": "CIRO", "amount_micro": tokens * 1_000_000 })),
            );
            assert_eq!(r.status, 200, "{}", r.error());
        }
        key
    }

    /// The verification key the service publishes for `model` under `proof_system`.
    pub fn published_key(
        &self,
        model: &str,
        proof_system: &str,
    ) -> Box<dyn ciro_prover::DynVerifyingKey> {
        let path = format!("/v1/models/{model}/vk?proof_system={proof_system}");
        let r = self.call("GET", &path, None, Body::None);
        assert_eq!(r.status, 200, "{}", r.error());
        ciro_prover::load_verifying_key(&r.bytes).expect("the published key loads")
    }

    /// Polls a job until it is final.
    pub fn wait(&self, key: &str, id: i64) -> Value {
        let start = Instant::now();
        loop {
            let j = self
                .call("GET", &format!("/v1/jobs/{id}"), Some(key), Body::None)
                .json();
            if matches!(
                j["state"].as_str(),
                Some("verified" | "failed" | "cancelled")
            ) {
                return j;
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "job {id} stuck: {j}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn balance(&self, key: &str) -> Value {
        let a = self
            .call("GET", "/v1/account", Some(key), Body::None)
            .json();
        a["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["chain"] == "starknet" && b["token"] == "CIRO")
            .cloned()
            .unwrap_or(Value::Null)
    }
}

pub fn fixture_input(path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo().join(path)).unwrap()).unwrap()
}
