fn main() -> std::process::ExitCode {
    mlops_shared::service::main("validator", mlops_validator::run)
}
