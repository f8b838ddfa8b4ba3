//! The JetStream bus: connecting with retry, provisioning streams and buckets, typed publishing with
//! CloudEvents headers, and the durable pull-consumer loop with ack / nak-with-delay / term + DLQ.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer, kv, object_store, stream};
use async_nats::{HeaderMap, HeaderValue};
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::NatsArgs;
use crate::events::{Envelope, Event, EventContext, headers};

pub const EVENTS_STREAM: &str = "MLOPS_EVENTS";
pub const JOBS_STREAM: &str = "MLOPS_JOBS";
pub const PREDICTIONS_STREAM: &str = "MLOPS_PREDICTIONS";
pub const DLQ_STREAM: &str = "MLOPS_DLQ";
pub const DATASETS_BUCKET: &str = "datasets";
pub const MODELS_BUCKET: &str = "models";
/// Code bundles of training programs (`mlops_shared::bundle`), by sha256.
pub const CODE_BUCKET: &str = "code";
pub const PIPELINES_KV: &str = "pipelines";
pub const JOBS_KV: &str = "jobs";
pub const PROFILES_KV: &str = "profiles";
/// What each pipeline serves (`route.<pipeline>`: the stable model and any canary), watched by
/// every serving replica; and each replica's live canary figures (`stats.<pipeline>.<replica>`).
pub const DEPLOYMENTS_KV: &str = "deployments";
/// Feature views' specs, by name (`mlops-features`).
pub const FEATURE_VIEWS_KV: &str = "feature_views";
/// The offline feature store: every accepted batch of a view as a Parquet file
/// (`<view>/<written ms>-<dataset sha256>.parquet`).
pub const FEATURES_BUCKET: &str = "features";
/// Object store of batch jobs' outputs (Parquet, content-addressed).
pub const BATCHES_BUCKET: &str = "batches";
/// The prediction archive's files (`mlops-archive`): Parquet per pipeline and hour, and their
/// ids' bloom filters, by name.
pub const ARCHIVE_BUCKET: &str = "archive";
/// The prediction archive's manifest: flushes, partitions, and the audit of expired partitions.
pub const ARCHIVE_KV: &str = "archive";
/// The online feature store: the newest value per view and entity (`<view>.<key>`).
pub const ONLINE_FEATURES_KV: &str = "features_online";
/// Settings every process on one NATS must share: where blobs live
/// ([`crate::objects::agreement`]).
pub const PLATFORM_KV: &str = "platform";

/// Errors at the bus boundary.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("publish to {subject} failed: {source}")]
    Publish { subject: String, source: async_nats::Error },
    #[error("object store {bucket}: {message}")]
    Object { bucket: &'static str, message: String },
    #[error("key-value {bucket}: {message}")]
    Kv { bucket: &'static str, message: String },
}

/// A connection to NATS and JetStream on behalf of one service.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// The service's name, used as `ce-source` and in consumer names.
    pub service: String,
    /// Where blobs live when not in the NATS object store (`MLOPS_OBJECT_STORE`).
    pub object_store: Option<crate::objects::external::Location>,
}

impl Bus {
    /// Connects, retrying with exponential backoff until the server answers or `shutdown` fires,
    /// and checks the object store against the platform's ([`crate::objects::agreement`]).
    /// Once connected, the client reconnects by itself after a lost connection.
    pub async fn connect(args: &NatsArgs, service: &str, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let mut bus = Self::connect_unchecked(args, service, shutdown).await?;
        bus.agree_on_object_store(false).await?;
        Ok(bus)
    }

