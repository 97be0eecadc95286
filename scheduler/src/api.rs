//! The HTTP API (JSON over HTTP; `openapi.json` documents it and the tests check the server
//! against it). Every error is `{"error": message, "code": code}` with a 4xx or 5xx status.

use std::sync::Arc;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use futures_util::FutureExt;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use serde_json::{json, Value};

use ciro_model_compiler::input::{check_inputs, decode_image};
use ciro_model_compiler::quantize_inputs;

use crate::pricing::{default_backend, Chain, Token};
use crate::registry::{Model, RegistryError, MAX_MODEL_BYTES};
use crate::store::{NewJob, StoreError};
use crate::Shared;
use ciro_client::types;
use ciro_prover::plonky2_backend::aggregate::Aggregate;
use ciro_prover::BackendId;

pub const OPENAPI: &str = include_str!("../openapi.json");
/// Largest job request (a JSON tensor or a base64 image).
pub const MAX_JOB_BYTES: usize = 4 << 20;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl ApiError {
    /// The error document every endpoint answers with.
    pub(crate) fn body(&self) -> Value {
        json!({ "error": self.message, "code": self.code })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Per-account and per-address request rates (sign-ups, faucet, job submissions).
pub struct RateLimits {
    accounts: DefaultKeyedRateLimiter<(i64, &'static str)>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimits {
    pub fn new(per_minute: u32) -> RateLimits {
        let quota =
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN));
        RateLimits {
            accounts: DefaultKeyedRateLimiter::keyed(quota),
            addresses: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    fn refused(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many {what}; try again in a minute"),
        )
    }

    fn account(&self, account: i64, what: &'static str) -> ApiResult<()> {
        self.accounts
            .check_key(&(account, what))
            .map_err(|_| Self::refused(what))
    }

    fn address(&self, ip: IpAddr) -> ApiResult<()> {
        self.addresses
            .check_key(&ip)
            .map_err(|_| Self::refused("sign-ups from this address"))
    }

    /// Forgets keys whose limits have fully replenished (bounds the maps' memory).
    pub fn retain_recent(&self) {
        self.accounts.retain_recent();
        self.addresses.retain_recent();
    }
}

/// The client's address (from the connection; unspecified when served without one).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip()),
        ))
    }
}

/// Holds one of the service's slots for expensive work (image decoding, compilation, key
/// generation), or refuses with 503 when all are taken.
fn expensive_slot(s: &Shared) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    s.expensive.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the service is busy with other uploads and images; try again shortly",
        )
    })
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match e {
            StoreError::NoSuchJob(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", msg),
            StoreError::InsufficientBalance { .. } => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_balance", msg)
            }
            StoreError::NotCancellable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_cancellable", msg)
            }
            StoreError::IdempotencyConflict(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_conflict",
                msg,
            ),
            StoreError::Invalid(_) => ApiError::bad("invalid", msg),
            StoreError::CreditCap { .. } => ApiError::new(StatusCode::FORBIDDEN, "faucet_cap", msg),
            StoreError::Db(_) | StoreError::Conflict(_) => internal(&msg),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let msg = e.to_string();
        match e {
            RegistryError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_model", msg),
            RegistryError::BadModel(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_model", msg)
            }
            RegistryError::Io(_) => internal(&msg),
        }
    }
}

/// A 500 that keeps the detail (paths, database errors) in the service's log.
pub(crate) fn internal(detail: &str) -> ApiError {
    crate::worker::log(detail);
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the operator's log has the details",
    )
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
pub(crate) type AppState = State<Arc<Shared>>;

/// The caller's account, from `Authorization: Bearer KEY` (or `X-Api-Key: KEY`).
pub struct Account(pub i64);

impl FromRequestParts<Arc<Shared>> for Account {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> ApiResult<Self> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing API key: send `Authorization: Bearer <key>` (create one with POST /v1/accounts)",
                )
            })?;
        let (s, key) = (shared.clone(), key.trim().to_string());
        match blocking(move || Ok(s.store.account_for_key(&key)?)).await? {
            Some((id, _)) => Ok(Account(id)),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API key",
            )),
        }
    }
}

/// Parses a JSON body ourselves, so that a bad body gets our error shape and a clear message.
fn json_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_body"
        };
        ApiError::new(
            status,
            code,
            format!("cannot read the request body: {}", r.body_text()),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad("bad_json", format!("invalid JSON body: {e}")))
}

/// Runs blocking work (compilation, the job store, image decoding) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(&format!("request task failed: {e}")))?
}

