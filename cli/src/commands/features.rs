//! `mlops features`: feature views — apply one, list them, read an entity's history (offline) or
//! current values (online), and build a point-in-time correct training set from the offline log.
//! Reads go to the feature store on NATS directly, as Feast's SDK reads its stores.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use mlops_cli::client;
use mlops_cli::environments::Endpoints;
use mlops_features::offline::WRITTEN_COLUMN;
use mlops_features::time::format_ms;
use mlops_features::training::{Lookup, join, write_parquet};
use mlops_features::{FeatureStore, Written, composite_key};
use mlops_shared::spec::{FeatureViewSpec, parse_ref};
use mlops_shared::table::Value;

/// The subcommands of `mlops features`.
#[derive(Subcommand)]
pub(crate) enum FeaturesCommand {
    /// Apply a feature view's spec (`kind: feature_view`; `mlops pipeline apply` takes it too).
    Apply {
        file: PathBuf,
        /// Print what was applied as one JSON object (name, revision, spec_hash).
        #[arg(long)]
        json: bool,
    },
    /// The feature views, with their keys, TTL and features.
    List,
    /// One entity's values over time, from the offline log, in event-time order.
    History {
        view: String,
        /// The entity's key (repeat it for each column of a composite key, in the view's order).
        #[arg(long = "entity", required = true)]
        entity: Vec<String>,
    },
    /// One entity's current values, from the online store (nothing once past the view's TTL).
    Get {
        view: String,
        /// The entity's key (repeat it for each column of a composite key, in the view's order).
        #[arg(long = "entity", required = true)]
        entity: Vec<String>,
    },
    /// A point-in-time correct training set: the entity rows (CSV, Parquet or JSON Lines; every
    /// column kept, labels included) with each feature's value as of the row's time, never one
    /// written later, as Parquet.
    TrainingSet {
        /// The entity rows.
        #[arg(long)]
        entities: PathBuf,
        /// The features, as `VIEW:feature` (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true)]
        features: Vec<String>,
        /// The column holding each row's time (RFC 3339, a Parquet timestamp, or Unix seconds).
        #[arg(long, default_value = "event_timestamp")]
        at: String,
        /// The column(s) holding the entity key (default: the view's own key column names).
        #[arg(long = "entity-column", value_delimiter = ',')]
        entity_columns: Vec<String>,
        /// Where to write the Parquet file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs one `mlops features` subcommand.
pub(crate) async fn run(command: FeaturesCommand, ep: &Endpoints) -> anyhow::Result<()> {
    if let FeaturesCommand::Apply { file, json } = command {
        return apply(file, json, ep).await;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let nats = ep.nats();
    let bus = mlops_shared::bus::Bus::connect(&nats, "mlops-cli", &shutdown)
        .await
        .with_context(|| format!("connecting to {}", nats.url))?;
    let store = FeatureStore::open(&bus).await?;
    match command {
        FeaturesCommand::Apply { .. } => unreachable!("handled above"),
        FeaturesCommand::List => list(&store).await,
        FeaturesCommand::History { view, entity } => history(&store, &view, &entity).await,
        FeaturesCommand::Get { view, entity } => get(&store, &view, &entity).await,
        FeaturesCommand::TrainingSet { entities, features, at, entity_columns, out } => {
            training_set(&store, &entities, &features, &at, entity_columns, &out).await
        }
    }
}

async fn apply(file: PathBuf, json: bool, ep: &Endpoints) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    // Checked here first, so that a pipeline spec given by mistake is named as such.
    FeatureViewSpec::from_yaml(&yaml).with_context(|| format!("{} is not a feature view", file.display()))?;
    let p = client::apply_pipeline_from(&ep.registry, &yaml, None, "", ep.admin_token.as_deref()).await?;
    if json {
        println!("{}", serde_json::json!({"name": p.name, "revision": p.revision, "spec_hash": p.spec_hash}));
    } else {
        println!("feature view {} applied: revision {}, spec {}", p.name, p.revision, &p.spec_hash[..12]);
    }
    Ok(())
}

async fn list(store: &FeatureStore) -> anyhow::Result<()> {
    for v in store.views().await? {
        let ttl = v.ttl.map_or("none".to_owned(), |s| format!("{s} s"));
        let features: Vec<&str> = v.features.iter().map(|f| f.name.as_str()).collect();
        let files = store.files(v.name.as_str()).await?.len();
        println!(
            "{}  key ({})  event time {}  ttl {ttl}  {} offline file(s)  features: {}",
            v.name,
            v.entities.join(", "),
            v.event_time,
            files,
            features.join(", ")
        );
    }
    Ok(())
}

fn entity_key(view: &FeatureViewSpec, entity: &[String]) -> anyhow::Result<String> {
    anyhow::ensure!(
        entity.len() == view.entities.len(),
        "feature view `{}` is keyed by {} column(s) ({}); give --entity once for each",
        view.name,
        view.entities.len(),
        view.entities.join(", ")
    );
    Ok(composite_key(entity))
}

fn shown(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| match v {
            Value::Num(x) => x.to_string(),
            Value::Cat(c) => c.clone(),
            Value::Missing => "null".into(),
        })
        .collect::<Vec<_>>()
        .join("  ")
}

async fn history(store: &FeatureStore, view: &str, entity: &[String]) -> anyhow::Result<()> {
    let view = store.known_view(view).await?;
    let key = entity_key(&view, entity)?;
    let log = store.log(&view).await?;
    let mut rows: Vec<usize> = (0..log.len()).filter(|&r| log.keys[r] == key).collect();
    anyhow::ensure!(!rows.is_empty(), "feature view `{}` has no values for entity {}", view.name, entity.join("/"));
    rows.sort_by_key(|&r| (log.event_ms[r], log.written_ms[r], r));
    let names: Vec<&str> = view.features.iter().map(|f| f.name.as_str()).collect();
    println!("{:<24}  {:<24}  {}", "event time", "written", names.join("  "));
    for r in rows {
        println!("{:<24}  {:<24}  {}", format_ms(log.event_ms[r]), format_ms(log.written_ms[r]), shown(&log.values(r)));
    }
    Ok(())
}

async fn get(store: &FeatureStore, view: &str, entity: &[String]) -> anyhow::Result<()> {
    let view = store.known_view(view).await?;
    let key = entity_key(&view, entity)?;
    let found = store.online(&view, &[key], mlops_shared::now_unix_ms(), None).await?;
    let Some(entry) = found.into_iter().next().flatten() else {
        anyhow::bail!("feature view `{}` has no live value for entity {} online", view.name, entity.join("/"));
    };
    for (f, v) in view.features.iter().zip(entry.feature_values()) {
        println!("{:<20} {}", f.name, shown(&[v]));
    }
    println!("(event time {}, written {})", format_ms(entry.event_ms), format_ms(entry.written_ms));
    Ok(())
}

async fn training_set(
    store: &FeatureStore,
    entities: &std::path::Path,
    features: &[String],
    at: &str,
    entity_columns: Vec<String>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in features {
        let r = parse_ref(r).map_err(|e| anyhow::anyhow!(e.replace("`lookup.from`", "--features")))?;
        wanted.entry(r.view.to_owned()).or_default().push(r.feature.to_owned());
    }
    let mut views: Vec<FeatureViewSpec> = Vec::new();
    for name in wanted.keys() {
        views.push(store.known_view(name).await?);
    }
    let entity_columns = if entity_columns.is_empty() { views[0].entities.clone() } else { entity_columns };
    let file = std::fs::File::open(entities).with_context(|| format!("opening {}", entities.display()))?;
    let name = entities.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let batches: Vec<_> = mlops_data::open(mlops_data::Source::File(file), &name, &mlops_data::Limits::default())?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", entities.display()))?;
    // The views' logs are read off the runtime, their files fetched on it meanwhile.
    let runtime = tokio::runtime::Handle::current();
    let (store, at) = (store.clone(), at.to_owned());
    let joined = tokio::task::spawn_blocking(move || {
        let lookups: Vec<Lookup<'_>> = views
            .iter()
            .map(|view| Lookup {
                view,
                features: wanted[view.name.as_str()].iter().map(String::as_str).collect(),
                log: store.log_batches(view.name.as_str(), &runtime),
                written: Written::Column(WRITTEN_COLUMN),
            })
            .collect();
        join(&[batches], &entity_columns, &at, lookups)
    })
    .await?
    .with_context(|| format!("joining {}", entities.display()))?
    .pop()
    .context("one set joined")?;
    let mut bytes = Vec::new();
    write_parquet(joined.schema.clone(), &joined.batches, &mut bytes)?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    let rows: usize = joined.batches.iter().map(|b| b.num_rows()).sum();
    println!("{rows} rows with {} looked-up feature(s) written to {}", features.len(), out.display());
    for (view, s) in joined.stats {
        println!(
            "  {view}: {} rows matched, {} of entities it has never seen, {} with no value then",
            s.matched, s.unknown, s.absent
        );
    }
    Ok(())
}