    /// [`Bus::connect`] without comparing the object store with the platform's: for the one
    /// command that changes the record.
    pub async fn connect_unchecked(
        args: &NatsArgs,
        service: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        // Said now, not after a minute of refused logins; the seed itself is never printed.
        if args.nkey.as_ref().is_some_and(|seed| !seed.starts_with("SU")) {
            anyhow::bail!("MLOPS_NATS_NKEY is not a user nkey seed (one starts with `SU`)");
        }
        let object_store = match args.object_store.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(setting) => {
                let location = crate::objects::external::Location::parse(setting)?;
                location.probe().await?;
                info!(location = %location, "blobs in an external object store");
                Some(location)
            }
        };
        let attempt = || async {
            let mut opts = async_nats::ConnectOptions::new()
                .name(service)
                .connection_timeout(Duration::from_secs(5))
                .max_reconnects(None::<usize>);
            if let Some(creds) = &args.creds {
                opts = opts
                    .credentials_file(creds)
                    .await
                    .with_context(|| format!("reading NATS credentials file {}", creds.display()))?;
            }
            if let (Some(user), Some(password)) = (&args.user, &args.password) {
                opts = opts.user_and_password(user.clone(), password.clone());
            }
            if let Some(token) = &args.token {
                opts = opts.token(token.clone());
            }
            if let Some(seed) = &args.nkey {
                opts = opts.nkey(seed.clone());
            }
            if let Some(ca) = &args.ca {
                opts = opts.add_root_certificates(ca.clone()).require_tls(true);
            }
            if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
                opts = opts.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
            }
            opts.connect(server_addrs(&args.url)?).await.map_err(anyhow::Error::from)
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(60);
        // A refused login will not be accepted on a later try: say so at once.
        let retryable = |e: &anyhow::Error| {
            !e.downcast_ref::<async_nats::ConnectError>()
                .is_some_and(|c| c.kind() == async_nats::ConnectErrorKind::AuthorizationViolation)
        };
        let client = tokio::select! {
            res = attempt
                .retry(backoff)
                .when(retryable)
                .notify(|err, after| warn!(error = %err, retry_in = ?after, "nats not reachable, retrying")) => {
                res.with_context(|| format!("connecting to NATS at {}", args.url))?
            }
            () = shutdown.cancelled() => anyhow::bail!("shut down while connecting to NATS"),
        };
        let info = client.server_info();
        info!(server = %info.server_name, version = %info.version, "connected to nats");
        if !server_version_at_least(&info.version, (2, 9)) {
            warn!(version = %info.version, "nats-server older than 2.9 is not supported");
        }
        let js = jetstream::new(client.clone());
        Ok(Self { client, js, service: service.to_owned(), object_store })
    }

    /// Creates the platform's streams and buckets if they are missing. Safe to call from every
    /// service at start-up, concurrently.
    pub async fn provision(&self, replicas: u8) -> anyhow::Result<()> {
        let replicas = usize::from(replicas);
        let day = Duration::from_secs(24 * 3600);
        let streams = [
            stream::Config {
                name: EVENTS_STREAM.into(),
                subjects: vec!["mlops.events.>".into()],
                retention: stream::RetentionPolicy::Limits,
                max_age: 7 * day,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            },
            stream::Config {
                name: JOBS_STREAM.into(),
                subjects: vec!["mlops.jobs.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window: Duration::from_secs(120),
                // One queued job per pipeline (jobs are `mlops.jobs.train.<pipeline>`): a newer job
                // replaces one still waiting, so a burst of new data makes one training, on the
                // newest data.
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::Old,
                ..Default::default()
            },
            stream::Config {
                name: PREDICTIONS_STREAM.into(),
                subjects: vec!["mlops.predictions.>".into()],
                retention: stream::RetentionPolicy::Limits,
                max_age: 3 * day,
                max_bytes: 1 << 30,
                ..Default::default()
            },
            stream::Config {
                name: DLQ_STREAM.into(),
                subjects: vec!["mlops.dlq.>".into()],
                retention: stream::RetentionPolicy::Limits,
                max_age: 30 * day,
                ..Default::default()
            },
        ];
        for config in streams {
            let name = config.name.clone();
            let config = stream::Config { storage: stream::StorageType::File, num_replicas: replicas, ..config };
            let existing = retry_create(|| async { self.js.get_or_create_stream(config.clone()).await })
                .await
                .with_context(|| format!("creating stream {name}"))?;
            // A stream made by an older version gets the settings it lacks. On a cluster a stream
            // just created may not answer for a moment ("stream not found" until its leader is
            // elected): retried like the creation.
            let current = retry_create(|| {
                let mut s = existing.clone();
                async move { s.info().await.map(|i| i.config.clone()) }
            })
            .await
            .with_context(|| format!("reading stream {name}"))?;
            // Zero and -1 both mean "no limit" (the server reports -1 for what was sent as 0).
            let per_subject = |n: i64| n.max(0);
            if per_subject(current.max_messages_per_subject) != per_subject(config.max_messages_per_subject)
                || current.discard != config.discard
            {
                retry_create(|| async { self.js.update_stream(config.clone()).await.map(drop) })
                    .await
                    .with_context(|| format!("updating stream {name}"))?;
            }
        }
        for bucket in [DATASETS_BUCKET, MODELS_BUCKET, CODE_BUCKET, FEATURES_BUCKET, BATCHES_BUCKET, ARCHIVE_BUCKET] {
            if self.js.get_object_store(bucket).await.is_err() {
                let config =
                    object_store::Config { bucket: bucket.into(), num_replicas: replicas, ..Default::default() };
                retry_create(|| async { self.js.create_object_store(config.clone()).await.map(drop) })
                    .await
                    .with_context(|| format!("creating object store {bucket}"))?;
            }
        }
        for bucket in [
            PIPELINES_KV,
            JOBS_KV,
            PROFILES_KV,
            DEPLOYMENTS_KV,
            FEATURE_VIEWS_KV,
            ONLINE_FEATURES_KV,
            ARCHIVE_KV,
            PLATFORM_KV,
        ] {
            // The KV stream is created directly, with the settings of the key-value spec (ADR-8):
            // async-nats's `create_key_value` first reads the account info, whose 2.9 form it
            // cannot parse, so it fails on Debian's nats-server.
            let config = stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                // The online store keeps only the newest value per entity.
                max_messages_per_subject: if bucket == ONLINE_FEATURES_KV { 1 } else { 5 },
                discard: stream::DiscardPolicy::New,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            };
            retry_create(|| async { self.js.get_or_create_stream(config.clone()).await.map(drop) })
                .await
                .with_context(|| format!("creating key-value bucket {bucket}"))?;
        }
        Ok(())
    }

    /// A key-value bucket created by [`Bus::provision`].
    pub async fn kv(&self, bucket: &'static str) -> Result<kv::Store, BusError> {
        self.js.get_key_value(bucket).await.map_err(|e| BusError::Kv { bucket, message: e.to_string() })
    }

    /// Publishes `event` to its subject with CloudEvents headers and `Nats-Msg-Id` = `id`, and
    /// waits for the stream's acknowledgement. A re-publish with the same id inside the duplicate
    /// window is dropped by the server and reported as `duplicate`.
    pub async fn publish<E: Event>(&self, id: &str, ctx: &EventContext, event: &E) -> Result<Published, BusError> {
        let subject = event.subject();
        let headers = self.headers::<E>(id, ctx, event.pipeline());
        let payload = event.encode_to_vec();
        self.publish_raw(subject, headers, payload.into()).await
    }

    /// Sends `event` like [`Bus::publish`] but returns without waiting for the stream's
    /// acknowledgement: await the returned future (later, many in flight at once) for it. For
    /// high-volume streams such as prediction logs, where one round trip per message would cap the
    /// rate.
    pub async fn publish_pipelined<E: Event>(
        &self,
        id: &str,
        ctx: &EventContext,
        event: &E,
    ) -> Result<async_nats::jetstream::context::PublishAckFuture, BusError> {
        let subject = event.subject();
        let headers = self.headers::<E>(id, ctx, event.pipeline());
        self.js
            .publish_with_headers(subject.clone(), headers, event.encode_to_vec().into())
            .await
            .map_err(|e| BusError::Publish { subject, source: e.into() })
    }

    async fn publish_raw(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<Published, BusError> {
        let started = Instant::now();
        let err = |source: async_nats::Error| BusError::Publish { subject: subject.clone(), source };
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(|e| err(e.into()))?
            .await
            .map_err(|e| err(e.into()))?;
        metrics::histogram!("mlops_publish_seconds", "service" => self.service.clone())
            .record(started.elapsed().as_secs_f64());
        debug!(%subject, seq = ack.sequence, duplicate = ack.duplicate, "published");
        Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
    }

    fn headers<E: Event>(&self, id: &str, ctx: &EventContext, pipeline: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::SPEC_VERSION, "1.0");
        h.insert(headers::ID, id);
        h.insert(async_nats::header::NATS_MESSAGE_ID, id);
        h.insert(headers::TYPE, E::CE_TYPE);
        h.insert(headers::SOURCE, format!("/mlops/{}", self.service).as_str());
        h.insert(headers::TIME, chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true).as_str());
        h.insert(headers::SUBJECT, pipeline);
        h.insert(headers::CONTENT_TYPE, headers::PROTOBUF);
        if !ctx.correlation_id.is_empty() {
            h.insert(headers::CORRELATION, ctx.correlation_id.as_str());
        }
        if !ctx.causation_id.is_empty() {
            h.insert(headers::CAUSATION, ctx.causation_id.as_str());
        }
        if let Some(traceparent) = crate::telemetry::current_traceparent() {
            h.insert(headers::TRACEPARENT, traceparent.as_str());
        }
        h
    }

    /// Runs a durable pull consumer until `shutdown` fires, handing each decoded event to
    /// `handler` one at a time. Success acks; [`HandlerError::Transient`] naks with a growing delay
    /// (until `max_deliver`); [`HandlerError::Permanent`] and undecodable payloads are terminated and
    /// copied to `mlops.dlq.<subject>` with the reason. While a handler runs, progress acks keep the
    /// message from being redelivered elsewhere; if this process dies, it is redelivered after
    /// `ack_wait`.
    pub async fn consume<E, H, Fut>(
        &self,
        spec: ConsumerSpec,
        shutdown: CancellationToken,
        handler: H,
    ) -> anyhow::Result<()>
    where
        E: Event,
        H: Fn(Envelope<E>) -> Fut,
        Fut: Future<Output = Result<(), HandlerError>>,
    {
        let consumer = self.consumer(&spec).await?;
        spec.announce_started().await;
        tokio::spawn(report_lag(consumer.clone(), self.service.clone(), spec.durable.clone(), shutdown.clone()));
        info!(durable = %spec.durable, filter = %spec.filter, "consuming");
        while !shutdown.is_cancelled() {
            if spec.one_at_a_time {
                // Pull a single message only when idle, so a busy worker never holds queued jobs
                // that an idle worker could take.
                let batch = consumer.batch().max_messages(1).expires(Duration::from_secs(5)).messages();
                let mut batch = tokio::select! {
                    b = batch => b,
                    () = shutdown.cancelled() => break,
                };
                match &mut batch {
                    Ok(batch) => loop {
                        let next = tokio::select! {
                            next = batch.next() => next,
                            () = shutdown.cancelled() => break,
                        };
                        match next {
                            Some(Ok(msg)) => self.handle_one(&spec, msg, &handler).await,
                            Some(Err(e)) => debug!(error = %e, durable = %spec.durable, "pull error"),
                            None => break,
                        }
                    },
                    Err(e) => {
                        warn!(error = %e, durable = %spec.durable, "cannot pull, retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = shutdown.cancelled() => break,
                        }
                    }
                }
                continue;
            }
            let Some(mut messages) = open_stream(&consumer, &spec, &shutdown).await else { break };
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    () = shutdown.cancelled() => break,
                };
                match next {
                    Some(Ok(msg)) => self.handle_one(&spec, msg, &handler).await,
                    Some(Err(e)) => {
                        // Missed heartbeats and the like: the stream of messages resumes by itself.
                        debug!(error = %e, durable = %spec.durable, "pull error");
                    }
                    None => break,
                }
            }
        }
        info!(durable = %spec.durable, "consumer stopped");
        Ok(())
    }

    /// Runs a durable pull consumer handing `handler` what has arrived in batches of up to
    /// `spec.batch` (gathered for at most [`BATCH_GATHER`]), so one durable write can cover
    /// hundreds of messages. When the handler returns `Ok(bad)`, the messages at the indexes in
    /// `bad` are dead-lettered with their reasons and every other one is acked: the handler's
    /// effect must be durable by then. A failure naks the whole batch (dead-lettered after
    /// `max_deliver`). Undecodable payloads never reach the handler: they are dead-lettered.
    pub async fn consume_batches<E, H, Fut>(
        &self,
        spec: ConsumerSpec,
        shutdown: CancellationToken,
        handler: H,
    ) -> anyhow::Result<()>
    where
        E: Event,
        H: Fn(Vec<Envelope<E>>) -> Fut,
        Fut: Future<Output = Result<Vec<(usize, String)>, HandlerError>>,
    {
        let consumer = self.consumer(&spec).await?;
        spec.announce_started().await;
        tokio::spawn(report_lag(consumer.clone(), self.service.clone(), spec.durable.clone(), shutdown.clone()));
        info!(durable = %spec.durable, filter = %spec.filter, "consuming in batches");
        while !shutdown.is_cancelled() {
            let Some(mut messages) = open_stream(&consumer, &spec, &shutdown).await else { break };
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    () = shutdown.cancelled() => break,
                };
                let first = match next {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        debug!(error = %e, durable = %spec.durable, "pull error");
                        continue;
                    }
                    None => break,
                };
                let mut batch = vec![first];
                let gather_until = tokio::time::Instant::now() + BATCH_GATHER;
                while batch.len() < spec.batch {
                    match tokio::time::timeout_at(gather_until, messages.next()).await {
                        Ok(Some(Ok(msg))) => batch.push(msg),
                        Ok(Some(Err(e))) => debug!(error = %e, durable = %spec.durable, "pull error"),
                        Ok(None) | Err(_) => break,
                    }
                }
                self.handle_batch(&spec, batch, &handler).await;
            }
        }
        info!(durable = %spec.durable, "consumer stopped");
        Ok(())
    }

    async fn handle_batch<E, H, Fut>(&self, spec: &ConsumerSpec, batch: Vec<jetstream::Message>, handler: &H)
    where
        E: Event,
        H: Fn(Vec<Envelope<E>>) -> Fut,
        Fut: Future<Output = Result<Vec<(usize, String)>, HandlerError>>,
    {
        let started = Instant::now();
        let labels = [("service", self.service.clone()), ("subject", E::SUBJECT_PREFIX.to_owned())];
        let mut kept = Vec::with_capacity(batch.len());
        let mut envelopes = Vec::with_capacity(batch.len());
        for msg in batch {
            let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(HeaderValue::to_string);
            let info = msg.info().ok();
            let id = header(headers::ID).unwrap_or_else(|| {
                info.as_ref().map(|i| format!("{}-{}", i.stream, i.stream_sequence)).unwrap_or_default()
            });
            let json = header(headers::CONTENT_TYPE).is_some_and(|ct| ct.starts_with(headers::JSON));
            match decode_typed::<E>(&msg.payload, json, header(headers::TYPE).as_deref()) {
                Ok(payload) => {
                    envelopes.push(Envelope {
                        id,
                        subject: msg.subject.to_string(),
                        delivered: info.as_ref().map_or(1, |i| i.delivered.max(1) as u64),
                        published_ms: info
                            .as_ref()
                            .map_or(0, |i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64),
                        context: EventContext {
                            correlation_id: header(headers::CORRELATION).unwrap_or_default(),
                            causation_id: header(headers::CAUSATION).unwrap_or_default(),
                        },
                        payload,
                    });
                    kept.push((msg, id_of(&envelopes)));
                }
                Err(reason) => self.give_up(E::SUBJECT_PREFIX, &msg, &id, &reason).await,
            }
        }
        if envelopes.is_empty() {
            return;
        }
        let delivered = envelopes.iter().map(|e| e.delivered).max().unwrap_or(1);
        match handler(envelopes).await {
            Ok(bad) => {
                for (i, (msg, id)) in kept.iter().enumerate() {
                    match bad.iter().find(|(b, _)| *b == i) {
                        Some((_, reason)) => self.give_up(E::SUBJECT_PREFIX, msg, id, reason).await,
                        None => {
                            if let Err(e) = msg.ack().await {
                                warn!(error = %e, "acknowledgement failed; the message will be redelivered");
                            }
                        }
                    }
                }
                metrics::counter!("mlops_events_handled_total", &labels).increment((kept.len() - bad.len()) as u64);
            }
            Err(e) if (delivered as i64) < spec.max_deliver || spec.max_deliver < 0 => {
                let delay = match e {
                    HandlerError::Later(d) => d,
                    _ => retry_delay(delivered),
                };
                warn!(error = %e, messages = kept.len(), retry_in = ?delay, "batch failed, will retry");
                metrics::counter!("mlops_events_failed_total", "service" => self.service.clone(), "subject" => E::SUBJECT_PREFIX, "outcome" => "retry").increment(kept.len() as u64);
                for (msg, _) in &kept {
                    let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                }
            }
            Err(e) => {
                let reason = format!("gave up after {delivered} attempts: {e}");
                for (msg, id) in &kept {
                    self.give_up(E::SUBJECT_PREFIX, msg, id, &reason).await;
                }
            }
        }
        metrics::histogram!("mlops_handler_seconds", &labels).record(started.elapsed().as_secs_f64());
    }

    /// Dead-letters `msg` with `reason` and terminates it (or leaves it to come back when the
    /// copy could not be made).
    async fn give_up(&self, prefix: &'static str, msg: &jetstream::Message, id: &str, reason: &str) {
        error!(%reason, subject = %msg.subject, "event dead-lettered");
        metrics::counter!("mlops_events_failed_total", "service" => self.service.clone(), "subject" => prefix, "outcome" => "dead_letter").increment(1);
        if let Err(e) = self.dead_letter(msg, id, reason).await {
            error!(error = %e, "dead-letter copy failed, message will be redelivered");
            return;
        }
        if let Err(e) = msg.ack_with(AckKind::Term).await {
            warn!(error = %e, "acknowledgement failed; the message will be redelivered");
        }
    }

    async fn consumer(&self, spec: &ConsumerSpec) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
        let stream = retry_create(|| async { self.js.get_stream(spec.stream).await })
            .await
            .with_context(|| format!("stream {}", spec.stream))?;
        let config = consumer::pull::Config {
            durable_name: Some(spec.durable.clone()),
            filter_subject: spec.filter.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_deliver: spec.max_deliver,
            max_ack_pending: spec.max_ack_pending,
            deliver_policy: spec.deliver_policy,
            ..Default::default()
        };
        retry_create(|| async { stream.get_or_create_consumer(&spec.durable, config.clone()).await })
            .await
            .with_context(|| format!("consumer {} on {}", spec.durable, spec.stream))
    }

    async fn handle_one<E, H, Fut>(&self, spec: &ConsumerSpec, msg: jetstream::Message, handler: &H)
    where
        E: Event,
        H: Fn(Envelope<E>) -> Fut,
        Fut: Future<Output = Result<(), HandlerError>>,
    {
        let started = Instant::now();
        let subject = msg.subject.to_string();
        let delivered = msg.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(HeaderValue::to_string);
        let id = header(headers::ID)
            .unwrap_or_else(|| msg.info().map(|i| format!("{}-{}", i.stream, i.stream_sequence)).unwrap_or_default());
        let span = info_span!("handle", service = %self.service, %subject, event_id = %id, delivered);
        if let Some(tp) = header(headers::TRACEPARENT) {
            crate::telemetry::set_parent(&span, &tp);
        }
        let context = EventContext {
            correlation_id: header(headers::CORRELATION).unwrap_or_default(),
            causation_id: header(headers::CAUSATION).unwrap_or_default(),
        };
        let json = header(headers::CONTENT_TYPE).is_some_and(|ct| ct.starts_with(headers::JSON));
        let labels = [("service", self.service.clone()), ("subject", E::SUBJECT_PREFIX.to_owned())];

        let outcome = async {
            let decoded = decode_typed::<E>(&msg.payload, json, header(headers::TYPE).as_deref());
            match decoded {
                Err(reason) => Err(HandlerError::Permanent(reason)),
                Ok(payload) => {
                    let published_ms =
                        msg.info().map_or(0, |i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64);
                    let envelope = Envelope {
                        id: id.clone(),
                        subject: subject.clone(),
                        delivered,
                        published_ms,
                        context,
                        payload,
                    };
                    with_progress(&msg, spec.ack_wait, handler(envelope)).await
                }
            }
        }
        .instrument(span.clone())
        .await;

        let _enter = span.enter();
        let result = match outcome {
            Ok(()) => {
                metrics::counter!("mlops_events_handled_total", &labels).increment(1);
                msg.ack().await
            }
            Err(HandlerError::Later(delay)) if (delivered as i64) < spec.max_deliver || spec.max_deliver < 0 => {
                debug!(retry_in = ?delay, "handler deferred the event");
                msg.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(HandlerError::Transient(e)) if (delivered as i64) < spec.max_deliver || spec.max_deliver < 0 => {
                let delay = retry_delay(delivered);
                warn!(error = format!("{e:#}"), retry_in = ?delay, "handler failed, will retry");
                metrics::counter!("mlops_events_failed_total", "service" => self.service.clone(), "subject" => E::SUBJECT_PREFIX, "outcome" => "retry").increment(1);
                msg.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(failure) => {
                let reason = match failure {
                    HandlerError::Permanent(reason) => reason,
                    HandlerError::Transient(e) => format!("gave up after {delivered} attempts: {e:#}"),
                    HandlerError::Later(_) => format!("still deferred after {delivered} deliveries"),
                };
                error!(%reason, "event dead-lettered");
                metrics::counter!("mlops_events_failed_total", "service" => self.service.clone(), "subject" => E::SUBJECT_PREFIX, "outcome" => "dead_letter").increment(1);
                if let Err(e) = self.dead_letter(&msg, &id, &reason).await {
                    // Leave it unacked: it comes back, and the copy is tried again.
                    error!(error = %e, "dead-letter copy failed, message will be redelivered");
                    return;
                }
                msg.ack_with(AckKind::Term).await
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "acknowledgement failed; the message will be redelivered");
        }
        metrics::histogram!("mlops_handler_seconds", &labels).record(started.elapsed().as_secs_f64());
    }

    async fn dead_letter(&self, msg: &jetstream::Message, id: &str, reason: &str) -> Result<Published, BusError> {
        let mut h = msg.headers.clone().unwrap_or_default();
        h.insert(headers::DLQ_REASON, reason.replace(['\r', '\n'], " ").as_str());
        h.insert(headers::DLQ_SERVICE, self.service.as_str());
        h.insert(async_nats::header::NATS_MESSAGE_ID, format!("dlq-{}-{id}", self.service).as_str());
        self.publish_raw(format!("mlops.dlq.{}", msg.subject), h, msg.payload.clone()).await
    }
}

/// What a publish returned.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub sequence: u64,
    /// The server already had a message with this id inside its duplicate window.
    pub duplicate: bool,
}

