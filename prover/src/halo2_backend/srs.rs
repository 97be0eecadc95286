//! The halo2 SRS: loaded from a ceremony file in the SRS folder, or made by an unsafe local
//! setup and cached there.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use halo2_axiom::halo2curves::bn256::Bn256;
use halo2_axiom::poly::commitment::Params;
use halo2_axiom::poly::kzg::commitment::ParamsKZG;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::Halo2Backend;
use crate::bundle::write_atomic;
use crate::error::ProveError;

/// The default SRS folder: `$CIRO_SRS_DIR`, else `~/.cache/ciro/srs`, else `./.ciro-srs`.
pub fn default_srs_dir() -> PathBuf {
    std::env::var_os("CIRO_SRS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ciro/srs")))
        .unwrap_or_else(|| PathBuf::from(".ciro-srs"))
}

impl Halo2Backend {
    fn srs_path(&self, k: u32) -> PathBuf {
        self.srs_dir.join(format!("kzg_bn254_{k}.srs"))
    }

    /// The SRS for `2^k` rows: from memory, from a file of this size or larger, or a new unsafe
    /// local setup that is then cached.
    pub fn srs(
        &self,
        k: u32,
        log: &mut dyn FnMut(&str),
    ) -> Result<(ParamsKZG<Bn256>, String), ProveError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, p, origin)) = cache.iter().find(|(kk, _, _)| *kk == k) {
            return Ok((p.clone(), origin.clone()));
        }
        let io =
            |e: std::io::Error, p: &Path| ProveError::Backend(format!("SRS {}: {e}", p.display()));
        // Round twice at most: a setup made here that lost the race to publish (another process
        // on the same folder made one first) is dropped for the published one.
        let mut made_here = false;
        let (params, origin) = loop {
            let found = (k..=26)
                .map(|kk| (kk, self.srs_path(kk)))
                .find(|(_, path)| path.exists());
            break match found {
                Some((kk, path)) => {
                    let bytes = std::fs::read(&path).map_err(|e| io(e, &path))?;
                    let mut p = ParamsKZG::<Bn256>::read(&mut Cursor::new(&bytes))
                        .map_err(|e| io(e, &path))?;
                    if p.k() != kk {
                        return Err(ProveError::Backend(format!(
                            "SRS {} holds 2^{} points, its name says 2^{kk}",
                            path.display(),
                            p.k()
                        )));
                    }
                    let digest = hex::encode(Sha256::digest(&bytes));
                    let origin = match std::fs::read_to_string(path.with_extension("origin")) {
                        Ok(o) if o.trim() == "unsafe local setup" => o.trim().to_string(),
                        Ok(o) if o.trim().starts_with("file ") => o.trim().to_string(),
                        _ => format!("file {digest}"),
                    };
                    if kk > k {
                        // Downsizing recomputes the Lagrange basis (tens of seconds): keep the result.
                        log(&format!("downsizing the 2^{kk} SRS to 2^{k}"));
                        p.downsize(k);
                        let mut out = Vec::new();
                        p.write(&mut out).map_err(|e| io(e, &self.srs_dir))?;
                        let small = self.srs_path(k);
                        write_atomic(&small, &out)?;
                        write_atomic(
                            &small.with_extension("origin"),
                            format!("{origin}\n").as_bytes(),
                        )?;
                    }
                    (p, origin)
                }
                None if made_here => {
                    return Err(ProveError::Backend(format!(
                        "the SRS for 2^{k} rows was published in {} but cannot be found there",
                        self.srs_dir.display()
                    )))
                }
                None => {
                    made_here = true;
                    log(&format!(
                        "generating an unsafe local KZG setup for 2^{k} rows (cached in {})",
                        self.srs_dir.display()
                    ));
                    let p = ParamsKZG::<Bn256>::setup(k, OsRng);
                    let mut bytes = Vec::new();
                    p.write(&mut bytes).map_err(|e| io(e, &self.srs_dir))?;
                    std::fs::create_dir_all(&self.srs_dir).map_err(|e| io(e, &self.srs_dir))?;
                    let path = self.srs_path(k);
                    // Every process proving with this folder must use the same SRS (keys made from
                    // another would not verify each other's proofs): the first one published wins.
                    write_atomic(&path.with_extension("origin"), b"unsafe local setup\n")?;
                    if !publish_once(&path, &bytes)? {
                        continue;
                    }
                    (p, "unsafe local setup".to_string())
                }
            };
        };
        cache.push((k, params.clone(), origin.clone()));
        Ok((params, origin))
    }
}

/// Writes `bytes` to `path` unless a file is already there (then leaves it and returns
/// `false`): through a temporary file and a hard link, so a reader never sees half a file and
/// two writers never both win.
fn publish_once(path: &Path, bytes: &[u8]) -> Result<bool, ProveError> {
    let io = |e: std::io::Error| ProveError::Backend(format!("SRS {}: {e}", path.display()));
    let tmp = path.with_extension(format!("{}.publish.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(e)),
    }
}
