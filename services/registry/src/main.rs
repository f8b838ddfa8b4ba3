fn main() -> anyhow::Result<()> {
    mlops_shared::service::main("registry", mlops_registry::run)
}