/// How a handler failed, which decides between retry and dead letter.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later (a dependency is down, a race with another service).
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// The input is bad; retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Not yet: deliver the event again after this long (a debounce window, a cooldown).
    #[error("deferred for {0:?}")]
    Later(Duration),
}

impl HandlerError {
    /// A permanent failure with a reason.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent(reason.into())
    }
}

/// Work handed to the blocking pool that did not come back with its result.
#[derive(Debug, thiserror::Error)]
pub enum Interrupted {
    /// It panicked: the same input would panic again.
    #[error("the computation panicked: {0}")]
    Panicked(String),
    /// The runtime is stopping.
    #[error("the computation was cancelled: {0}")]
    Cancelled(String),
}

impl From<Interrupted> for HandlerError {
    fn from(e: Interrupted) -> Self {
        match e {
            Interrupted::Panicked(_) => Self::permanent(e.to_string()),
            Interrupted::Cancelled(_) => Self::Transient(e.into()),
        }
    }
}

/// Runs `work` (parsing, predicting, scoring, a database commit: anything that computes or waits
/// on the disk for more than a moment) on the blocking pool, so that the runtime's threads keep
/// serving health checks, heartbeats and other messages meanwhile.
pub async fn off_runtime<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Interrupted> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(Interrupted::Panicked(e.to_string()).into()),
        Err(e) => Err(Interrupted::Cancelled(e.to_string()).into()),
    }
}

