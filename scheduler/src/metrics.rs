//! `GET /metrics`: Prometheus text exposition, read from the store at each scrape, so any API
//! node reports the whole cluster (every worker process writes its jobs' timings there).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::store::{JobState, ProveTimes, Store, StoreError};

/// Workers count as alive this long after their last report.
pub const WORKER_SEEN: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug)]
struct Snapshot {
    states: Vec<(String, i64)>,
    workers: i64,
    prove: Vec<ProveTimes>,
}

/// The metrics as text, or the store's error.
pub fn render(store: &Store) -> Result<String, StoreError> {
    let snapshot = Snapshot {
        states: store.counts_by_state()?,
        workers: store.workers_seen(WORKER_SEEN)?.len() as i64,
        prove: store.prove_times()?,
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|e| StoreError::Invalid(format!("cannot encode the metrics: {e}")))?;
    Ok(out)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let queued = self
            .states
            .iter()
            .find(|(s, _)| s == JobState::Queued.as_str())
            .map_or(0, |s| s.1);
        ConstGauge::new(queued).encode(enc.encode_descriptor(
            "ciro_queue_depth",
            "Jobs waiting for a worker",
            None,
            MetricType::Gauge,
        )?)?;
        {
            let mut jobs =
                enc.encode_descriptor("ciro_jobs", "Jobs by state", None, MetricType::Gauge)?;
            for (state, n) in &self.states {
                ConstGauge::new(*n).encode(jobs.encode_family(&[("state", state.as_str())])?)?;
            }
        }
        ConstGauge::new(self.workers).encode(enc.encode_descriptor(
            "ciro_workers",
            "Worker processes that reported in the last minute",
            None,
            MetricType::Gauge,
        )?)?;
        let mut hist = enc.encode_descriptor(
            "ciro_prove_seconds",
            "Prove time per model and proof system (witness generation excluded)",
            None,
            MetricType::Histogram,
        )?;
        for p in &self.prove {
            // The store counts cumulatively; the encoder wants each bucket's own count.
            let mut buckets = Vec::with_capacity(p.buckets.len() + 1);
            let mut below = 0;
            for &(le_ms, n) in &p.buckets {
                buckets.push((le_ms / 1e3, n.saturating_sub(below)));
                below = n;
            }
            buckets.push((f64::INFINITY, p.count.saturating_sub(below)));
            hist.encode_family(&[
                ("model", p.model.as_str()),
                ("proof_system", p.proof_system.as_str()),
            ])?
            .encode_histogram::<NoLabelSet>(
                p.sum_ms / 1e3,
                p.count,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}
