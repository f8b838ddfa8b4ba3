//! Personal data through the platform: a column of e-mail addresses the spec does not declare is
//! refused, its content deleted and its values quoted nowhere; once the spec allows the column
//! for a purpose, the same data sent again is stored again and accepted.

use std::time::Duration;

use mlops_cli::events::Decoded;
use mlops_integration_tests::{TestApp, client, sample, wait_until};
use mlops_shared::bus::DATASETS_BUCKET;

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