impl From<anyhow::Error> for HandlerError {
    fn from(e: anyhow::Error) -> Self {
        Self::Transient(e)
    }
}

impl From<BusError> for HandlerError {
    fn from(e: BusError) -> Self {
        Self::Transient(e.into())
    }
}

/// A durable pull consumer's settings.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: &'static str,
    pub durable: String,
    pub filter: String,
    pub ack_wait: Duration,
    /// Attempts before a message is dead-lettered.
    pub max_deliver: i64,
    pub max_ack_pending: i64,
    pub deliver_policy: consumer::DeliverPolicy,
    /// Messages requested per pull when streaming.
    pub batch: usize,
    /// Pull one message at a time, only when idle (work queues of long jobs).
    pub one_at_a_time: bool,
    /// Told the durable name once the consumer is in place on the server and about to pull: what
    /// a service's readiness waits for ([`crate::service::Service`] sets it).
    pub started: Option<tokio::sync::mpsc::Sender<String>>,
}

impl ConsumerSpec {
    /// A consumer on `MLOPS_EVENTS` for one kind of event, all pipelines.
    pub fn events<E: Event>(durable: impl Into<String>) -> Self {
        Self::on::<E>(EVENTS_STREAM, durable)
    }

    /// A consumer on `stream` for one kind of event, all pipelines.
    pub fn on<E: Event>(stream: &'static str, durable: impl Into<String>) -> Self {
        Self {
            stream,
            durable: durable.into(),
            filter: format!("{}.>", E::SUBJECT_PREFIX),
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            max_ack_pending: 1000,
            deliver_policy: consumer::DeliverPolicy::All,
            batch: 20,
            one_at_a_time: false,
            started: None,
        }
    }

