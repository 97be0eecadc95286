//! Dev-only helpers shared by the tests and benches of every crate above the model compiler:
//! where the fixtures are, which exist, how to compile them and quantize their sample inputs,
//! and the tampering that soundness tests apply to compiled models.

use std::path::{Path, PathBuf};

use ciro_model_compiler::compile::CompileOptions;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::input::read_json;
use ciro_model_compiler::{compile, compile_model_dir, onnx, quantize_inputs, CompiledModel, Op};

/// The fixture models (`fixtures/models/NAME`), smallest circuits first.
pub const MODELS: [&str; 5] = [
    "mlp_small",
    "act_mix",
    "image_recognition_v1",
    "mlp_mnist",
    "cnn_lenet",
];

/// Op fixtures that exist to be refused, not proved.
const REFUSED_OPS: [&str; 7] = [
    "unsupported_op",
    "unsupported_op_topk",
    "malformed",
    "huge_input",
    "huge_constant",
    "huge_macs",
    "bad_image_spec",
];

/// The `fixtures/` folder of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Every single-op fixture (`fixtures/ops/NAME.onnx` with its input `NAME.json`) that should
/// compile and prove, sorted.
pub fn op_fixtures() -> Vec<String> {
    let dir = fixtures().join("ops");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "onnx").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .filter(|n| !REFUSED_OPS.contains(&n.as_str()))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "op fixtures missing: {names:?}");
    names
}

/// What the CLI and the service compile with (`ciro_prover::compile_options`): scales every
/// proof system's field budget holds.
pub fn compile_options() -> CompileOptions {
    CompileOptions {
        check: Some(ciro_circuits::fits(ciro_circuits::PROVING_BUDGETS.to_vec())),
        ..CompileOptions::default()
    }
}

/// A fixture model compiled with its calibration data.
pub fn compile_fixture(name: &str) -> CompiledModel {
    compile_model_dir(&fixtures().join("models").join(name), &compile_options())
        .unwrap_or_else(|e| panic!("fixture {name} compiles: {e}"))
}

/// A fixture model's sample input (`input.json`), quantized.
pub fn sample_input(model: &CompiledModel, name: &str) -> Vec<IntTensor> {
    let x = read_json(&fixtures().join("models").join(name).join("input.json"))
        .unwrap_or_else(|e| panic!("{name}: sample input: {e}"));
    quantize_inputs(&model.graph, &x).unwrap_or_else(|e| panic!("{name}: quantize: {e}"))
}

/// A model fixture (`models/NAME`) with its sample input, or else the op fixture `NAME`
/// ([`compile_op`]).
pub fn compile_named(name: &str) -> (CompiledModel, Vec<IntTensor>) {
    if fixtures().join("models").join(name).is_dir() {
        let model = compile_fixture(name);
        let input = sample_input(&model, name);
        (model, input)
    } else {
        compile_op(name)
    }
}

/// An op fixture compiled with its input as the calibration data, and that input quantized.
pub fn compile_op(name: &str) -> (CompiledModel, Vec<IntTensor>) {
    let dir = fixtures().join("ops");
    let loaded = onnx::load(&dir.join(format!("{name}.onnx")))
        .unwrap_or_else(|e| panic!("{name}: load: {e}"));
    let x = read_json(&dir.join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name}: input: {e}"));
    let model = compile(&loaded, std::slice::from_ref(&x), &compile_options())
        .unwrap_or_else(|e| panic!("{name}: compile: {e}"));
    let input = quantize_inputs(&model.graph, &x).unwrap_or_else(|e| panic!("{name}: {e}"));
    (model, input)
}

/// A copy of `model` with its first weight tensor's first value changed by one.
pub fn with_changed_weight(model: &CompiledModel) -> CompiledModel {
    let mut model = model.clone();
    let w = model
        .graph
        .nodes
        .iter_mut()
        .find_map(|n| match &mut n.op {
            Op::Const { values } if values.len() > 1 => Some(values),
            _ => None,
        })
        .expect("a weight tensor");
    w[0] += 1;
    model
}

