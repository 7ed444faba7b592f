//! Around every request, in one layer: cut it at `--request-timeout` (body upload included),
//! turn a panic into a 500, and count it in `limen_http_requests_total` and
//! `limen_http_request_duration_seconds` by route template.
//!
//! Each route's handlers are wrapped in the route's layer (`Handler::layer`), so the route's
//! template is known without looking it up (axum's `MatchedPath` would cost an extensions map per
//! request) and axum boxes the route once, not once more for a router-wide layer.
//!
//! One hand-written tower layer instead of `axum::middleware::from_fn` plus tower-http's
//! `CatchPanic` and a `tokio::time::timeout` per request: replacing those (with route metric
//! series resolved once and the state in one `Arc`) cut ~5,400 instructions per request
//! (callgrind, `benches/guard.sh`; BENCHMARKS.md lists the steps), more than scoring costs. Here nothing is boxed
//! per request, the route's metric series are resolved once, and the deadline timer comes from a
//! per-thread pool: a timer taken back from the pool is already in tokio's timer wheel with an
//! earlier deadline, and moving a deadline later is one atomic update, where registering and
//! cancelling a fresh timer takes the wheel's lock twice. A request that completes in its first
//! poll (most GETs) never touches a timer.

use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::time::Sleep;
use tower::{Layer, Service};

use super::auth::Tokens;
use super::error::{ApiError, ErrorKind};
use crate::telemetry::{method_index, Metrics, RouteMetrics};

/// The label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Timers kept per worker thread for reuse (beyond that, finished requests drop theirs).
const POOLED_TIMERS: usize = 256;

/// Makes the [`Layer`] of each route (see the module docs).
pub struct Track {
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl Track {
    /// Requests will be cut at `timeout` and counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>, timeout: Duration) -> Self {
        Self { metrics, timeout }
    }

    /// The layer of the route whose template is `route` (or [`UNMATCHED`]): each of the route's
    /// handlers gets it (`handler.layer(…)`), its 405 fallback too. With `auth`, a request
    /// without one of its tokens is answered 401 (and counted) before the handler runs.
    pub fn route(&self, route: &str, auth: Option<Arc<Tokens>>) -> RouteLayer {
        RouteLayer {
            shared: Arc::new(Shared {
                timeout: self.timeout,
                metrics: self.metrics.route(route),
                auth,
            }),
        }
    }
}

/// The [`Layer`] of one route.
#[derive(Clone)]
pub struct RouteLayer {
    shared: Arc<Shared>,
}

struct Shared {
    timeout: Duration,
    metrics: RouteMetrics,
    auth: Option<Arc<Tokens>>,
}

impl<S> Layer<S> for RouteLayer {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A service wrapped by [`RouteLayer`].
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for Tracked<S>
where
    S: Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Tracking<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_index(req.method().as_str());
        let refused = self
            .shared
            .auth
            .as_ref()
            .and_then(|tokens| tokens.check(req.headers()).err());
        let inner = match refused {
            Some(_) => None,
            None => catch_unwind(AssertUnwindSafe(|| self.inner.call(req))).ok(),
        };
        Tracking {
            inner,
            refused,
            timer: None,
            started,
            method,
            shared: Arc::clone(&self.shared),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a tracked request.
    #[project = TrackingProj]
    pub struct Tracking<F> {
        // `None` once answered, or if the service panicked when called or was not called.
        #[pin]
        inner: Option<F>,
        // The 401 of a request without an accepted token (the service was not called).
        refused: Option<ApiError>,
        // The deadline, once the request has had to wait.
        timer: Option<Pin<Box<Sleep>>>,
        started: Instant,
        method: usize,
        shared: Arc<Shared>,
    }

    impl<F> PinnedDrop for Tracking<F> {
        fn drop(this: Pin<&mut Self>) {
            // A request dropped unanswered (its client went away) still gives its timer back.
            if let Some(timer) = this.project().timer.take() {
                return_timer(timer);
            }
        }
    }
}

impl<F> Future for Tracking<F>
where
    F: Future<Output = Result<Response, std::convert::Infallible>>,
{
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Ok(finish(this, refused.into_response())));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // The service panicked when it was called.
            return Poll::Ready(Ok(finish(this, panicked())));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(Ok(response))) => return Poll::Ready(Ok(finish(this, response))),
            Ok(Poll::Ready(Err(never))) => match never {},
            Ok(Poll::Pending) => {}
            Err(_) => return Poll::Ready(Ok(finish(this, panicked()))),
        }
        let deadline = *this.started + this.shared.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| pooled_timer(tokio::time::Instant::from_std(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            let limit = this.shared.timeout;
            let response = ApiError::new(
                ErrorKind::Timeout,
                format!(
                    "the request did not complete within {}",
                    humantime::format_duration(limit)
                ),
            )
            .into_response();
            return Poll::Ready(Ok(finish(this, response)));
        }
        Poll::Pending
    }
}

