//! Ciro's HTTP API for Rust programs: the request and response documents ([`types`], shared
//! with the service, which writes them from the same definitions) and a blocking [`Client`].
//!
//! ```no_run
//! use ciro_client::{Client, types::JobRequest};
//! let mut client = Client::new("http://127.0.0.1:8080", None);
//! client.signup(Some("me"))?;
//! client.faucet("starknet", "CIRO", 10_000_000)?;
//! let input = serde_json::json!({ "input_data": [vec![0.0; 64]] });
//! let job = client.submit_job(
//!     &JobRequest { model: "mlp_small".into(), input: Some(input), chain: "starknet".into(), ..Default::default() },
//!     None,
//! )?;
//! let done = client.follow(job.id, std::time::Duration::from_secs(600), |j| println!("{}", j.state))?;
//! println!("{:?}", client.result(done.id)?.label);
//! # Ok::<(), ciro_client::ClientError>(())
//! ```

pub mod types;

use std::io::{BufRead, Read};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use types::{
    Account, AccountCreated, Batch, ErrorBody, FaucetRequest, Job, JobList, JobRequest, JobResult,
    JobState, ModelInfo, ModelList, NewAccount,
};

/// Largest download (a proof bundle, a key, an aggregate) the client reads.
pub const MAX_DOWNLOAD: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error document.
    #[error("{message} (HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The service could not be reached, or the connection failed.
    #[error("cannot reach the Ciro service at {server}: {detail}; is it running (`ciro serve`)?")]
    Transport { server: String, detail: String },
    /// The service's answer is not the document the API describes.
    #[error("the service sent an unexpected answer: {0}")]
    Decode(String),
    #[error("no API key: sign up first or give one")]
    NoKey,
    /// Following a job outlasted its time limit (the job goes on).
    #[error("job {id} is still {state} after {seconds} s; it goes on")]
    Timeout {
        id: i64,
        state: String,
        seconds: u64,
    },
}