/// The share of `n` held-out synthetic inputs (random prompts for a one-hot model) on which
/// the compiled fixture's label (its output's argmax) is the float model's; an input that leaves
/// a calibrated range counts as disagreeing, since it cannot be proven.
pub fn label_agreement(model: &CompiledModel, name: &str, n: usize) -> f64 {
    use ciro_model_compiler::compile::{argmax, run, synthetic_inputs};
    use ciro_model_compiler::reference::FloatModel;
    let g = &model.graph;
    let loaded = onnx::load(&fixtures().join("models").join(name).join("model.onnx"))
        .unwrap_or_else(|e| panic!("{name}: load: {e}"));
    let float = FloatModel::new(&loaded).unwrap_or_else(|e| panic!("{name}: float model: {e}"));
    let shapes: Vec<Vec<usize>> = g.inputs.iter().map(|i| i.shape.clone()).collect();
    let inputs = synthetic_inputs(
        &shapes,
        g.inputs[0].range,
        g.image.as_ref(),
        g.one_hot,
        n,
        99,
    );
    let agree = inputs
        .iter()
        .filter(|x| {
            let f = float
                .run(x)
                .unwrap_or_else(|e| panic!("{name}: float run: {e}"));
            run(g, x).is_ok_and(|q| argmax(&q[0]) == argmax(&f[0]))
        })
        .count();
    agree as f64 / n as f64
}

/// A `ciro serve` process on a free port, killed (SIGKILL) when dropped.
pub struct Service {
    pub child: std::process::Child,
    pub url: String,
}

impl Service {
    /// Starts `bin serve --dev-faucet` on a free port with `data` as its data directory and
    /// waits for its "listening on" line.
    pub fn start(bin: &std::path::Path, data: &std::path::Path, extra: &[&str]) -> Service {
        Self::start_with_env(bin, data, extra, &[])
    }

