//! The pages people look at: the status page (`GET /`), one model's page
//! (`GET /models/{name}/report`), their stylesheet, and the OpenAPI document.
//!
//! Computed from what the server holds (the serving table, statuses, counters, shadow totals),
//! plus each shown model's history read from the store through the bounded store readers. Sent
//! with a Content-Security-Policy that allows nothing but the server's own stylesheet.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorKind};
use super::lookup::{model_name, unknown_model};
use super::reply;
use super::state::AppState;
use crate::budget::Reservation;
use crate::registry::{LoadedModel, ModelStatus};
use crate::report::{self, Live, ModelView};
use crate::store::{HistoryEntry, ModelName};

/// Models shown on the status page; beyond this the page says how many more there are.
const SHOWN: usize = 100;
/// History entries shown per model: on the status page, and on a model's own page.
const HISTORY: usize = 5;
const MODEL_HISTORY: usize = 20;
/// The most a page may take: the status page stops adding models there, with a note. Its
/// bytes are reserved from the memory budget before it is rendered (or, when they do not fit,
/// those of a [`SMALL_PAGE`], else 429). One model's card, with the page's caps on names,
/// classes, features and history, stays well under [`CARD`].
const PAGE: usize = 4 << 20;
const SMALL_PAGE: usize = 256 << 10;
const CARD: usize = 512 << 10;
/// The most one history line can take when read (the store's cap), per entry read.
const HISTORY_LINE: usize = 16 << 10;
/// Seconds between the page's own refreshes.
const REFRESH: u32 = 5;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The OpenAPI 3.1 description of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An HTML page that keeps its reservation in the memory budget until it is sent.
fn html_reserved(body: String, held: Reservation) -> Response {
    let mut response = (
        StatusCode::OK,
        Body::from(reply::reserved(body.into_bytes(), held)),
    )
        .into_response();
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
        drift_collecting: card.production.as_ref().and_then(|p| p.drift_collecting()),
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
        "<h1>{}</h1><span><code>{}</code></span><span>{health}</span><span class=\"muted\">{scan}</span><span class=\"muted\">limen {} · refreshes every {REFRESH} s</span>{}",
        report::esc(title),
        report::esc(&store.root),
        env!("CARGO_PKG_VERSION"),
        fleet(&state.registry.fleet())
    )
}

/// The fleet line of the header: the live servers, and any model they disagree on.
fn fleet(summary: &Option<crate::fleet::FleetSummary>) -> String {
    let Some(f) = summary else {
        return String::new();
    };
    let names: Vec<String> = f
        .live
        .iter()
        .map(|(name, age)| format!("{} ({:.1} s)", report::esc(name), *age as f64 / 1000.0))
        .collect();
    let more = f.live_total.saturating_sub(f.live.len());
    let mut s = format!(
        "<span class=\"muted fleet\">fleet: {} live server{} {}{}",
        f.live_total,
        if f.live_total == 1 { "" } else { "s" },
        names.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    if f.stale > 0 || f.refused > 0 {
        let _ = write!(s, "; {} stale, {} unreadable", f.stale, f.refused);
    }
    s.push_str("</span>");
    for (model, versions) in &f.disagreements {
        let parts: Vec<String> = versions
            .iter()
            .map(|(v, who)| {
                let who: Vec<String> = who.iter().map(|w| report::esc(w)).collect();
                format!("{} on {}", report::esc(v), who.join(", "))
            })
            .collect();
        let _ = write!(
            s,
            "<span class=\"bad\">servers disagree on {}: {}</span>",
            report::esc(model),
            parts.join("; ")
        );
    }
    s
}

/// Reserves a page's bytes: [`PAGE`] (plus one card and `extra`), else [`SMALL_PAGE`], else
/// 429. Returns the reservation and the size the page must stay under.
fn reserve_page(state: &AppState, extra: usize) -> Result<(Reservation, usize), ApiError> {
    match state.budget.try_reserve(PAGE + CARD + extra) {
        Ok(held) => Ok((held, PAGE)),
        Err(_) => Ok((state.reserve(SMALL_PAGE + CARD + extra)?, SMALL_PAGE)),
    }
}

/// `GET /`: every model of the store (up to 100, and as many as fit in the page's size), with
/// the store's health on top. Each model's history is read (its last lines, from the end of the
/// file) and its card rendered in turn, so what is held is the page and one card.
pub async fn status_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (held, cap) = reserve_page(&state, HISTORY * HISTORY_LINE)?;
    let statuses = state.registry.statuses();
    let total = statuses.len();
    let (head, tail) = report::page_frame(
        "limen",
        &header(&state, "limen"),
        Some("/static/limen.css"),
        Some(REFRESH),
    );
    let mut page = String::with_capacity(cap + CARD);
    page.push_str(&head);
    let mut shown = 0;
    let mut cut = false;
    for status in statuses.into_iter().take(SHOWN) {
        let history = match status.name.parse::<ModelName>() {
            Ok(name) => {
                state
                    .read_store(move |registry| registry.history(&name, HISTORY))
                    .await?
            }
            Err(_) => Vec::new(),
        };
        let card = Card {
            production: state.registry.get(&status.name),
            candidate: state.registry.shadow(&status.name),
            history,
            status,
        };
        let section = section(&state, &card);
        if page.len() + section.len() > cap {
            cut = true;
            break;
        }
        page.push_str(&section);
        shown += 1;
    }
    if total == 0 {
        page.push_str("<section><h2>No models yet</h2><p>Train and validate one: <code>limen train &amp;&amp; limen validate</code></p></section>");
    } else if shown < total {
        let why = if cut {
            format!("the page stops at {} KiB", cap / 1024)
        } else {
            format!("the page shows {SHOWN} models")
        };
        let _ = write!(
            page,
            "<section><p>and {} more models ({why}): see <a href=\"/models\">/models</a> or each model's own page, <code>/models/NAME/report</code></p></section>",
            total - shown
        );
    }
    page.push_str(tail);
    Ok(html_reserved(page, held))
}

/// `GET /models/{name}/report`: one model's page.
pub async fn model_page(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let Some(status) = state.registry.status(name.as_str()) else {
        return Err(unknown_model(&state, &name));
    };
    let (held, _) = reserve_page(&state, MODEL_HISTORY * HISTORY_LINE)?;
    let lookup = name.clone();
    let history = state
        .read_store(move |registry| registry.history(&lookup, MODEL_HISTORY))
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
    Ok(html_reserved(
        report::page(
            &title,
            &header(&state, &title),
            &section(&state, &card),
            Some("/static/limen.css"),
            Some(REFRESH),
        ),
        held,
    ))
}
