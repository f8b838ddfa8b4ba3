//! The deployer binary: the shared service main parses the configuration, installs telemetry,
//! binds the listener and runs [`mlops_deployer::run`] until SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    mlops_shared::service::main("deployer", mlops_deployer::run)
}