    /// [`Service::start`] with extra environment variables.
    pub fn start_with_env(
        bin: &std::path::Path,
        data: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin)
            .envs(env.iter().copied())
            .args([
                "serve",
                "--dev-faucet",
                "--addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ciro serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("ciro serve prints its address");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        Service { child, url }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill ciro serve");
        self.child.wait().expect("reap ciro serve");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PostgreSQL server for tests: `initdb` into a temporary folder, listening on
/// 127.0.0.1 on a free port (and a socket in that folder), stopped and removed when dropped.
/// Runs the server as the `postgres` user when the tests run as root (PostgreSQL refuses root).
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    databases: std::sync::atomic::AtomicUsize,
}

impl Postgres {
    /// Starts one. Panics, naming what is missing, if the server binaries are not installed:
    /// CI installs them (`.ci/run`), so a missing server is a failure, never a skip.
    pub fn start() -> Postgres {
        let bin = Self::find_bin().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: \
                 apt-get install postgresql (the README's test command and .ci/run do)"
            )
        });
        Self::stop_orphans(&bin);
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ciro-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary folder for PostgreSQL");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = Postgres {
            dir,
            bin,
            port,
            databases: Default::default(),
        };
        if Self::as_root() {
            pg.run("chown", &["-R", "postgres:", &pg.dir.display().to_string()]);
        }
        pg.pg(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        pg.up();
        pg
    }

    /// Stops and removes the servers of test processes that died without cleaning up (killed
    /// by a time-out, say): `pg_ctl start` detaches, so nothing else would.
    fn stop_orphans(bin: &Path) {
        for e in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name
                .strip_prefix("ciro-pg-")
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if Path::new("/proc").join(pid).exists() {
                continue;
            }
            let data = e.path().join("data");
            let mut cmd = if Self::as_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
                c
            } else {
                std::process::Command::new(bin.join("pg_ctl"))
            };
            let _ = cmd
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "stop"])
                .output();
            let _ = std::fs::remove_dir_all(e.path());
        }
    }

    fn find_bin() -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .collect();
        dirs.sort();
        dirs.reverse();
        dirs.push(PathBuf::from("/usr/local/bin"));
        dirs.push(PathBuf::from("/usr/bin"));
        dirs.into_iter()
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    }

    fn as_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a PostgreSQL program (as `postgres` when we are root).
    fn pg(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program).display().to_string();
        if Self::as_root() {
            let mut all = vec!["-u", "postgres", "--", path.as_str()];
            all.extend_from_slice(args);
            self.run("runuser", &all);
        } else {
            self.run(&path, args);
        }
    }

    /// Starts the server (again, after [`Postgres::down`]) on the same port and data.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    /// Stops the server at once (connections are cut, as when its machine goes away).
    pub fn down(&self) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// CPU time the server has used so far, in seconds: the postmaster and its children (live
    /// ones, and those that ended and were reaped). Linux only; 0 elsewhere.
    pub fn cpu_seconds(&self) -> f64 {
        let ticks = |pid: &str| -> Option<(u64, Vec<u64>)> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // After the name: state, ppid (1), ..., utime (11), stime (12), cutime (13), cstime (14).
            Some((f.get(1).copied()?, f.get(11..15)?.to_vec()))
        };
        let Some(master) = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
        else {
            return 0.0;
        };
        let Some((_, own)) = ticks(&master) else {
            return 0.0;
        };
        let master_pid: u64 = master.parse().unwrap_or(0);
        let mut total: u64 = own.iter().sum();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some((ppid, t)) = name
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| ticks(&name))
                .flatten()
            {
                if ppid == master_pid {
                    total += t[0] + t[1];
                }
            }
        }
        // Linux's USER_HZ is 100 on every platform Ciro runs on.
        total as f64 / 100.0
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database; returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "ciro_{}",
            self.databases
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.pg(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &name,
            ],
        );
        self.url(&name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = if Self::as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        let _ = cmd
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A local Ethereum node (`anvil`, from `verifier/evm`'s pinned npm packages) on 127.0.0.1 on a
/// free port, killed when dropped. Its accounts are anvil's well-known development accounts.
pub struct Anvil {
    child: std::process::Child,
    pub url: String,
    pub chain_id: u64,
}

impl Anvil {
    /// anvil's first development accounts' private keys (hex): funded with 10,000 ETH each.
    pub const KEYS: [&'static str; 12] = [
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
        "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
        "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
        "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
        "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
        "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
        "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
        "f214f2b2cd398c806f84e317254e0f0b801d0643303237d97a22a48e01628897",
        "701b615bbdfb9de65240bc28bd21bbc0d996645a3dd57e7b12bc2bdf6f192c82",
    ];

    /// The anvil binary: `$CIRO_ANVIL`, else `verifier/evm/node_modules/.../bin/anvil`.
    pub fn bin() -> PathBuf {
        std::env::var_os("CIRO_ANVIL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../verifier/evm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
            })
    }

    /// Starts one with this chain id and waits until it answers. Panics, naming the fix, if
    /// anvil is not installed: CI installs it, so a missing node is a failure, never a skip.
    pub fn start(chain_id: u64) -> Anvil {
        use std::io::BufRead;
        let bin = Self::bin();
        assert!(
            bin.exists(),
            "anvil is not installed at {}: run `npm ci` in verifier/evm (the README's test command and .ci/run do)",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = std::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--chain-id", &chain_id.to_string(), "--accounts", "12"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("anvil starts");
        let out = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(out).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("Listening on") => break,
                Some(Ok(_)) => {}
                _ => panic!("anvil exited before listening"),
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chain_id,
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_exist_on_disk() {
        for m in MODELS {
            assert!(
                fixtures()
                    .join("models")
                    .join(m)
                    .join("model.onnx")
                    .is_file(),
                "{m}"
            );
        }
        let ops = op_fixtures();
        assert!(ops.iter().all(|o| !REFUSED_OPS.contains(&o.as_str())));
        for o in &ops {
            assert!(
                fixtures().join("ops").join(format!("{o}.json")).is_file(),
                "{o}"
            );
        }
    }
}
