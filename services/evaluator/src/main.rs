fn main() -> std::process::ExitCode {
    mlops_shared::service::main("evaluator", mlops_evaluator::run)
}
