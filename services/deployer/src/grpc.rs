//! gRPC: the Open Inference Protocol v2 `GRPCInferenceService` and the platform's `Deployer`
//! service (status, rollback).

use std::collections::HashMap;
use std::sync::Arc;

use mlops_proto::inference as oip;
use mlops_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::Deployer;
use crate::error::DeployerError;
use crate::serving::{Column, Models, PredictionLog};

/// OIP v2 over gRPC.
pub struct Inference(pub Arc<Deployer>);

#[tonic::async_trait]
impl oip::grpc_inference_service_server::GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<oip::ServerLiveRequest>,
    ) -> Result<Response<oip::ServerLiveResponse>, Status> {
        Ok(Response::new(oip::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<oip::ServerReadyRequest>,
    ) -> Result<Response<oip::ServerReadyResponse>, Status> {
        Ok(Response::new(oip::ServerReadyResponse { ready: self.0.readiness.is_ready() }))
    }

    async fn model_ready(
        &self,
        req: Request<oip::ModelReadyRequest>,
    ) -> Result<Response<oip::ModelReadyResponse>, Status> {
        let r = req.into_inner();
        let ready = self.0.models.find(&r.name, Some(&r.version)).is_ok();
        Ok(Response::new(oip::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<oip::ServerMetadataRequest>,
    ) -> Result<Response<oip::ServerMetadataResponse>, Status> {
        Ok(Response::new(oip::ServerMetadataResponse {
            name: "mlops-deployer".into(),
            version: mlops_shared::CODE_VERSION.into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<oip::ModelMetadataRequest>,
    ) -> Result<Response<oip::ModelMetadataResponse>, Status> {
        use oip::model_metadata_response::TensorMetadata;
        let r = req.into_inner();
        let model = self.0.models.find(&r.name, Some(&r.version))?;
        let inputs = model
            .artifact
            .manifest()
            .features
            .iter()
            .map(|f| TensorMetadata {
                name: f.name.clone(),
                datatype: crate::serving::oip_datatype(f.kind).into(),
                shape: vec![-1],
            })
            .collect();
        let out = |name: &str, datatype: &str| TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![-1],
        };
        Ok(Response::new(oip::ModelMetadataResponse {
            name: model.pipeline.clone(),
            versions: vec![model.version.to_string()],
            platform: model.artifact.platform(),
            inputs,
            outputs: crate::serving::outputs(&model).iter().map(|(name, datatype)| out(name, datatype)).collect(),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<oip::ModelInferRequest>,
    ) -> Result<Response<oip::ModelInferResponse>, Status> {
        let d = &self.0;
        let r = req.into_inner();
        let started = std::time::Instant::now();
        let inputs = request_inputs(&d.models, &r)?;
        let picked = d.models.pick(&r.model_name, Some(&r.model_version))?;
        let inputs = d.online.fill(picked.model.artifact.manifest().lookup.as_ref(), inputs).await?;
        let (model, scored) = crate::serving::infer_picked(picked, &d.log, inputs)?;
        Ok(Response::new(response(r, &model, scored, started)))
    }
}

/// Answers an OIP v2 gRPC inference request with what `models` serve, logging to `log`: the whole
/// call after transport, so tests and fuzz targets can drive it without a bus.
pub fn infer_message(
    models: &Models,
    log: &PredictionLog,
    r: oip::ModelInferRequest,
) -> Result<oip::ModelInferResponse, Status> {
    let started = std::time::Instant::now();
    let inputs = request_inputs(models, &r)?;
    let (model, scored) = crate::serving::infer(models, log, &r.model_name, Some(&r.model_version), inputs)?;
    Ok(response(r, &model, scored, started))
}

/// A request's named input columns.
fn request_inputs(models: &Models, r: &oip::ModelInferRequest) -> Result<Vec<(String, Column)>, Status> {
    if !r.raw_input_contents.is_empty() && r.raw_input_contents.len() != r.inputs.len() {
        return Err(Status::invalid_argument("raw_input_contents must have one entry per input"));
    }
    let mut shaped = Vec::with_capacity(r.inputs.len());
    for (i, t) in r.inputs.iter().enumerate() {
        let raw = r.raw_input_contents.get(i).map(|b| b.as_slice());
        let col = decode_tensor(t, raw).map_err(Status::invalid_argument)?;
        if !t.shape.is_empty() && t.shape.iter().all(|d| *d >= 0) && t.shape.iter().product::<i64>() != col.len() as i64
        {
            return Err(Status::invalid_argument(format!(
                "input `{}`: shape {:?} does not match its {} values",
                t.name,
                t.shape,
                col.len()
            )));
        }
        shaped.push((t.name.clone(), t.shape.clone(), col));
    }
    Ok(match crate::serving::matrix_columns(models, &r.model_name, &shaped) {
        Some(columns) => columns?,
        None => shaped.into_iter().map(|(name, _, col)| (name, col)).collect(),
    })
}

/// The response to `r`, answered by `model` with `scored`.
fn response(
    r: oip::ModelInferRequest,
    model: &crate::serving::Served,
    scored: crate::serving::Scored,
    started: std::time::Instant,
) -> oip::ModelInferResponse {
    use oip::model_infer_response::InferOutputTensor;
    let n = scored.scores.len() as i64;
    metrics::histogram!("mlops_inference_seconds", "protocol" => "grpc").record(started.elapsed().as_secs_f64());
    let tensor = |name: &str, datatype: &str, contents: Option<oip::InferTensorContents>| InferOutputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![n],
        parameters: HashMap::new(),
        contents,
    };
    let labels = (!scored.labels.is_empty()).then_some(scored.labels);
    // A client that sent raw inputs gets raw outputs, as Triton answers: its clients read
    // only `raw_output_contents` for numbers. Others get typed contents.
    let (outputs, raw_output_contents) = if r.raw_input_contents.is_empty() {
        let bytes = |v: Vec<String>| oip::InferTensorContents {
            bytes_contents: v.into_iter().map(String::into_bytes).collect(),
            ..Default::default()
        };
        let values = oip::InferTensorContents { fp64_contents: scored.scores, ..Default::default() };
        let outputs = std::iter::once(tensor(scored.scores_name, "FP64", Some(values)))
            .chain(labels.map(|l| tensor("label", "BYTES", Some(bytes(l)))))
            .chain([tensor("prediction_id", "BYTES", Some(bytes(scored.ids)))])
            .collect();
        (outputs, vec![])
    } else {
        let mut outputs = vec![tensor(scored.scores_name, "FP64", None)];
        let mut raw = vec![scored.scores.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()];
        if let Some(l) = labels {
            outputs.push(tensor("label", "BYTES", None));
            raw.push(raw_bytes(&l));
        }
        outputs.push(tensor("prediction_id", "BYTES", None));
        raw.push(raw_bytes(&scored.ids));
        (outputs, raw)
    };
    oip::ModelInferResponse {
        model_name: model.pipeline.clone(),
        model_version: model.version.to_string(),
        id: r.id,
        parameters: HashMap::new(),
        outputs,
        raw_output_contents,
    }
}

/// A BYTES tensor's raw form: each element as a 4-byte little-endian length, then its bytes.
fn raw_bytes(values: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.iter().map(|v| v.len() + 4).sum());
    for v in values {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decodes a gRPC input tensor from its typed contents or, when given, its raw little-endian bytes.
fn decode_tensor(t: &oip::model_infer_request::InferInputTensor, raw: Option<&[u8]>) -> Result<Column, String> {
    let name = &t.name;
    if let Some(raw) = raw {
        let fixed = |width: usize, f: &dyn Fn(&[u8]) -> f64| -> Result<Column, String> {
            if raw.len() % width != 0 {
                return Err(format!(
                    "input `{name}`: {} raw bytes are not a whole number of {} values",
                    raw.len(),
                    t.datatype
                ));
            }
            Ok(Column::Num(raw.chunks_exact(width).map(|c| Some(f(c))).collect()))
        };
        return match t.datatype.as_str() {
            "FP64" => fixed(8, &|c| f64::from_le_bytes(c.try_into().expect("chunk of 8"))),
            "FP32" => fixed(4, &|c| f64::from(f32::from_le_bytes(c.try_into().expect("chunk of 4")))),
            "INT64" => fixed(8, &|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")) as f64),
            "INT32" => fixed(4, &|c| f64::from(i32::from_le_bytes(c.try_into().expect("chunk of 4")))),
            "BOOL" => fixed(1, &|c| f64::from(u8::from(c[0] != 0))),
            "BYTES" => {
                let mut out = Vec::new();
                let mut rest = raw;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(format!("input `{name}`: truncated BYTES length prefix"));
                    }
                    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                    let body =
                        rest.get(4..4 + len).ok_or_else(|| format!("input `{name}`: truncated BYTES element"))?;
                    out.push(Some(
                        String::from_utf8(body.to_vec())
                            .map_err(|_| format!("input `{name}`: BYTES element is not UTF-8"))?,
                    ));
                    rest = &rest[4 + len..];
                }
                Ok(Column::Str(out))
            }
            other => Err(format!("input `{name}`: unsupported raw datatype {other:?}")),
        };
    }
    let c = t.contents.clone().unwrap_or_default();
    match t.datatype.as_str() {
        "FP64" => Ok(Column::Num(c.fp64_contents.into_iter().map(Some).collect())),
        "FP32" => Ok(Column::Num(c.fp32_contents.into_iter().map(|v| Some(f64::from(v))).collect())),
        "INT64" => Ok(Column::Num(c.int64_contents.into_iter().map(|v| Some(v as f64)).collect())),
        "INT32" | "INT16" | "INT8" => Ok(Column::Num(c.int_contents.into_iter().map(|v| Some(f64::from(v))).collect())),
        "BOOL" => Ok(Column::Num(c.bool_contents.into_iter().map(|v| Some(f64::from(u8::from(v)))).collect())),
        "BYTES" => c
            .bytes_contents
            .into_iter()
            .map(|b| String::from_utf8(b).map(Some).map_err(|_| format!("input `{name}`: BYTES element is not UTF-8")))
            .collect::<Result<_, _>>()
            .map(Column::Str),
        other => Err(format!("input `{name}`: unsupported datatype {other:?}")),
    }
}

/// The platform's deployer API.
pub struct DeployerApi(pub Arc<Deployer>);

/// A route as the API reports it.
fn deployment(route: &crate::serving::Route) -> pb::Deployment {
    let m = &route.stable;
    let load = |s: &std::sync::atomic::AtomicU64| s.load(std::sync::atomic::Ordering::Relaxed);
    let mut d = pb::Deployment {
        pipeline: m.pipeline.clone(),
        version: m.version,
        artifact_sha256: m.sha.to_string(),
        since_unix_ms: m.since_unix_ms,
        predictions: load(&m.predictions),
        ..Default::default()
    };
    if let Some(r) = &route.release {
        d.release_mode = r.mode.as_str().into();
        d.release_version = r.model.version;
        d.release_percent = r.percent;
        d.release_started_unix_ms = r.started_ms;
        d.release_predictions = load(&r.model.predictions);
    }
    d
}

impl DeployerApi {
    fn current(&self, pipeline: &str) -> Result<pb::Deployment, Status> {
        let route =
            self.0.models.route(pipeline).ok_or_else(|| DeployerError::NotServed { pipeline: pipeline.into() })?;
        Ok(deployment(&route))
    }
}

#[tonic::async_trait]
impl pb::deployer_server::Deployer for DeployerApi {
    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let p = req.into_inner().pipeline;
        let deployments = self
            .0
            .models
            .routes()
            .iter()
            .filter(|r| p.is_empty() || r.stable.pipeline == p)
            .map(|r| deployment(r))
            .collect();
        Ok(Response::new(pb::StatusResponse { deployments }))
    }

    async fn rollback(&self, req: Request<pb::RollbackRequest>) -> Result<Response<pb::Deployment>, Status> {
        self.0.admin.authorize(req.metadata(), "Rollback")?;
        let r = req.into_inner();
        let reason = if r.reason.is_empty() { "manual rollback".to_owned() } else { r.reason };
        self.0.rollback(&r.pipeline, &reason).await?;
        Ok(Response::new(self.current(&r.pipeline)?))
    }

    async fn deploy(&self, req: Request<pb::DeployRequest>) -> Result<Response<pb::Deployment>, Status> {
        self.0.admin.authorize(req.metadata(), "Deploy")?;
        let r = req.into_inner();
        self.0.deploy(&r.pipeline, r.version, &r.reason).await?;
        Ok(Response::new(self.current(&r.pipeline)?))
    }

    async fn set_traffic(&self, req: Request<pb::SetTrafficRequest>) -> Result<Response<pb::Deployment>, Status> {
        self.0.admin.authorize(req.metadata(), "SetTraffic")?;
        let r = req.into_inner();
        self.0.set_traffic(&r.pipeline, r.canary_percent, &r.reason).await?;
        Ok(Response::new(self.current(&r.pipeline)?))
    }

    async fn get_online_features(
        &self,
        req: Request<pb::OnlineFeaturesRequest>,
    ) -> Result<Response<pb::OnlineFeaturesResponse>, Status> {
        Ok(Response::new(crate::features_api::grpc_online_features(&self.0, req.into_inner()).await?))
    }
}
