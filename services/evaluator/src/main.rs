fn main() -> anyhow::Result<()> {
    mlops_shared::service::main("evaluator", mlops_evaluator::run)
}
