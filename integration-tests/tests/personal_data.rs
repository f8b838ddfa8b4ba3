//! Personal data through the platform: a column of e-mail addresses the spec does not declare is
//! refused, its content deleted and its values quoted nowhere; once the spec allows the column
//! for a purpose, the same data sent again is stored again and accepted. A pseudonymised column
//! is stored as keyed hashes, and refused when ingest has no key.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, sample, wait_until};
use mlops_shared::bus::DATASETS_BUCKET;
use mlops_shared::ids::Sha256;
use mlops_shared::pii::Pseudonymiser;

const T: Duration = Duration::from_secs(60);

/// The example pipeline's rows with a column of e-mail addresses.
fn with_emails(rows: usize) -> String {
    let csv = sample::csv(rows, 7, sample::Variant::Normal);
    csv.lines()
        .enumerate()
        .map(|(i, line)| if i == 0 { format!("{line},email\n") } else { format!("{line},customer{i}@example.org\n") })
        .collect()
}

async fn stored(app: &TestApp, id: &str) -> bool {
    let datasets = app.bus().await.objects(DATASETS_BUCKET).await.unwrap();
    datasets.size_of(id).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_personal_data_is_refused_and_deleted_and_accepted_once_allowed_for_a_purpose() {
    let app = TestApp::start().await;
    app.apply(mlops_cli::EXAMPLE_SPEC).await;
    let csv = with_emails(300);
    let ds = app.upload("churn", &csv).await;
    let rejected = app.wait_event("data.rejected", T, |_| true).await;
    let Decoded::Rejected(r) = &rejected.payload else { unreachable!() };
    assert_eq!(r.dataset_id, ds.dataset_id);
    assert!(
        r.reason.contains("email: holds personal data (email in 100.0% of 300 values) and is not in the spec"),
        "{}",
        r.reason
    );
    assert!(!format!("{r:?}").contains("example.org"), "a value is quoted: {r:?}");

    // The content is not kept, and the catalog says why without a value.
    assert!(wait_until(T, || async { (!stored(&app, &ds.dataset_id).await).then_some(()) }).await.is_some());
    let known = client::dataset(&app.stack.url("ingest"), &ds.dataset_id).await.unwrap();
    assert_eq!(known.verdict, "rejected");
    assert!(!format!("{known:?}").contains("example.org"));
    let refused = client::revalidate(&app.stack.url("ingest"), &ds.dataset_id, "churn".into()).await.unwrap_err();
    assert!(format!("{refused:#}").contains("was deleted for the personal data it held"), "{refused:#}");

    // Allowed for a purpose, the same data sent again is stored again and accepted with a warning.
    let allowed = mlops_cli::EXAMPLE_SPEC.replace(
        "\nvalidation:\n",
        "\ncolumns:\n  - {name: email, type: categorical, pii: allow, purpose: account recovery}\nvalidation:\n",
    );
    app.apply(&allowed).await;
    let again = app.upload("churn", &csv).await;
    assert!(again.revalidating && again.dataset_id == ds.dataset_id, "{again:?}");
    let validated = app.wait_event("data.validated", T, |_| true).await;
    let Decoded::Validated(v) = &validated.payload else { unreachable!() };
    let warning = v.warnings.iter().find(|c| c.column == "email").and_then(|c| c.anomalies.first()).unwrap();
    assert_eq!((warning.kind.as_str(), warning.blocking), ("personal_data", false));
    assert!(warning.message.ends_with("allowed for: account recovery"), "{}", warning.message);
    assert!(!format!("{v:?}").contains("example.org"), "a value is quoted: {v:?}");
    assert!(stored(&app, &ds.dataset_id).await);
}

const KEY: &str = "a key of thirty-two bytes or more, for this test only";

/// `rows` of the stored dataset `id`'s column `name`, read from the object store.
async fn stored_column(app: &TestApp, id: &str, name: &str) -> (Vec<String>, Vec<u8>) {
    let datasets = app.bus().await.objects(DATASETS_BUCKET).await.unwrap();
    let bytes = datasets.get_verified(&Sha256::parse(id.to_owned()).unwrap()).await.unwrap();
    let source = mlops_data::Source::Bytes(bytes.clone().into());
    let mut values = Vec::new();
    for batch in mlops_data::open(source, "data.parquet", &Default::default()).unwrap() {
        let batch = batch.unwrap();
        let column = mlops_data::view(batch.column(batch.schema().index_of(name).unwrap()));
        values.extend((0..batch.num_rows()).map(|r| mlops_data::text(column.get(r)).into_owned()));
    }
    (values, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pseudonymised_column_is_stored_as_keyed_hashes_and_refused_without_a_key() {
    let spec = mlops_cli::EXAMPLE_SPEC.replace(
        "\nvalidation:\n",
        "\ncolumns:\n  - {name: email, type: categorical, pii: pseudonymise}\nvalidation:\n",
    );
    let csv = with_emails(300);

    // Without a key, ingest stores nothing and names the setting.
    let bare = TestApp::start().await;
    bare.apply(&spec).await;
    let refused = client::upload(&bare.stack.remote("ingest"), "churn", "emails.csv", csv.clone().into_bytes()).await;
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(refused.contains("pseudonymises `email` (pii: pseudonymise), but MLOPS_PII_KEY is not set"), "{refused}");
    drop(bare);

    let app = TestApp::start_with(&[("MLOPS_PII_KEY", KEY)]).await;
    app.apply(&spec).await;
    let ds = app.upload("churn", &csv).await;
    assert_eq!(ds.format, "parquet");
    assert!(ds.source.ends_with("(pseudonymised: email)"), "{}", ds.source);
    let mine =
        |s: &mlops_cli::events::Seen| matches!(&s.payload, Decoded::Validated(v) if v.dataset_id == ds.dataset_id);
    app.wait_event("data.validated", T, mine).await;
    let (emails, bytes) = stored_column(&app, &ds.dataset_id, "email").await;
    let key = Pseudonymiser::new(KEY.as_bytes()).unwrap();
    assert_eq!((emails.len(), emails[0].as_str()), (300, key.pseudonym("customer1@example.org").as_str()));
    assert!(!bytes.windows(11).any(|w| w == b"example.org"), "an address was stored");

    // The same file again makes the same pseudonyms: the same version.
    let again = app.upload("churn", &csv).await;
    assert!(again.duplicate && again.dataset_id == ds.dataset_id, "{again:?}");
}
