//! Event payloads as the consumers decode and check them: the first byte picks the event and
//! whether it is read as protobuf or as the JSON outside systems may send; the rest is the payload.
#![no_main]
use mlops_proto::v1 as pb;
use mlops_shared::bus::decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else { return };
    let json = pick & 1 == 1;
    match (pick >> 1) % 17 {
        0 => drop(decode::<pb::DataArrived>(payload, json)),
        1 => drop(decode::<pb::LabelsArrived>(payload, json)),
        2 => drop(decode::<pb::TrainRequested>(payload, json)),
        3 => drop(decode::<pb::TrainJob>(payload, json)),
        4 => drop(decode::<pb::PredictionLogged>(payload, json)),
        5 => drop(decode::<pb::DataIngested>(payload, json)),
        6 => drop(decode::<pb::DataValidated>(payload, json)),
        7 => drop(decode::<pb::DataRejected>(payload, json)),
        8 => drop(decode::<pb::ModelTrained>(payload, json)),
        9 => drop(decode::<pb::ModelEvaluated>(payload, json)),
        10 => drop(decode::<pb::ModelPromoted>(payload, json)),
        11 => drop(decode::<pb::ModelRolledBack>(payload, json)),
        12 => drop(decode::<pb::DriftDetected>(payload, json)),
        13 => drop(decode::<pb::PerformanceDegraded>(payload, json)),
        14 => drop(decode::<pb::ModelBlocked>(payload, json)),
        15 => drop(decode::<pb::CanaryStarted>(payload, json)),
        _ => drop(decode::<pb::StalenessReported>(payload, json)),
    }
    // What `mlops events tail` and the dashboard show of any subject's payload.
    for subject in ["mlops.events.data.ingested.x", "mlops.events.model.trained.x", "mlops.events.model.evaluated.x"] {
        drop(mlops_shared::describe::decode(subject, payload));
    }
});