/// Counts the answer, drops the request's future and gives the timer back.
fn finish<F>(mut this: TrackingProj<'_, F>, response: Response) -> Response {
    this.inner.set(None);
    this.shared.metrics.record(
        *this.method,
        response.status().as_u16(),
        this.started.elapsed().as_secs_f64(),
    );
    if let Some(timer) = this.timer.take() {
        return_timer(timer);
    }
    response
}

fn panicked() -> Response {
    ApiError::internal(&"a request handler panicked").into_response()
}

thread_local! {
    static TIMERS: RefCell<Vec<Pin<Box<Sleep>>>> = const { RefCell::new(Vec::new()) };
}

/// A timer set to `deadline`: one of this thread's pool, moved later, or a new one.
fn pooled_timer(deadline: tokio::time::Instant) -> Pin<Box<Sleep>> {
    match TIMERS.with(|pool| pool.borrow_mut().pop()) {
        Some(mut timer) => {
            timer.as_mut().reset(deadline);
            timer
        }
        None => Box::pin(tokio::time::sleep_until(deadline)),
    }
}

fn return_timer(timer: Pin<Box<Sleep>>) {
    TIMERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_TIMERS {
            pool.push(timer);
        }
    });
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::handler::Handler as _;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    use super::*;

    /// A router with a route that never answers, one that panics and one that answers at once.
    fn app(timeout: Duration) -> (Router, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let track = Track::new(Arc::clone(&metrics), timeout);
        let router = Router::new()
            .route(
                "/slow",
                get((|| std::future::pending::<&'static str>()).layer(track.route("/slow", None))),
            )
            .route(
                "/panic",
                get((|| async {
                    if true {
                        panic!("a handler bug");
                    }
                    "unreachable"
                })
                .layer(track.route("/panic", None))),
            )
            .route(
                "/fast",
                get((|| async { "ok" }).layer(track.route("/fast", None))),
            );
        (router, metrics)
    }

    async fn status(router: &Router, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_gets_the_timeout_error_and_is_counted() {
        let (router, metrics) = app(Duration::from_secs(2));
        // Twice: the second request reuses the first one's timer from the pool.
        for _ in 0..2 {
            let (code, body) = status(&router, "/slow").await;
            assert_eq!(code, ErrorKind::Timeout.status());
            assert!(body.contains("did not complete within 2s"), "{body}");
        }
        assert_eq!(status(&router, "/fast").await.0, StatusCode::OK);
        let text = metrics.render(None, true);
        let slow = format!(
            r#"limen_http_requests_total{{method="GET",route="/slow",status="{}"}} 2"#,
            ErrorKind::Timeout.status().as_u16()
        );
        assert!(text.contains(&slow), "{text}");
        assert!(text
            .contains(r#"limen_http_requests_total{method="GET",route="/fast",status="200"} 1"#));
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let (router, metrics) = app(Duration::from_secs(5));
        let (code, body) = status(&router, "/panic").await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains(r#""kind":"internal""#), "{body}");
        assert_eq!(status(&router, "/fast").await.0, StatusCode::OK);
        assert!(metrics
            .render(None, true)
            .contains(r#"limen_http_requests_total{method="GET",route="/panic",status="500"} 1"#));
    }
}
