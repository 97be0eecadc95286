//! Live job events: `GET /v1/jobs/{id}/events`, a server-sent event stream of the job as it
//! changes (queued → proving → proved → verified, or failed or cancelled), ending after the
//! final state. The stream wakes on the store's commits rather than polling the database, and
//! is bounded in number ([`MAX_STREAMS`], [`MAX_STREAMS_PER_ACCOUNT`]) and in life
//! ([`MAX_LIFETIME`]; the client reconnects). Clients fall back to polling when refused.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use crate::api::{blocking, parse_id, path_param, Account, ApiError, ApiResult, AppState};
use crate::Shared;

/// Open event streams at most (each holds a connection and a small task).
pub const MAX_STREAMS: usize = 256;
/// Open event streams per account at most, so that a few accounts cannot hold every stream.
pub const MAX_STREAMS_PER_ACCOUNT: usize = 8;
/// A stream closes after this long; a client that still wants events reconnects.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How often an idle stream checks whether the service is stopping.
const TICK: Duration = Duration::from_secs(1);
/// A stream re-reads its job after this many quiet ticks even without a change notice.
const BACKSTOP_TICKS: u32 = 10;

struct Follow {
    shared: Arc<Shared>,
    account: i64,
    id: i64,
    changes: tokio::sync::broadcast::Receiver<i64>,
    last: Option<String>,
    sent: u64,
    started: Instant,
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _account_slot: AccountSlot,
}

/// One of an account's stream slots, given back when the stream ends.
struct AccountSlot {
    shared: Arc<Shared>,
    account: i64,
}

impl AccountSlot {
    fn take(shared: &Arc<Shared>, account: i64) -> Option<AccountSlot> {
        let mut open = shared
            .event_streams_by_account
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = open.entry(account).or_insert(0);
        if *n >= MAX_STREAMS_PER_ACCOUNT {
            return None;
        }
        *n += 1;
        Some(AccountSlot {
            shared: shared.clone(),
            account,
        })
    }
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut open = self
            .shared
            .event_streams_by_account
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.account);
            }
        }
    }
}

impl Follow {
    /// The next event: the job once it differs from the last one sent; `None` once the final
    /// state went out, the service stops, or the stream has lived [`MAX_LIFETIME`].
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Follow)> {
        loop {
            if self.done || self.ending() {
                return None;
            }
            // After the first event, read again only once this job changed (or any job may
            // have: a missed notification, a lagging receiver): wait for that, checking each
            // tick whether the stream should end. Changes made during a read queue up here.
            let mut ticks = 0;
            while self.last.is_some() {
                use tokio::sync::broadcast::error::RecvError;
                // Checked at every wake-up, not only on quiet ticks: on a busy service other
                // jobs' changes arrive more often than once a tick.
                if self.ending() {
                    return None;
                }
                match tokio::time::timeout(TICK, self.changes.recv()).await {
                    Ok(Ok(id)) if id == self.id || id == crate::store::ANY_JOB => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(RecvError::Lagged(_))) => break,
                    Ok(Err(RecvError::Closed)) => return None, // the store is gone
                    Err(_) => {
                        // A backstop: read again now and then even without news, in case a
                        // notification from another process was lost.
                        ticks += 1;
                        if ticks >= BACKSTOP_TICKS {
                            break;
                        }
                    }
                }
            }
            let (s, account, id) = (self.shared.clone(), self.account, self.id);
            let job = blocking(move || Ok(s.store.job_of(account, id)?)).await;
            let job = match job {
                Ok(job) => job,
                Err(e) => {
                    self.done = true;
                    let event = Event::default()
                        .event("error")
                        .data(serde_json::to_string(&e.body()).unwrap_or_default());
                    return Some((Ok(event), self));
                }
            };
            let text = serde_json::to_string(&job.doc).unwrap_or_default();
            if self.last.as_deref() != Some(text.as_str()) {
                self.done = job.doc.is_done();
                self.sent += 1;
                let event = Event::default()
                    .event("job")
                    .id(self.sent.to_string())
                    .data(&text);
                self.last = Some(text);
                return Some((Ok(event), self));
            }
        }
    }

    /// The service is stopping, or the stream has lived its time.
    fn ending(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst) || self.started.elapsed() > MAX_LIFETIME
    }
}

pub async fn job_events(
    axum::extract::State(s): AppState,
    Account(account): Account,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&path_param(id)?)?;
    // A job of another account is "not found", as for GET /v1/jobs/{id}.
    let store = s.clone();
    blocking(move || Ok(store.store.job_of(account, id)?)).await?;
    let busy = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{why}; poll GET /v1/jobs/{id} instead, or try again shortly"),
        )
    };
    let account_slot = AccountSlot::take(&s, account).ok_or_else(|| {
        busy(format!(
            "this account has {MAX_STREAMS_PER_ACCOUNT} event streams open"
        ))
    })?;
    let permit = s
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| busy(format!("{MAX_STREAMS} event streams are open")))?;
    let follow = Follow {
        changes: s.store.changes(),
        shared: s,
        account,
        id,
        last: None,
        sent: 0,
        started: Instant::now(),
        done: false,
        _permit: permit,
        _account_slot: account_slot,
    };
    let events = stream::unfold(follow, Follow::next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