impl ClientError {
    /// The API's error code (`insufficient_balance`, `not_found`...), if the service answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A client of one Ciro service. Requests time out after 5 min (connecting after 5 s).
pub struct Client {
    server: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(server: &str, api_key: Option<String>) -> Client {
        Client {
            server: server.trim_end_matches('/').to_string(),
            api_key,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(300))
                .build(),
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self
            .agent
            .request(method, &format!("{}{path}", self.server));
        match &self.api_key {
            Some(k) => r.set("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    fn keyed(&self, method: &str, path: &str) -> Result<ureq::Request> {
        if self.api_key.is_none() {
            return Err(ClientError::NoKey);
        }
        Ok(self.request(method, path))
    }

    /// Sends `req` with an optional JSON body; an error answer becomes [`ClientError::Api`].
    pub fn send(
        &self,
        req: ureq::Request,
        body: Option<&impl Serialize>,
    ) -> Result<ureq::Response> {
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        res.map_err(|e| self.error(e))
    }

    fn error(&self, e: ureq::Error) -> ClientError {
        match e {
            ureq::Error::Status(status, r) => match r.into_json::<ErrorBody>() {
                Ok(b) => ClientError::Api {
                    status,
                    code: b.code,
                    message: b.error,
                },
                Err(_) => ClientError::Api {
                    status,
                    code: "http".into(),
                    message: format!("the service answered HTTP {status}"),
                },
            },
            ureq::Error::Transport(t) => ClientError::Transport {
                server: self.server.clone(),
                detail: t.to_string(),
            },
        }
    }

    fn json<T: DeserializeOwned>(
        &self,
        req: ureq::Request,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        self.send(req, body)?
            .into_json()
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.keyed("GET", path)?, None::<&()>)
    }

    /// Creates an account and keeps its key in this client (the service shows it only once).
    pub fn signup(&mut self, name: Option<&str>) -> Result<AccountCreated> {
        let body = NewAccount {
            name: name.map(str::to_string),
        };
        let created: AccountCreated =
            self.json(self.request("POST", "/v1/accounts"), Some(&body))?;
        self.api_key = Some(created.api_key.clone());
        Ok(created)
    }

    pub fn account(&self) -> Result<Account> {
        self.get("/v1/account")
    }

    /// Credits test tokens (services started with `--dev-faucet` only).
    pub fn faucet(&self, chain: &str, token: &str, amount_micro: i64) -> Result<Account> {
        let body = FaucetRequest {
            chain: chain.into(),
            token: token.into(),
            amount_micro,
        };
        self.json(self.keyed("POST", "/v1/faucet")?, Some(&body))
    }

    pub fn models(&self) -> Result<ModelList> {
        self.json(self.request("GET", "/v1/models"), None::<&()>)
    }

    pub fn model(&self, name: &str) -> Result<ModelInfo> {
        self.json(
            self.request("GET", &format!("/v1/models/{}", path_segment(name))),
            None::<&()>,
        )
    }

    /// Uploads an ONNX model; compiling and setting it up can take minutes.
    pub fn upload_model(&self, onnx: &[u8]) -> Result<ModelInfo> {
        let r = self
            .keyed("POST", "/v1/models")?
            .timeout(Duration::from_secs(1800))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(onnx)
            .map_err(|e| self.error(e))?;
        r.into_json()
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The model's verification key for `proof_system`, as the service serves it.
    pub fn verifying_key(&self, model: &str, proof_system: &str) -> Result<Vec<u8>> {
        let path = format!(
            "/v1/models/{}/vk?proof_system={}",
            path_segment(model),
            path_segment(proof_system)
        );
        self.download(self.request("GET", &path))
    }

    /// Submits a job; `idempotency_key` makes a retried submission return the first job.
    pub fn submit_job(&self, req: &JobRequest, idempotency_key: Option<&str>) -> Result<Job> {
        let mut r = self.keyed("POST", "/v1/jobs")?;
        if let Some(k) = idempotency_key {
            r = r.set("Idempotency-Key", k);
        }
        self.json(r, Some(req))
    }

    pub fn job(&self, id: i64) -> Result<Job> {
        self.get(&format!("/v1/jobs/{id}"))
    }

    pub fn jobs(&self, limit: Option<i64>) -> Result<JobList> {
        match limit {
            Some(n) => self.get(&format!("/v1/jobs?limit={n}")),
            None => self.get("/v1/jobs"),
        }
    }

    pub fn cancel(&self, id: i64) -> Result<Job> {
        self.json(
            self.keyed("POST", &format!("/v1/jobs/{id}/cancel"))?,
            None::<&()>,
        )
    }

    pub fn result(&self, id: i64) -> Result<JobResult> {
        self.get(&format!("/v1/jobs/{id}/result"))
    }

    /// The job's proof bundle.
    pub fn proof(&self, id: i64) -> Result<Vec<u8>> {
        self.download(self.keyed("GET", &format!("/v1/jobs/{id}/proof"))?)
    }

    pub fn batch(&self, id: i64) -> Result<Batch> {
        self.get(&format!("/v1/batches/{id}"))
    }

    /// The batch's aggregate file.
    pub fn batch_aggregate(&self, id: i64) -> Result<Vec<u8>> {
        self.download(self.keyed("GET", &format!("/v1/batches/{id}/aggregate"))?)
    }

    fn download(&self, req: ureq::Request) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.send(req, None::<&()>)?
            .into_reader()
            .take(MAX_DOWNLOAD)
            .read_to_end(&mut out)
            .map_err(|e| ClientError::Transport {
                server: self.server.clone(),
                detail: format!("reading the download: {e}"),
            })?;
        Ok(out)
    }

    /// Follows a job through its live events (`GET /v1/jobs/{id}/events`) until it is
    /// verified, failed or cancelled (and its escrow, if it opened one, settled or refunded), calling `on_change` with each new state; reconnects if
    /// the stream ends early. Returns the final job, or [`ClientError::Timeout`] after `limit`.
    pub fn follow(&self, id: i64, limit: Duration, mut on_change: impl FnMut(&Job)) -> Result<Job> {
        let start = Instant::now();
        // The last state shown; each new one goes to `on_change`, and a final one ends it.
        let mut shown: Option<JobState> = None;
        let mut see = |job: Job| -> Option<Job> {
            if shown != Some(job.state) {
                on_change(&job);
                shown = Some(job.state);
            }
            job.is_done().then_some(job)
        };
        loop {
            let Some(left) = limit.checked_sub(start.elapsed()).filter(|d| !d.is_zero()) else {
                return Err(ClientError::Timeout {
                    id,
                    state: shown.map_or("queued", |s| s.as_str()).to_string(),
                    seconds: limit.as_secs(),
                });
            };
            let req = self
                .keyed("GET", &format!("/v1/jobs/{id}/events"))?
                .timeout(left);
            let resp = match self.send(req, None::<&()>) {
                Ok(r) => r,
                // Too many streams open (503), or a service without events (404): poll.
                Err(ClientError::Api {
                    status: 503 | 404, ..
                }) => {
                    if let Some(done) = see(self.job(id)?) {
                        return Ok(done);
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let stream = std::io::BufReader::new(resp.into_reader());
            let (mut event, mut data) = (String::new(), String::new());
            for line in stream.lines() {
                // A read error is the time limit or a dropped connection: the loop decides.
                let Ok(line) = line else { break };
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                } else if line.is_empty() && data.is_empty() {
                    event.clear();
                } else if line.is_empty() {
                    if event == "error" {
                        let b: ErrorBody = serde_json::from_str(&data)
                            .map_err(|e| ClientError::Decode(e.to_string()))?;
                        return Err(ClientError::Api {
                            status: 200,
                            code: b.code,
                            message: b.error,
                        });
                    }
                    if event == "job" {
                        let job: Job = serde_json::from_str(&data)
                            .map_err(|e| ClientError::Decode(e.to_string()))?;
                        if let Some(done) = see(job) {
                            return Ok(done);
                        }
                    }
                    event.clear();
                    data.clear();
                }
            }
            // The stream ended before the final state (the service restarted, or the
            // stream's lifetime ran out): reconnect.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `s` safe as one path segment or query value (percent-encodes all but unreserved bytes).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("mlp_small"), "mlp_small");
        assert_eq!(path_segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn documents_round_trip_and_refuse_unknown_request_fields() {
        let j = r#"{"model":"m","chain":"starknet","extra":1}"#;
        assert!(serde_json::from_str::<JobRequest>(j).is_err());
        let entry: types::ModelEntry =
            serde_json::from_str(r#"{"name":"m-1","error":"cannot load"}"#).unwrap();
        assert_eq!(entry.name(), "m-1");
        assert!(matches!(entry, types::ModelEntry::Unavailable { .. }));
    }
}
