//! Shared by the targets whose code catches panics on purpose.

/// Ciro turns panics inside tract, stwo and halo2 into errors (`catch_unwind`); libFuzzer's
/// hook would abort on them before they are caught. Panics nothing catches still abort the run.
pub fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("panic (caught or fatal): {info}")
        }));
    });
}
