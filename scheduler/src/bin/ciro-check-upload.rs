//! The upload checker the service runs in a child process ([`ciro_scheduler::isolate`]); `ciro
//! check-upload` does the same in a deployed service. Used by this crate's tests.

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    std::process::exit(ciro_scheduler::isolate::child_main(&args));
}
