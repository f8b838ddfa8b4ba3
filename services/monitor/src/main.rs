fn main() -> anyhow::Result<()> {
    mlops_shared::service::main("monitor", mlops_monitor::run)
}
