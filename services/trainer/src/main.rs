fn main() -> anyhow::Result<()> {
    mlops_shared::service::main("trainer", mlops_trainer::run)
}