pub(crate) fn path_param(p: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad("bad_path", e.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad("bad_query", e.body_text()))
}

/// Every request answered within its time limit (a model upload gets longer), and a panic in a
/// handler answered as a JSON 500 rather than a dropped connection.
async fn guard(State(s): AppState, req: Request, next: Next) -> Response {
    let limits = &s.config.http;
    let limit = if req.method() == Method::POST && req.uri().path() == "/v1/models" {
        limits.upload_timeout
    } else {
        limits.request_timeout
    };
    let run = std::panic::AssertUnwindSafe(next.run(req)).catch_unwind();
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(_)) => internal("a request handler panicked").into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(crate::web::index))
        .route("/app.js", get(crate::web::script))
        .route("/app.css", get(crate::web::style))
        .route("/healthz", get(health))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/accounts", post(create_account))
        .route("/v1/account", get(account))
        .route("/v1/faucet", post(faucet))
        .route(
            "/v1/models",
            get(list_models)
                .post(upload_model)
                .layer(DefaultBodyLimit::max(MAX_MODEL_BYTES)),
        )
        .route("/v1/models/{name}", get(model_info))
        .route("/v1/models/{name}/vk", get(model_vk))
        .route(
            "/v1/jobs",
            post(create_job)
                .get(list_jobs)
                .layer(DefaultBodyLimit::max(MAX_JOB_BYTES)),
        )
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/result", get(job_result))
        .route("/v1/jobs/{id}/proof", get(job_proof))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/events", get(crate::events::job_events))
        .route("/v1/batches/{id}", get(get_batch))
        .route("/v1/batches/{id}/aggregate", get(batch_aggregate))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see GET /v1/openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint takes another method; see GET /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(64 << 10))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

async fn health(State(s): AppState) -> ApiResult<Json<types::Health>> {
    blocking(move || {
        Ok(Json(types::Health {
            ok: true,
            queued: s.store.count_in_state(crate::store::JobState::Queued)?,
            proving: s.store.count_in_state(crate::store::JobState::Proving)?,
            store: match s.store.dialect() {
                crate::store::db::Dialect::Sqlite => "sqlite",
                crate::store::db::Dialect::Postgres => "postgres",
            }
            .into(),
            workers: s.store.workers_seen(crate::metrics::WORKER_SEEN)?,
        }))
    })
    .await
}

async fn metrics(State(s): AppState) -> ApiResult<Response> {
    blocking(move || {
        let text = crate::metrics::render(&s.store)?;
        Ok((
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response())
    })
    .await
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn create_account(
    State(s): AppState,
    ClientIp(ip): ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<types::AccountCreated>)> {
    s.rates.address(ip)?;
    let req: types::NewAccount = json_body(body)?;
    let name = req.name.unwrap_or_else(|| "anonymous".into());
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad(
            "invalid",
            "an account name has 1 to 100 characters",
        ));
    }
    let key = format!("ciro_{}", hex::encode(rand::random::<[u8; 24]>()));
    let id = {
        let key = key.clone();
        let name = name.clone();
        blocking(move || Ok(s.store.create_account(&name, &key)?)).await?
    };
    Ok((
        StatusCode::CREATED,
        Json(types::AccountCreated {
            account_id: id,
            name,
            api_key: key,
        }),
    ))
}

fn account_doc(s: &Shared, account: i64) -> ApiResult<types::Account> {
    Ok(types::Account {
        account_id: account,
        balances: s.store.balances(account)?,
    })
}

async fn account(State(s): AppState, Account(id): Account) -> ApiResult<Json<types::Account>> {
    blocking(move || Ok(Json(account_doc(&s, id)?))).await
}

async fn faucet(
    State(s): AppState,
    Account(id): Account,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<types::Account>> {
    if !s.config.dev_faucet {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "faucet_disabled",
            "this service has no faucet (only development services, started with --dev-faucet, credit test tokens)",
        ));
    }
    s.rates.account(id, "faucet requests")?;
    let req: types::FaucetRequest = json_body(body)?;
    let chain: Chain = req
        .chain
        .parse()
        .map_err(|e: String| ApiError::bad("bad_chain", e))?;
    let token: Token = req
        .token
        .parse()
        .map_err(|e: String| ApiError::bad("bad_token", e))?;
    blocking(move || {
        s.store.credit(
            id,
            chain,
            token,
            req.amount_micro,
            s.config.faucet_cap_micro,
        )?;
        Ok(Json(account_doc(&s, id)?))
    })
    .await
}

