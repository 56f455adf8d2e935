//! Prometheus metrics: what `/metrics` on the metrics listener exports (the names are listed in
//! README, "Metrics"). Every label has a small, fixed set of values — route names, ECR action
//! names, methods, status codes — never a raw path or a user-chosen string, except the
//! repository label of the storage gauge, which is capped ([`STORAGE_TOP`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    TextEncoder,
};

use crate::route::{self, Route};
use crate::service::Registry;

/// Repositories exported by the storage gauge at most (the largest).
pub const STORAGE_TOP: usize = 1000;
/// How long a storage reading is reused before the store is asked again.
const STORAGE_TTL: Duration = Duration::from_secs(30);

/// Latency buckets, seconds: sub-millisecond manifest HEADs to multi-minute layer uploads.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Registers `metric` in `registry` and hands it back.
fn registered<C>(registry: &prometheus::Registry, metric: C) -> Result<C, prometheus::Error>
where
    C: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The metrics of one registry, in their own Prometheus registry (so several registries in
/// one process, as in tests, never collide).
#[derive(Debug)]
pub struct Metrics {
    registry: prometheus::Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    pub(crate) uploads_in_flight: IntGauge,
    pub(crate) gc_runs: IntCounterVec,
    pub(crate) gc_links: IntCounter,
    pub(crate) gc_blobs: IntCounter,
    pub(crate) gc_bytes: IntCounter,
    pub(crate) gc_uploads: IntCounter,
    pub(crate) lifecycle_runs: IntCounter,
    pub(crate) lifecycle_expired: IntCounter,
    pub(crate) scans: IntCounterVec,
    pub(crate) scans_running: IntGauge,
    pub(crate) audit_events: IntCounter,
    pub(crate) audit_dropped: IntCounter,
    storage_registry: IntGauge,
    storage_repositories: IntGauge,
    storage_by_repository: IntGaugeVec,
    /// When the storage gauges were last read from the store (one reader at a time).
    storage_read: tokio::sync::Mutex<Option<Instant>>,
}

impl Metrics {
    /// Defines and registers every metric (and, on Linux, the process collector).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let request_labels = &["route", "action", "method", "status"];
        let requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new("berth_http_requests_total", "HTTP requests answered"),
                request_labels,
            )?,
        )?;
        let latency = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "berth_http_request_duration_seconds",
                    "Time from a request's arrival to its response head",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                request_labels,
            )?,
        )?;
        let received = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "berth_http_request_body_bytes_total",
                    "Request body bytes received",
                ),
                &["route"],
            )?,
        )?;
        let sent = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "berth_http_response_body_bytes_total",
                    "Response body bytes sent",
                ),
                &["route"],
            )?,
        )?;
        let uploads_in_flight = registered(
            &registry,
            IntGauge::new(
                "berth_uploads_in_flight",
                "Requests streaming blob data in right now (OCI POST/PATCH/PUT uploads, ECR UploadLayerPart)",
            )?,
        )?;
        let gc_runs = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "berth_gc_runs_total",
                    "Garbage collections run (not dry runs), by result",
                ),
                &["result"],
            )?,
        )?;
        let gc_links = registered(
            &registry,
            IntCounter::new(
                "berth_gc_links_removed_total",
                "Repository links to unused blobs removed by garbage collection",
            )?,
        )?;
        let gc_blobs = registered(
            &registry,
            IntCounter::new(
                "berth_gc_blobs_removed_total",
                "Blobs removed from storage by garbage collection",
            )?,
        )?;
        let gc_bytes = registered(
            &registry,
            IntCounter::new(
                "berth_gc_bytes_reclaimed_total",
                "Bytes freed in blob storage by garbage collection",
            )?,
        )?;
        let gc_uploads = registered(
            &registry,
            IntCounter::new(
                "berth_gc_uploads_removed_total",
                "Abandoned upload sessions discarded by garbage collection",
            )?,
        )?;
        let lifecycle_runs = registered(
            &registry,
            IntCounter::new(
                "berth_lifecycle_runs_total",
                "Lifecycle policy runs of a repository (scheduled or on demand)",
            )?,
        )?;
        let lifecycle_expired = registered(
            &registry,
            IntCounter::new(
                "berth_lifecycle_images_expired_total",
                "Images expired by lifecycle policies",
            )?,
        )?;
        let scans = registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "berth_image_scans_total",
                    "Image scans finished, by status (COMPLETE, FAILED, UNSUPPORTED_IMAGE)",
                ),
                &["status"],
            )?,
        )?;
        let scans_running = registered(
            &registry,
            IntGauge::new("berth_image_scans_running", "Image scans running right now")?,
        )?;
        let audit_events = registered(
            &registry,
            IntCounter::new(
                "berth_audit_events_total",
                "Audit events handed to the audit log writer",
            )?,
        )?;
        let audit_dropped = registered(
            &registry,
            IntCounter::new(
                "berth_audit_events_dropped_total",
                "Audit events dropped because the writer's queue was full or the writer had stopped",
            )?,
        )?;
        let storage_registry = registered(
            &registry,
            IntGauge::new(
                "berth_storage_bytes",
                "Bytes of every blob recorded in the registry, each counted once",
            )?,
        )?;
        let storage_repositories = registered(
            &registry,
            IntGauge::new("berth_repositories", "Repositories in the registry")?,
        )?;
        let storage_by_repository = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "berth_repository_storage_bytes",
                    "Bytes a repository holds (linked blobs and manifests); the 1000 largest repositories",
                ),
                &["repository"],
            )?,
        )?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            received,
            sent,
            uploads_in_flight,
            gc_runs,
            gc_links,
            gc_blobs,
            gc_bytes,
            gc_uploads,
            lifecycle_runs,
            lifecycle_expired,
            scans,
            scans_running,
            audit_events,
            audit_dropped,
            storage_registry,
            storage_repositories,
            storage_by_repository,
            storage_read: tokio::sync::Mutex::new(None),
        })
    }

    /// Counts one answered request.
    pub(crate) fn observe_request(&self, labels: &RequestLabels, status: u16, elapsed: Duration) {
        let status = status_label(status);
        let values = [labels.route, labels.action, labels.method, status];
        self.requests.with_label_values(&values).inc();
        self.latency
            .with_label_values(&values)
            .observe(elapsed.as_secs_f64());
    }

    /// The counter of request body bytes of a route.
    pub(crate) fn received(&self, route: &'static str) -> IntCounter {
        self.received.with_label_values(&[route])
    }

    /// The counter of response body bytes of a route.
    pub(crate) fn sent(&self, route: &'static str) -> IntCounter {
        self.sent.with_label_values(&[route])
    }

    /// Refreshes the storage gauges from the metadata store when the last reading is older
    /// than [`STORAGE_TTL`] (a failure is logged and keeps the previous values).
    async fn refresh_storage(&self, reg: &Registry) {
        let mut last = self.storage_read.lock().await;
        if last.is_some_and(|t| t.elapsed() < STORAGE_TTL) {
            return;
        }
        match reg.meta().storage_usage(STORAGE_TOP).await {
            Ok(u) => {
                self.storage_registry.set(gauge(u.registry));
                self.storage_repositories.set(gauge(u.repositories));
                self.storage_by_repository.reset();
                for (name, bytes) in &u.largest {
                    self.storage_by_repository
                        .with_label_values(&[name.as_str()])
                        .set(gauge(*bytes));
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading storage usage for metrics failed"),
        }
        *last = Some(Instant::now());
    }

    /// The text exposition of every metric.
    fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Status codes as labels: the usual ones by value (static strings), anything else `other`.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        304 => "304",
        307 => "307",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        416 => "416",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// The bounded labels of a request, decided from its method, path and (ECR) target header
/// before it is handled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLabels {
    /// `base`, `catalog`, `tags`, `manifest`, `blob`, `upload_start`, `upload`, `referrers`,
    /// `ecr`, `healthz`, `readyz` or `other`.
    pub(crate) route: &'static str,
    /// The ECR action (for `/v2/` routes, the one ECR maps the request to); empty when none.
    pub(crate) action: &'static str,
    /// The HTTP method (`other` for extension methods).
    pub(crate) method: &'static str,
    /// Whether the request streams blob data in (counted by `berth_uploads_in_flight`).
    pub(crate) upload: bool,
}

impl RequestLabels {
    pub(crate) fn of(method: &Method, path: &str, headers: &HeaderMap) -> RequestLabels {
        let m = method_label(method);
        let (route, action) = match path {
            "/" if method == Method::POST => ("ecr", crate::ecr::known_action(headers)),
            "/v2" | "/v2/" => ("base", ""),
            "/healthz" => ("healthz", ""),
            "/readyz" => ("readyz", ""),
            p => match p.strip_prefix("/v2/").and_then(route::parse_v2) {
                Some(r) => (
                    route_label(&r),
                    crate::http::action_of(&r, method)
                        .strip_prefix("ecr:")
                        .unwrap_or_default(),
                ),
                None => ("other", ""),
            },
        };
        let upload = match route {
            "upload_start" => method == Method::POST,
            "upload" => method == Method::PATCH || method == Method::PUT,
            "ecr" => action == "UploadLayerPart",
            _ => false,
        };
        RequestLabels {
            route,
            action,
            method: m,
            upload,
        }
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route label of a `/v2/` route.
pub(crate) fn route_label(r: &Route<'_>) -> &'static str {
    match r {
        Route::Catalog => "catalog",
        Route::Tags(_) => "tags",
        Route::Manifest(..) => "manifest",
        Route::Blob(..) => "blob",
        Route::UploadStart(_) => "upload_start",
        Route::Upload(..) => "upload",
        Route::Referrers(..) => "referrers",
    }
}

/// Holds `berth_uploads_in_flight` up while a request streams blob data.
#[derive(Debug)]
pub(crate) struct InFlight(Option<IntGauge>);

impl InFlight {
    pub(crate) fn start(gauge: Option<&IntGauge>) -> InFlight {
        if let Some(g) = gauge {
            g.inc();
        }
        InFlight(gauge.cloned())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// A body that counts the bytes of its data frames as they pass (nothing is buffered); its
/// size hint and end are the inner body's, so `Content-Length` handling is unchanged.
pub(crate) struct Counted {
    inner: Body,
    counter: IntCounter,
}

impl Counted {
    pub(crate) fn wrap(inner: Body, counter: IntCounter) -> Body {
        Body::new(Counted { inner, counter })
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The metrics listener's application: `GET /metrics` (Prometheus text format), `/healthz`
/// and `/readyz`. It is meant for a loopback or internal address: it needs no credentials.
pub fn metrics_router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::http::readyz))
        .with_state(registry)
}

async fn metrics(State(reg): State<Registry>) -> Response {
    let Some(m) = reg.metrics() else {
        return (StatusCode::NOT_FOUND, "metrics are unavailable\n").into_response();
    };
    m.refresh_storage(&reg).await;
    match m.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_defined_and_labels_are_bounded() {
        let m = Metrics::new();
        assert!(m.is_ok(), "{m:?}");
        let h = HeaderMap::new();
        let l = RequestLabels::of(&Method::PUT, "/v2/a/b/manifests/v1", &h);
        assert_eq!(
            (l.route, l.action, l.method),
            ("manifest", "PutImage", "PUT")
        );
        let l = RequestLabels::of(&Method::PATCH, "/v2/a/blobs/uploads/x", &h);
        assert_eq!(
            (l.route, l.action, l.upload),
            ("upload", "UploadLayerPart", true)
        );
        let l = RequestLabels::of(&Method::GET, "/v2/../../etc/passwd", &h);
        assert_eq!(l.route, "other");
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.NoSuchThing"
                .parse()
                .unwrap_or_else(|_| axum::http::HeaderValue::from_static("")),
        );
        let l = RequestLabels::of(&Method::POST, "/", &h);
        assert_eq!((l.route, l.action), ("ecr", "unknown"));
    }
}
