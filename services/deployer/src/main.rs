//! The deployer binary: the shared service main parses the configuration, installs telemetry,
//! binds the listener and runs [`mlops_deployer::run`] until SIGINT or SIGTERM.

/// mimalloc rather than glibc's malloc: the deployer holds millions of small allocations (the
/// online store's replicas) beside the requests' short-lived ones, and glibc's allocator, searching
/// its fragmented bins, took a third of the serving time with a 1M-entity replica.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mlops_shared::service::main("deployer", mlops_deployer::run)
}
