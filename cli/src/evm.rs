//! `ciro gen-verifier`, `ciro encode-calldata`, `ciro verify-evm`: the on-chain half of halo2.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ciro_prover::bundle::write_atomic;
use ciro_prover::{Halo2VerifyingKey, KeyFile, ProofBundle};
use ciro_verifier::evm::{self, EIP170_LIMIT};

/// Where a verifier runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A Solidity contract for Ethereum, Polygon and other EVM chains.
    Evm,
}

fn halo2_key(path: &Path) -> Result<Halo2VerifyingKey> {
    let key = ciro_verifier::load_key(path)?;
    match key.downcast_ref::<Halo2VerifyingKey>() {
        Some(k) => Ok(k.clone()),
        None => bail!(
            "{} is a {} key: only halo2-KZG proofs verify on chain (set up with --backend halo2)",
            path.display(),
            key.backend()
        ),
    }
}

pub fn cmd_gen_verifier(
    json: bool,
    vk: &Path,
    _target: Target,
    output: &Path,
    bytecode: Option<&Path>,
) -> Result<()> {
    let key = halo2_key(vk)?;
    let verifier = evm::evm_verifier(&key)?;
    write_atomic(output, verifier.solidity.as_bytes())?;
    if let Some(path) = bytecode {
        // One line per contract, in deployment order: `name hex`.
        let lines: String = verifier
            .contracts
            .iter()
            .map(|c| format!("{} {}\n", c.name, hex::encode(&c.deployment_code)))
            .collect();
        write_atomic(path, lines.as_bytes())?;
    }
    let contracts: Vec<serde_json::Value> = verifier
        .contracts
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "runtime_bytes": c.runtime_bytes }))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": key.model_name,
                "commitment": key.commitment(),
                "solidity": output,
                "bytecode": bytecode,
                "public_values": key.n_public(),
                "contracts": contracts,
                "within_eip170": verifier.largest_runtime() <= EIP170_LIMIT,
            })
        );
        return Ok(());
    }
    println!(
        "wrote {} (pragma solidity 0.8.19) for {} with {} public values",
        output.display(),
        key.model_name,
        key.n_public()
    );
    for c in &verifier.contracts {
        println!(
            "  {:<22} {:>6} bytes of runtime code (EIP-170 limit {EIP170_LIMIT})",
            c.name, c.runtime_bytes
        );
    }
    if verifier.contracts.len() > 1 {
        let entry = verifier.contracts.last().map_or("", |c| c.name.as_str());
        println!("  deploy in this order; each contract takes the address of the one above it; call {entry}");
    }
    if let Some(path) = bytecode {
        println!(
            "wrote {} (deployment bytecode, one `name hex` line per contract, in deployment order)",
            path.display()
        );
    }
    Ok(())
}

pub fn cmd_encode_calldata(json: bool, bundle: &Path, output: Option<&Path>) -> Result<()> {
    let b = ProofBundle::load(bundle)?;
    let data = evm::calldata(&b)?;
    match output {
        Some(path) => {
            write_atomic(path, &data)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "calldata": path, "bytes": data.len() })
                );
            } else {
                println!(
                    "wrote {} ({} bytes of calldata)",
                    path.display(),
                    data.len()
                );
            }
        }
        None if json => println!(
            "{}",
            serde_json::json!({ "calldata": format!("0x{}", hex::encode(&data)), "bytes": data.len() })
        ),
        None => println!("0x{}", hex::encode(&data)),
    }
    Ok(())
}

pub fn cmd_verify_evm(json: bool, bundle: &Path, vk: &Path) -> Result<()> {
    let key = halo2_key(vk)?;
    let b = ProofBundle::load(bundle)?;
    let data = evm::calldata(&b)?;
    let verifier = evm::evm_verifier(&key)?;
    let mut chain = evm::LocalEvm::default();
    let deployed = chain
        .deploy(&verifier)
        .context("deploying the verifier in a local EVM")?;
    let outcome = chain.call(deployed.entry, &data)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "accepted": outcome.accepted,
                "gas": outcome.gas,
                "calldata_bytes": data.len(),
                "contracts": deployed.runtime_bytes.len(),
                "largest_runtime_bytes": deployed.largest_runtime(),
                "deploy_gas": deployed.deploy_gas,
            })
        );
    } else {
        println!(
            "verifier     {} contract(s), largest {} bytes of runtime code (EIP-170: {EIP170_LIMIT}), deployed for {} gas",
            deployed.runtime_bytes.len(),
            deployed.largest_runtime(),
            deployed.deploy_gas
        );
        println!(
            "call         {} bytes of calldata, {} gas",
            data.len(),
            outcome.gas
        );
    }
    if !outcome.accepted {
        bail!("REJECTED: the EVM verifier reverted");
    }
    if !json {
        println!("OK: the EVM verifier accepted the proof");
    }
    Ok(())
}
