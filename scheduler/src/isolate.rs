//! Uploaded models are compiled and set up in a child process under memory, CPU and wall-clock
//! limits before the service publishes them: a model that exhausts memory kills the child, not
//! the service. A child that dies (rather than refusing the model with a message) has its model
//! quarantined: refused at once if uploaded again, never loaded at start-up.
//!
//! The child is any program that calls [`child_main`] with its arguments: `ciro check-upload`
//! in a deployed service, `ciro-check-upload` in this crate's tests.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ciro_model_compiler::{compile, onnx, Limits};
use ciro_prover::{BackendId, ProverSettings};

/// How the child is run.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The program and its leading arguments; the model's path, the output path and the caps
    /// follow.
    pub command: Vec<OsString>,
    /// Address space of the child (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// CPU time of the child (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Wall-clock time before the child is killed.
    pub wall: Duration,
}

impl Isolation {
    pub fn new(command: Vec<OsString>) -> Isolation {
        Isolation {
            command,
            memory_bytes: 16 << 30,
            cpu_seconds: 1800,
            wall: Duration::from_secs(900),
        }
    }
}

/// What the child made of a model.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Compiled and set up; the compiled model is at the output path.
    Ready,
    /// Refused with a message (too large, unsupported, malformed): not the model's fault
    /// beyond that.
    Refused(String),
    /// The child died, ran out of time or could not be started: the model is quarantined.
    Crashed(String),
}

/// The exit status of a child that refused the model (its message is on stdout).
const REFUSED: i32 = 2;

/// Runs the child on `onnx`, which writes the compiled model to `out`.
pub fn check(iso: &Isolation, onnx: &Path, out: &Path, limits: &Limits, max_k: u32) -> Outcome {
    let Some((program, lead)) = iso.command.split_first() else {
        return Outcome::Crashed("no upload checker is configured".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(lead)
        .arg(onnx)
        .arg(out)
        .arg(limits.max_macs.to_string())
        .arg(limits.max_values.to_string())
        .arg(max_k.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let (mem, cpu) = (iso.memory_bytes, iso.cpu_seconds);
        // SAFETY: between fork and exec the closure only calls setrlimit, which is
        // async-signal-safe, and touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_AS, mem)?;
                set_limit(libc::RLIMIT_CPU, cpu)
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Crashed(format!("cannot start the upload checker: {e}")),
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > iso.wall => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Crashed(format!(
                    "compiling and setting it up took longer than {} s",
                    iso.wall.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Outcome::Crashed(format!("lost the upload checker: {e}")),
        }
    };
    let mut message = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut message);
    }
    let message: String = message.trim().chars().take(2000).collect();
    match status.code() {
        Some(0) => Outcome::Ready,
        Some(REFUSED) => Outcome::Refused(message),
        _ => Outcome::Crashed(describe(status, iso)),
    }
}

fn describe(status: std::process::ExitStatus, iso: &Isolation) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(libc::SIGXCPU) => {
                return format!("it used more than {} s of CPU", iso.cpu_seconds)
            }
            Some(libc::SIGABRT | libc::SIGSEGV | libc::SIGKILL) => {
                return format!(
                    "compiling and setting it up ran out of memory (limit {} MiB) or crashed",
                    iso.memory_bytes >> 20
                )
            }
            Some(s) => return format!("the upload checker died with signal {s}"),
            None => {}
        }
    }
    let _ = iso;
    format!("the upload checker failed ({status})")
}

#[cfg(unix)]
fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The child: `ONNX OUT MAX_MACS MAX_VALUES MAX_K`. Loads, checks the caps, compiles, makes the
/// stwo keys (the service's pricing backend) and writes the compiled model to `OUT`. Returns the
/// exit status: 0, or [`REFUSED`] with the reason on stdout.
pub fn child_main(args: &[OsString]) -> i32 {
    match child(args) {
        Ok(()) => 0,
        Err(e) => {
            println!("{e}");
            REFUSED
        }
    }
}

fn child(args: &[OsString]) -> Result<(), String> {
    let [onnx_path, out, macs, values, max_k] = args else {
        return Err(format!(
            "usage: ONNX OUT MAX_MACS MAX_VALUES MAX_K (got {} arguments)",
            args.len()
        ));
    };
    let number = |a: &OsString| -> Result<u64, String> {
        a.to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{a:?} is not a number"))
    };
    let limits = Limits {
        max_macs: number(macs)?,
        max_values: number(values)?,
    };
    let loaded = onnx::load(Path::new(onnx_path)).map_err(|e| e.to_string())?;
    let opts = ciro_model_compiler::CompileOptions {
        limits,
        ..ciro_prover::compile_options()
    };
    let compiled = compile(&loaded, &[], &opts).map_err(|e| e.to_string())?;
    let settings = ProverSettings {
        max_halo2_k: number(max_k)? as u32,
        ..ProverSettings::default()
    };
    let prover = ciro_prover::prover(BackendId::Stwo, &settings).map_err(|e| e.to_string())?;
    prover
        .setup(&compiled, &mut |_| {})
        .map_err(|e| format!("setup: {e}"))?;
    compiled
        .save(Path::new(out))
        .map_err(|e| format!("cannot write the compiled model: {e}"))
}
