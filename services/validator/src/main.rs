fn main() -> anyhow::Result<()> {
    mlops_shared::service::main("validator", mlops_validator::run)
}
