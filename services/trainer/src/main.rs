fn main() -> std::process::ExitCode {
    mlops_shared::service::main("trainer", mlops_trainer::run)
}
