fn main() -> std::process::ExitCode {
    mlops_shared::service::main("registry", mlops_registry::run)
}
