//! The pages people look at: the status page (`GET /`), one model's page
//! (`GET /models/{name}/report`), their stylesheet, and the OpenAPI document.
//!
//! Computed from what the server holds (the serving table, statuses, counters, shadow totals),
//! plus each shown model's history read from the store through the bounded store readers. Sent
//! with a Content-Security-Policy that allows nothing but the server's own stylesheet.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorKind};
use super::lookup::{model_name, unknown_model};
use super::state::AppState;
use crate::registry::{LoadedModel, ModelStatus};
use crate::report::{self, Live, ModelView};
use crate::store::{HistoryEntry, ModelName};

/// Models shown on the status page; beyond this the page says how many more there are.
const SHOWN: usize = 100;
/// History entries shown per model.
const HISTORY: usize = 20;
/// Seconds between the page's own refreshes.
const REFRESH: u32 = 5;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The OpenAPI 3.1 description of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

fn html(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /static/limen.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        report::STYLE,
    )
        .into_response()
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Everything a model's card shows, gathered.
struct Card {
    status: ModelStatus,
    production: Option<Arc<LoadedModel>>,
    candidate: Option<Arc<LoadedModel>>,
    history: Vec<HistoryEntry>,
}

fn live(state: &AppState, card: &Card) -> Live {
    let (rate, out_of_range) = state.activity.rates(&card.status.name);
    let shadow = match (&card.candidate, card.status.name.parse::<ModelName>()) {
        (Some(candidate), Ok(name)) => state.shadow.totals(&name, candidate.version),
        _ => None,
    };
    Live {
        error: card.status.last_error.clone(),
        candidate_error: card.status.candidate_error.clone(),
        rate,
        out_of_range,
        psi: card
            .production
            .as_ref()
            .map(|p| p.psi())
            .unwrap_or_default(),
        shadow,
    }
}

fn section(state: &AppState, card: &Card) -> String {
    let view = ModelView {
        name: &card.status.name,
        production: card.production.as_ref().map(|p| (p.version, &p.model)),
        candidate: card.candidate.as_ref().map(|c| (c.version, &c.model)),
        history: &card.history,
        live: Some(live(state, card)),
    };
    report::model_section(&view, &format!("model-{}", card.status.name))
}

fn header(state: &AppState, title: &str) -> String {
    let store = state.registry.store_status();
    let health = match &store.error {
        None => "<span class=\"ok\">store readable</span>".to_owned(),
        Some(e) => format!(
            "<span class=\"bad\">store unreadable: {}</span>",
            report::esc(e)
        ),
    };
    let scan = state
        .registry
        .seconds_since_scan()
        .map_or("never scanned".to_owned(), |s| {
            format!("last scan {s:.1} s ago")
        });
    format!(
        "<h1>{}</h1><span><code>{}</code></span><span>{health}</span><span class=\"muted\">{scan}</span><span class=\"muted\">limen {} · refreshes every {REFRESH} s</span>",
        report::esc(title),
        report::esc(&store.root),
        env!("CARGO_PKG_VERSION")
    )
}

/// `GET /`: every model of the store (up to 100), with the store's health on top.
pub async fn status_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let statuses = state.registry.statuses();
    let total = statuses.len();
    let shown: Vec<ModelStatus> = statuses.into_iter().take(SHOWN).collect();
    let names: Vec<ModelName> = shown.iter().filter_map(|s| s.name.parse().ok()).collect();
    let histories = state
        .read_store(move |registry| {
            names
                .iter()
                .map(|n| registry.history(n, HISTORY))
                .collect::<Vec<_>>()
        })
        .await?;
    let mut body = String::new();
    for (status, history) in shown.into_iter().zip(histories) {
        let card = Card {
            production: state.registry.get(&status.name),
            candidate: state.registry.shadow(&status.name),
            history,
            status,
        };
        body.push_str(&section(&state, &card));
    }
    if total == 0 {
        body.push_str("<section><h2>No models yet</h2><p>Train and validate one: <code>limen train &amp;&amp; limen validate</code></p></section>");
    } else if total > SHOWN {
        body.push_str(&format!(
            "<section><p>and {} more models: see <a href=\"/models\">/models</a></p></section>",
            total - SHOWN
        ));
    }
    Ok(html(report::page(
        "limen",
        &header(&state, "limen"),
        &body,
        Some("/static/limen.css"),
        Some(REFRESH),
    )))
}

/// `GET /models/{name}/report`: one model's page.
pub async fn model_page(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let Some(status) = state.registry.status(name.as_str()) else {
        return Err(unknown_model(&name));
    };
    let lookup = name.clone();
    let history = state
        .read_store(move |registry| registry.history(&lookup, HISTORY))
        .await?;
    let card = Card {
        production: state.registry.get(name.as_str()),
        candidate: state.registry.shadow(name.as_str()),
        history,
        status,
    };
    if card.production.is_none() && card.status.production.is_none() {
        return Err(ApiError::new(
            ErrorKind::NotLoaded,
            format!("model \"{name}\" has no production version to show yet"),
        ));
    }
    let title = format!("limen · {name}");
    Ok(html(report::page(
        &title,
        &header(&state, &title),
        &section(&state, &card),
        Some("/static/limen.css"),
        Some(REFRESH),
    )))
}
