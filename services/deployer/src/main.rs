fn main() -> anyhow::Result<()> {
    mlops_shared::service::main("deployer", mlops_deployer::run)
}
