fn main() -> std::process::ExitCode {
    mlops_shared::service::main("ingest", mlops_ingest::run)
}