async fn get_model(s: &Arc<Shared>, name: String) -> ApiResult<Arc<Model>> {
    let s = s.clone();
    blocking(move || Ok(s.registry.get(&name)?)).await
}

async fn list_models(State(s): AppState) -> ApiResult<Json<types::ModelList>> {
    let mut models = Vec::new();
    for name in s.registry.names() {
        // A model that no longer compiles is listed with its error rather than hiding the rest.
        let shared = s.clone();
        let n = name.clone();
        match blocking(move || Ok(shared.registry.info(&n)?)).await {
            Ok(info) => models.push(types::ModelEntry::Model(Box::new(info))),
            Err(e) => models.push(types::ModelEntry::Unavailable {
                name,
                error: e.message,
            }),
        }
    }
    Ok(Json(types::ModelList { models }))
}

async fn model_info(
    State(s): AppState,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let name = path_param(name)?;
    let shared = s.clone();
    Ok(Json(json!(
        blocking(move || Ok(shared.registry.info(&name)?)).await?
    )))
}

#[derive(Deserialize)]
struct VkQuery {
    proof_system: Option<String>,
}

async fn model_vk(
    State(s): AppState,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<VkQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let name = path_param(name)?;
    let q = query(q)?;
    let system: BackendId = q
        .proof_system
        .as_deref()
        .unwrap_or("stwo")
        .parse()
        .map_err(|e: String| ApiError::bad("bad_proof_system", e))?;
    let m = get_model(&s, name).await?;
    let shared = s.clone();
    let slot = expensive_slot(&s)?;
    // Keys other than the pricing backend's are made on first use (seconds): off the runtime.
    let json = blocking(move || {
        let _slot = slot;
        m.keys(system, &shared.registry.provers)
            .map(|k| k.vk_json.clone())
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "setup_failed", e))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

async fn upload_model(
    State(s): AppState,
    Account(account): Account,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    s.rates.account(account, "uploads")?;
    let bytes = body.map_err(|r| {
        ApiError::new(
            r.status(),
            "too_large",
            format!(
                "cannot read the model: {} (limit {MAX_MODEL_BYTES} bytes)",
                r.body_text()
            ),
        )
    })?;
    let slot = expensive_slot(&s)?;
    let m = blocking(move || {
        let _slot = slot;
        Ok(s.registry.upload(&bytes)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!(m.info()))))
}

fn job_json(job: &crate::store::Job) -> Value {
    json!(job.doc)
}

async fn create_job(
    State(s): AppState,
    Account(account): Account,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    s.rates.account(account, "job submissions")?;
    let req: types::JobRequest = json_body(body)?;
    let chain: Chain = req
        .chain
        .parse()
        .map_err(|e: String| ApiError::bad("bad_chain", e))?;
    let token: Token = req
        .token
        .as_deref()
        .unwrap_or("CIRO")
        .parse()
        .map_err(|e: String| ApiError::bad("bad_token", e))?;
    let system: BackendId = match req.proof_system.as_deref() {
        Some(p) => p
            .parse()
            .map_err(|e: String| ApiError::bad("bad_proof_system", e))?,
        None => default_backend(chain),
    };
    let proof_system = system.name();
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => {
            let k = v.to_str().map_err(|_| {
                ApiError::bad(
                    "bad_idempotency_key",
                    "the Idempotency-Key header must be ASCII",
                )
            })?;
            if k.is_empty() || k.len() > 200 {
                return Err(ApiError::bad(
                    "bad_idempotency_key",
                    "the Idempotency-Key header has 1 to 200 characters",
                ));
            }
            Some(k.to_string())
        }
        None => None,
    };
    let model = match get_model(&s, req.model.clone()).await {
        Err(e) if e.code == "unknown_model" => {
            return Err(ApiError::bad("unknown_model", e.message))
        }
        other => other?,
    };
    // Paid through the escrow on a chain-backed service: the escrow's verifier must know the
    // model before the user can open it.
    let link = s.chain_link(chain);
    let escrow_model = match &link {
        Some(link) => {
            if model.uploaded {
                // Registering a model deploys its verifier at the operator's expense: only the
                // operator's own models are offered through the escrow.
                return Err(ApiError::bad(
                    "bad_chain",
                    format!("on {chain}, jobs are paid through the escrow, which takes the service's built-in models; an uploaded model is paid on starknet (the embedded ledger)"),
                ));
            }
            if system != BackendId::Halo2 {
                return Err(ApiError::bad(
                    "bad_proof_system",
                    format!("on {chain}, jobs are paid through the escrow, whose verifier contracts check halo2 proofs: use proof_system halo2"),
                ));
            }
            let link = link.clone();
            Some(
                crate::settler::ensure_registered(&s, &link, &model.name)
                    .await
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "chain_unavailable",
                            format!("cannot register {} on {chain}: {e}", model.name),
                        )
                    })?,
            )
        }
        None => None,
    };
    let shared = s.clone();
    let slot = match req.image_base64 {
        Some(_) => Some(expensive_slot(&s)?),
        None => None,
    };
    let (job, created) = blocking(move || {
        let _slot = slot;
        let g = &model.compiled.graph;
        let inputs: Vec<Vec<f32>> = match (req.input, req.image_base64) {
            (Some(v), None) => ciro_model_compiler::input::parse_json(&v.to_string())
                .map_err(|e| ApiError::bad("bad_input", format!("input: {e}")))?,
            (None, Some(b64)) => {
                let spec = g.image.as_ref().ok_or_else(|| {
                    ApiError::bad(
                        "bad_input",
                        format!("model {} takes no images (it declares no ciro.image preprocessing); send a JSON tensor as `input`", model.name),
                    )
                })?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| ApiError::bad("bad_image", format!("image_base64 is not base64: {e}")))?;
                vec![decode_image(&bytes, "the uploaded image", spec)
                    .map_err(|e| ApiError::bad("bad_image", e.to_string()))?]
            }
            _ => {
                return Err(ApiError::bad(
                    "bad_input",
                    "give exactly one of `input` (a JSON tensor) and `image_base64`",
                ))
            }
        };
        let shapes: Vec<Vec<usize>> = g.inputs.iter().map(|i| i.shape.clone()).collect();
        check_inputs(&inputs, &shapes).map_err(|e| ApiError::bad("bad_input", e.to_string()))?;
        let quantized =
            quantize_inputs(g, &inputs).map_err(|e| ApiError::bad("bad_input", e.to_string()))?;
        let input = serde_json::to_string(&inputs)
            .map_err(|e| ApiError::bad("bad_input", e.to_string()))?;
        let price_micro = model.price(system);
        let terms = match (&link, escrow_model) {
            (Some(link), Some((model_word, keys))) => {
                let vk = crate::settler::as_halo2(&keys).map_err(|e| internal(&e))?;
                let flat: Vec<i64> = quantized.iter().flat_map(|t| t.data.iter().copied()).collect();
                let commitment = ciro_verifier::evm::input_commitment(vk, &flat)
                    .map_err(|e| ApiError::bad("bad_input", e.to_string()))?;
                Some(crate::settler::quote(
                    link,
                    &shared,
                    token,
                    price_micro,
                    model_word,
                    commitment,
                ))
            }
            _ => None,
        };
        Ok(shared.store.create_job(&NewJob {
            account,
            model: &model.name,
            model_hash: &model.compiled.hash,
            input: &input,
            chain,
            token,
            price_micro,
            proof_system,
            idempotency_key: idempotency_key.as_deref(),
            escrow: terms.as_ref().map(|t| t as &dyn Fn(i64) -> types::EscrowPayment),
        })?)
    })
    .await?;
    if created {
        s.wake.notify();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(job_json(&job))).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list_jobs(
    State(s): AppState,
    Account(account): Account,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    blocking(move || {
        let jobs = s.store.jobs_of(account, limit)?;
        Ok(Json(
            json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() }),
        ))
    })
    .await
}

