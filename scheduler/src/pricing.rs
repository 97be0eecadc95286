//! Chains, tokens and prices. Amounts are integers in micro-units (10^-6 of a token), so the
//! ledger never rounds.

use std::fmt;
use std::str::FromStr;

use ciro_prover::BackendId;
use serde::{Deserialize, Serialize};

pub const MICRO: i64 = 1_000_000;

/// Settlement chains a job can be paid on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Starknet,
    Ethereum,
    Polygon,
}

pub const CHAINS: [Chain; 3] = [Chain::Starknet, Chain::Ethereum, Chain::Polygon];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Token {
    Ciro,
    Usdc,
}

pub const TOKENS: [Token; 2] = [Token::Ciro, Token::Usdc];

impl Chain {
    pub fn as_str(&self) -> &'static str {
        match self {
            Chain::Starknet => "starknet",
            Chain::Ethereum => "ethereum",
            Chain::Polygon => "polygon",
        }
    }
}

impl Token {
    pub fn as_str(&self) -> &'static str {
        match self {
            Token::Ciro => "CIRO",
            Token::Usdc => "USDC",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Chain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CHAINS
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown chain {s:?}: choose one of starknet, ethereum, polygon")
            })
    }
}

impl FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TOKENS
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown token {s:?}: choose CIRO or USDC"))
    }
}

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

/// `12.345678` from micro-units.
pub fn format_amount(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let m = micro.unsigned_abs();
    format!("{sign}{}.{:06}", m / MICRO as u64, m % MICRO as u64)
}

/// Parses a decimal token amount (`100`, `0.25`) into micro-units, exactly.
pub fn parse_amount(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an amount of tokens (like 100 or 0.25, at most 6 decimals)");
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 6 {
        return Err(bad());
    }
    let digits = |d: &str| d.is_empty() || d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let f: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    w.checked_mul(MICRO)
        .and_then(|m| m.checked_add(f))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!("StarkNet".parse::<Chain>().unwrap(), Chain::Starknet);
        assert_eq!("usdc".parse::<Token>().unwrap(), Token::Usdc);
        assert!("solana".parse::<Chain>().unwrap_err().contains("starknet"));
        assert!("ETH".parse::<Token>().unwrap_err().contains("CIRO"));
        assert_eq!(format_amount(20_100), "0.020100");
        assert_eq!(format_amount(-3 * MICRO - 5), "-3.000005");
        assert_eq!(parse_amount("100"), Ok(100 * MICRO));
        assert_eq!(parse_amount("0.25"), Ok(250_000));
        assert_eq!(parse_amount(".000001"), Ok(1));
        for bad in [
            "",
            ".",
            "-1",
            "1e3",
            "0.0000001",
            "abc",
            "99999999999999999",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn price_grows_with_the_circuit() {
        assert_eq!(quote(0), 10_000);
        assert_eq!(quote(98_944), 10_000 + 99 * 100);
        assert!(quote(1 << 20) > quote(1 << 16));
    }
}