    async fn announce_started(&self) {
        if let Some(started) = &self.started {
            // Nobody listening any more (the service is stopping) is not this consumer's concern.
            let _ = started.send(self.durable.clone()).await;
        }
    }
}

/// The consumer's stream of messages, retried every second while the server refuses it; `None`
/// once `shutdown` fires.
async fn open_stream(
    consumer: &consumer::Consumer<consumer::pull::Config>,
    spec: &ConsumerSpec,
    shutdown: &CancellationToken,
) -> Option<consumer::pull::Stream> {
    loop {
        match consumer.stream().max_messages_per_batch(spec.batch).messages().await {
            Ok(m) => return Some(m),
            Err(e) => {
                warn!(error = %e, durable = %spec.durable, "cannot pull, retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// Exports a consumer's queue depth every few seconds until `shutdown`: messages not yet
/// delivered (`mlops_consumer_pending`) and delivered but not acknowledged
/// (`mlops_consumer_ack_pending`), by service and durable name.
async fn report_lag(
    consumer: consumer::Consumer<consumer::pull::Config>,
    service: String,
    durable: String,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match consumer.get_info().await {
            Ok(info) => {
                let labels = [("service", service.clone()), ("durable", durable.clone())];
                metrics::gauge!("mlops_consumer_pending", &labels).set(info.num_pending as f64);
                metrics::gauge!("mlops_consumer_ack_pending", &labels).set(info.num_ack_pending as f64);
            }
            Err(e) => debug!(error = %e, %durable, "consumer info unavailable"),
        }
    }
}

fn id_of<E>(envelopes: &[Envelope<E>]) -> String {
    envelopes.last().map(|e| e.id.clone()).unwrap_or_default()
}

/// How long a batch waits for more messages once its first has arrived.
pub const BATCH_GATHER: Duration = Duration::from_millis(20);

/// Decodes an event payload — protobuf, or proto3 JSON when `json` (for the events outside systems
/// publish) — and checks it; the error says what is wrong.
pub fn decode<E: Event>(payload: &[u8], json: bool) -> Result<E, String> {
    decode_typed(payload, json, None)
}

/// [`decode`], for a message of CloudEvents type `ce_type` (its `ce-type` header).
pub fn decode_typed<E: Event>(payload: &[u8], json: bool, ce_type: Option<&str>) -> Result<E, String> {
    let event = if json {
        E::from_json(payload)
            .unwrap_or_else(|| Err(format!("{} is accepted as protobuf only, not JSON", E::CE_TYPE)))?
    } else {
        E::from_protobuf(ce_type, payload)
            .map_err(|e| format!("payload is not a valid {} protobuf: {e}", ce_type.unwrap_or(E::CE_TYPE)))?
    };
    event.check()?;
    Ok(event)
}

/// Runs `work`, sending an in-progress ack every third of `ack_wait` so the server does not hand
/// the message to another consumer while this one is still busy with it.
async fn with_progress<T>(msg: &jetstream::Message, ack_wait: Duration, work: impl Future<Output = T>) -> T {
    let mut beat = tokio::time::interval(ack_wait / 3);
    beat.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = beat.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    warn!(error = %e, "progress ack failed");
                }
            }
        }
    }
}

