fn main() -> anyhow::Result<()> {
    mlops_shared::service::main("ingest", mlops_ingest::run)
}
