//! Chains, tokens and prices. Amounts are integers in micro-units (10^-6 of a token), so the
//! ledger never rounds.

pub use ciro_client::types::{format_amount, parse_amount, Chain, Token, CHAINS, MICRO, TOKENS};
use ciro_prover::BackendId;

/// The default proof system for a chain: EVM chains get the proof their verifier contract
/// checks.
pub fn default_backend(chain: Chain) -> BackendId {
    match chain {
        Chain::Starknet => BackendId::Stwo,
        Chain::Ethereum | Chain::Polygon => BackendId::Halo2,
    }
}

/// The price of one proof, from the size of its circuit: a base fee plus a fee per trace row
/// (the prover's work grows with the rows it commits). Same figure in CIRO and USDC.
pub fn quote(trace_rows: u64) -> i64 {
    const BASE: i64 = 10_000; // 0.01
    const PER_1K_ROWS: i64 = 100; // 0.0001 per 1,000 rows
    BASE + trace_rows.div_ceil(1000) as i64 * PER_1K_ROWS
}

/// The price with a given proof system: its per-row fee is stwo's times the backend's
/// measured relative cost (`ciro_prover::registry::BackendInfo::relative_cost`).
pub fn quote_for(backend: BackendId, trace_rows: u64) -> i64 {
    quote(trace_rows.saturating_mul(ciro_prover::backend(backend).relative_cost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_grows_with_the_circuit() {
        assert_eq!(quote(0), 10_000);
        assert_eq!(quote(98_944), 10_000 + 99 * 100);
        assert!(quote(1 << 20) > quote(1 << 16));
    }
}
