fn main() -> std::process::ExitCode {
    mlops_shared::service::main("monitor", mlops_monitor::run)
}