pub(crate) fn parse_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job {id:?} not found"),
        )
    })
}

async fn get_job(
    State(s): AppState,
    Account(account): Account,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&path_param(id)?)?;
    blocking(move || Ok(Json(job_json(&s.store.job_of(account, id)?)))).await
}

fn not_ready(job: &crate::store::Job) -> ApiError {
    let msg = match &job.doc.error {
        Some(reason) => format!("job {} is {}: {reason}", job.doc.id, job.doc.state.as_str()),
        None => format!(
            "job {} is {}; its result is ready once it is verified",
            job.doc.id,
            job.doc.state.as_str()
        ),
    };
    ApiError::new(StatusCode::CONFLICT, "not_ready", msg)
}

async fn job_result(
    State(s): AppState,
    Account(account): Account,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<types::JobResult>> {
    let id = parse_id(&path_param(id)?)?;
    blocking(move || {
        let job = s.store.job_of(account, id)?;
        match (&job.doc.state, &job.doc.result) {
            (crate::store::JobState::Verified, Some(r)) => {
                let field = |name: &str| r.get(name).cloned().unwrap_or(Value::Null);
                let parse = |name: &str| {
                    internal(&format!(
                        "job {id}: the stored result's {name} is malformed"
                    ))
                };
                Ok(Json(types::JobResult {
                    job_id: job.doc.id,
                    model: job.doc.model.clone(),
                    model_hash: job.doc.model_hash.clone(),
                    proof_system: job.doc.proof_system.clone(),
                    verified: true,
                    outputs: serde_json::from_value(field("outputs"))
                        .map_err(|_| parse("outputs"))?,
                    label: serde_json::from_value(field("label")).map_err(|_| parse("label"))?,
                    model_commitment: serde_json::from_value(field("model_commitment"))
                        .map_err(|_| parse("model_commitment"))?,
                    security_bits: serde_json::from_value(field("security_bits"))
                        .map_err(|_| parse("security_bits"))?,
                    evm_calldata: serde_json::from_value(field("evm_calldata"))
                        .map_err(|_| parse("evm_calldata"))?,
                    price_micro: job.doc.price_micro,
                    chain: job.doc.chain,
                    token: job.doc.token,
                }))
            }
            _ => Err(not_ready(&job)),
        }
    })
    .await
}

async fn job_proof(
    State(s): AppState,
    Account(account): Account,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&path_param(id)?)?;
    blocking(move || {
        let job = s.store.job_of(account, id)?;
        if job.doc.state != crate::store::JobState::Verified {
            return Err(not_ready(&job));
        }
        let bytes = s.store.proof(id)?.ok_or_else(|| not_ready(&job))?;
        Ok(attachment(format!("job-{id}.bundle"), bytes))
    })
    .await
}