/// Delay before the next attempt: 250 ms doubling per attempt, at most 30 s.
fn retry_delay(delivered: u64) -> Duration {
    let exp = delivered.saturating_sub(1).min(7) as u32;
    Duration::from_millis(250 * 2u64.pow(exp)).min(Duration::from_secs(30))
}

/// How requests made while services start beside one another are retried: about 12 s in all.
pub(crate) const STARTUP_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_max_delay(Duration::from_secs(2))
    .with_max_times(10);

async fn retry_create<T, E, F, Fut>(f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    f.retry(STARTUP_BACKOFF)
        .notify(|e, after| warn!(error = %e, retry_in = ?after, "jetstream request failed, retrying"))
        .await
}

/// The servers of a comma-separated URL list (`nats://a:4222,nats://b:4222`), each checked, so a
/// client can start from any node of a cluster.
pub fn server_addrs(urls: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse::<async_nats::ServerAddr>().with_context(|| format!("bad NATS server URL {u:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!addrs.is_empty(), "no NATS server URL given");
    Ok(addrs)
}

/// Whether a server version string such as `2.9.10` is at least `major.minor`.
pub fn server_version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_list_names_every_server_and_a_bad_one_is_refused() {
        let addrs = server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,127.0.0.1:4224").unwrap();
        let ports: Vec<u16> = addrs.iter().map(async_nats::ServerAddr::port).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        let bad = server_addrs("nats://127.0.0.1:4222,http://[::1").unwrap_err();
        assert!(format!("{bad:#}").contains("http://[::1"), "{bad:#}");
        assert!(server_addrs(" , ").is_err());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(server_version_at_least("2.9.10", (2, 9)));
        assert!(server_version_at_least("2.10.0", (2, 9)));
        assert!(!server_version_at_least("2.8.4", (2, 9)));
        assert!(server_version_at_least("v2.11.0-beta", (2, 10)));
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(250));
        assert_eq!(retry_delay(2), Duration::from_millis(500));
        assert_eq!(retry_delay(50), Duration::from_secs(30));
    }
}