/// A file download: raw bytes, offered under `name`.
fn attachment(name: String, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn cancel_job(
    State(s): AppState,
    Account(account): Account,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&path_param(id)?)?;
    blocking(move || Ok(Json(job_json(&s.store.cancel(account, id)?)))).await
}

fn no_batch(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no batch {id}"))
}

/// A batch: its state, the statements its aggregate covers (hashes only, the same for every
/// account) and where the caller's own jobs sit in it.
async fn get_batch(
    State(s): AppState,
    Account(account): Account,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<types::Batch>> {
    let id = parse_id(&path_param(id)?)?;
    blocking(move || {
        let b = s.store.batch(id)?.ok_or_else(|| no_batch(id))?;
        let (aggregator, statements) = match s.store.batch_aggregate(id)? {
            Some(bytes) => {
                let agg = Aggregate::from_bytes(&bytes)
                    .map_err(|e| internal(&format!("batch {id}: stored aggregate: {e}")))?;
                let statements = agg
                    .statements()
                    .map_err(|e| internal(&format!("batch {id}: stored aggregate: {e}")))?;
                let statements = statements
                    .into_iter()
                    .map(|st| types::Statement {
                        model_name: st.model_name,
                        model_commitment: st.model_commitment,
                        circuit: st.circuit,
                        public_values: st.public_values,
                    })
                    .collect();
                (Some(agg.header.aggregator), statements)
            }
            None => (None, Vec::new()),
        };
        let your_jobs = b
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, (_, owner))| *owner == account)
            .map(|(i, (job, _))| types::BatchMember {
                job: *job,
                index: i as i64,
            })
            .collect();
        Ok(Json(types::Batch {
            id: b.id,
            state: if b.error.is_none() {
                "aggregated"
            } else {
                "failed"
            }
            .into(),
            error: b.error,
            created_at: b.created_at,
            proofs: b.proofs,
            aggregate_ms: b.aggregate_ms,
            aggregate_bytes: b.aggregate_bytes,
            aggregator,
            statements,
            your_jobs,
        }))
    })
    .await
}

/// The aggregate file (`ciro verify BATCH.agg --vk KEY --statement JOB.bundle`).
async fn batch_aggregate(
    State(s): AppState,
    Account(_): Account,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&path_param(id)?)?;
    blocking(move || {
        let b = s.store.batch(id)?.ok_or_else(|| no_batch(id))?;
        let bytes = s.store.batch_aggregate(id)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!(
                    "batch {id} has no aggregate: {}",
                    b.error.as_deref().unwrap_or("it failed")
                ),
            )
        })?;
        Ok(attachment(format!("batch-{id}.agg"), bytes))
    })
    .await
}
