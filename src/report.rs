//! Pictures of models: server-rendered HTML with inline SVG, for the status page (`GET /`), a
//! model's page (`GET /models/{name}/report`) and `limen report`'s self-contained file.
//!
//! No JavaScript and no external resource: the page refreshes itself with a `<meta>` tag, the
//! server sends its stylesheet from its own origin (so a strict Content-Security-Policy holds),
//! and a report file carries the same stylesheet inline. Everything that comes from the store —
//! model, class and feature names, users and commands in the history — is escaped where it is
//! written ([`esc`]). Rendering only reads data already in memory.

use std::fmt::Write as _;

use crate::evidence::ShadowTotals;
use crate::model::{ClassReport, Model, ModelKind};
use crate::store::{Action, HistoryEntry, VersionId};

/// The stylesheet of every page (served at `/static/limen.css`, inlined in report files).
pub const STYLE: &str = r#"
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#f6f8fa; --ok:#1a7f37; --bad:#cf222e; --prod:#0969da; --cand:#bf8700; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
header { padding: 12px 20px; background: var(--bg); border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
main { padding: 16px 20px; display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 560px), 1fr)); gap: 16px; }
section { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
h2 { font-size: 16px; margin: 0 0 8px; word-break: break-all; }
h3 { font-size: 13px; margin: 12px 0 4px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; display: block; overflow-x: auto; }
th, td { text-align: left; padding: 2px 8px 2px 0; border-bottom: 1px solid var(--bg); vertical-align: top; }
td.n, th.n { text-align: right; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .muted { color: var(--muted); }
.prod { color: var(--prod); } .cand { color: var(--cand); }
svg { width: 100%; height: auto; display: block; }
ol.timeline { list-style: none; padding: 0; margin: 0; border-left: 2px solid var(--line); }
ol.timeline li { padding: 0 0 6px 12px; position: relative; }
ol.timeline li::before { content: ""; position: absolute; left: -6px; top: 6px; width: 10px; height: 10px; border-radius: 50%; background: var(--prod); }
ol.timeline li.rollback::before { background: var(--cand); } ol.timeline li.gc::before { background: var(--muted); }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 240px), 1fr)); gap: 12px; }
code { font-size: 12px; word-break: break-all; }
"#;

/// `s` with `& < > " '` escaped, for HTML text and attribute values alike.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The longest name (feature, class, user, host) a page shows, in characters; longer ones end
/// in "…". A page's size is bounded by what it shows, not by what a file holds.
const NAME_CHARS: usize = 80;
/// The longest command line a page shows, in characters.
const COMMAND_CHARS: usize = 300;
/// Classes a page lists per model (in the chart's bars and the per-class table): a model with
/// more gets a note, not a page the size of its confusion matrix.
pub const CLASSES_SHOWN: usize = 20;
/// Features the live PSI table lists (the highest first).
const PSI_SHOWN: usize = 30;

/// `s`, cut to `chars` characters (ending in "…" if it was longer), escaped.
fn esc_short(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((at, _)) => esc(&s[..at]) + "…",
        None => esc(s),
    }
}

/// A name as a page shows it: at most [`NAME_CHARS`] characters, escaped.
fn name(s: &str) -> String {
    esc_short(s, NAME_CHARS)
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

/// What the live server knows of a model beside its versions (absent in `limen report`).
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The last error about the production version or pointer.
    pub error: Option<String>,
    pub candidate_error: Option<String>,
    /// Instances per second over the recent intervals (oldest first).
    pub rate: Vec<f64>,
    /// Inputs outside the training range per second over the same intervals.
    pub out_of_range: Vec<f64>,
    /// The live PSI per feature.
    pub psi: Vec<(String, f64)>,
    /// While the live PSI waits for enough instances: how many there are, of how many.
    pub drift_collecting: Option<(u64, u64)>,
    pub shadow: Option<ShadowTotals>,
}

/// One model as a page shows it.
pub struct ModelView<'a> {
    pub name: &'a str,
    pub production: Option<(VersionId, &'a Model)>,
    /// The candidate when it is not production.
    pub candidate: Option<(VersionId, &'a Model)>,
    pub history: &'a [HistoryEntry],
    pub live: Option<Live>,
}

/// A model's card: versions and metrics, the chart, quality, live traffic and the history.
pub fn model_section(view: &ModelView, id: &str) -> String {
    let mut s = String::new();
    let _ = write!(s, "<section id=\"{}\"><h2>{}</h2>", esc(id), esc(view.name));
    let version =
        |v: Option<(VersionId, &Model)>| v.map_or("–".to_owned(), |(v, _)| v.to_string());
    let _ = write!(
        s,
        "<div class=\"cols\"><div>production <b class=\"prod\" data-production=\"{p}\">{p}</b></div><div>candidate <b class=\"cand\">{c}</b></div></div>",
        p = version(view.production),
        c = version(view.candidate)
    );
    if let Some(live) = &view.live {
        if let Some(e) = &live.error {
            let _ = write!(s, "<p class=\"bad\">{}</p>", esc(e));
        }
        if let Some(e) = &live.candidate_error {
            let _ = write!(s, "<p class=\"bad\">candidate: {}</p>", esc(e));
        }
    }
    let models: Vec<(&str, &Model)> = [
        view.production.map(|(_, m)| ("production", m)),
        view.candidate.map(|(_, m)| ("candidate", m)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !models.is_empty() {
        s.push_str(&chart_svg(&models));
        s.push_str(&preprocessing_table(models[0].1));
        s.push_str(&metrics_table(&models));
        s.push_str(&confusion_tables(&models));
    }
    if let Some(live) = &view.live {
        s.push_str(&live_block(live));
    }
    s.push_str(&timeline(view.history));
    s.push_str("</section>");
    s
}

/// The chart: for a one-feature binary model, P(positive) over the training range with the
/// decision boundary and the range marked (one curve per version); otherwise each feature's
/// weight times its training standard deviation (the logit's change for a typical move), as bars.
pub fn chart_svg(models: &[(&str, &Model)]) -> String {
    let Some((_, first)) = models.first() else {
        return String::new();
    };
    let one_feature_binary = models
        .iter()
        .all(|(_, m)| m.kind() == ModelKind::BinaryLogistic && m.feature_names().len() == 1);
    if one_feature_binary {
        curve_svg(models)
    } else if first.kind() == ModelKind::TreeEnsemble {
        // No weights to draw: each feature's mean |contribution| when recorded, else a pointer
        // to the per-row reasons.
        importance_svg(first).unwrap_or_else(|| {
            "<p class=\"muted\">a tree ensemble: each answer's feature contributions are on <code>POST /explain</code></p>".to_owned()
        })
    } else {
        bars_svg(first)
    }
}

/// For a model with preprocessing, how each feature's raw value becomes model inputs: a
/// number's imputed value, a category's categories (the first few) and its missing value.
fn preprocessing_table(model: &Model) -> String {
    let Some(columns) = model.preprocessing() else {
        return String::new();
    };
    let mut s = String::from(
        "<h3>Preprocessing</h3><table><tr><th>feature</th><th>a raw value becomes</th></tr>",
    );
    for (feature, column) in model.feature_names().iter().zip(columns) {
        let how = match column {
            crate::model::Column::Numeric { impute } => {
                format!("a number; missing: {impute:.4}")
            }
            crate::model::Column::Categorical {
                categories,
                other,
                missing,
                ..
            } => {
                const SHOWN: usize = 8;
                let mut names: Vec<String> = categories
                    .iter()
                    .take(SHOWN)
                    .map(|c| esc_short(c, 24))
                    .collect();
                if categories.len() > SHOWN {
                    names.push(format!("… ({} in all)", categories.len()));
                }
                let other = if other.is_empty() {
                    String::new()
                } else {
                    format!("; {} rare ones as “other”", other.len())
                };
                let missing = if *missing { "its own" } else { "as unseen" };
                format!(
                    "one of {}{other}; unseen: all indicators 0; missing: {missing}",
                    names.join(", ")
                )
            }
        };
        let _ = write!(s, "<tr><td>{}</td><td>{how}</td></tr>", name(feature));
    }
    s.push_str("</table>");
    s
}

const W: f64 = 560.0;
const H: f64 = 220.0;
const PAD: f64 = 36.0;

fn curve_svg(models: &[(&str, &Model)]) -> String {
    let stats = |m: &Model| m.artifact().features[0].stats;
    let lo = models
        .iter()
        .map(|(_, m)| stats(m).min)
        .fold(f64::INFINITY, f64::min);
    let hi = models
        .iter()
        .map(|(_, m)| stats(m).max)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = (hi - lo).abs().max(1e-9);
    let (x0, x1) = (lo - 0.15 * span, hi + 0.15 * span);
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let sy = |p: f64| H - PAD + -p * (H - 2.0 * PAD);
    let (_, reference) = models[0];
    let feature = name(&reference.feature_names()[0]);
    let positive = name(&reference.classes()[1]);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"P({positive}) by {feature}\" class=\"chart\">"
    );
    // The training range, shaded.
    let _ = write!(
        s,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f6f8fa\"/>",
        sx(lo),
        sy(1.0),
        sx(hi) - sx(lo),
        sy(0.0) - sy(1.0)
    );
    let _ = write!(
        s,
        "<line x1=\"{p}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#d1d9e0\"/><line x1=\"{p}\" y1=\"{t}\" x2=\"{p}\" y2=\"{b}\" stroke=\"#d1d9e0\"/>",
        p = PAD,
        b = sy(0.0),
        r = W - PAD,
        t = sy(1.0)
    );
    for (p, label) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#59636e\">{label}</text>",
            PAD - 4.0,
            sy(p) + 4.0
        );
    }
    for x in [lo, hi] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#59636e\">{x:.3}</text>",
            sx(x),
            H - PAD + 14.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#59636e\">{feature} (shaded: training range)</text><text x=\"{:.1}\" y=\"14\" font-size=\"11\" fill=\"#59636e\">P({positive})</text>",
        W / 2.0,
        H - 6.0,
        PAD
    );
    for (i, (role, model)) in models.iter().enumerate() {
        let color = if i == 0 { "#0969da" } else { "#bf8700" };
        let points: Vec<String> = (0..=120)
            .filter_map(|k| {
                let x = x0 + (x1 - x0) * k as f64 / 120.0;
                let p = model.predict(&[x]).ok()?.probabilities[1];
                Some(format!("{:.1},{:.1}", sx(x), sy(p)))
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"><title>{role}</title></polyline>",
            points.join(" ")
        );
        // The decision boundary: where the logit is 0 (P = 0.5).
        let w = model
            .predict(&[1.0])
            .ok()
            .zip(model.predict(&[0.0]).ok())
            .map(|(a, b)| {
                let logit = |p: f64| (p / (1.0 - p)).ln();
                let (l1, l0) = (logit(a.probabilities[1]), logit(b.probabilities[1]));
                (l1 - l0, l0)
            });
        if let Some((slope, at0)) = w.filter(|(slope, _)| slope.abs() > 1e-12) {
            let boundary = -at0 / slope;
            if boundary.is_finite() && (x0..=x1).contains(&boundary) {
                let _ = write!(
                    s,
                    "<line x1=\"{x:.1}\" y1=\"{t:.1}\" x2=\"{x:.1}\" y2=\"{b:.1}\" stroke=\"{color}\" stroke-dasharray=\"4 3\"><title>{role} boundary {boundary:.4}</title></line><text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"11\" fill=\"{color}\">{boundary:.3}</text>",
                    x = sx(boundary),
                    t = sy(1.0),
                    b = sy(0.0),
                    tx = sx(boundary) + 4.0,
                    ty = sy(0.5) - 4.0 - 14.0 * i as f64,
                );
            }
        }
    }
    s.push_str("</svg>");
    if models.len() > 1 {
        s.push_str("<p class=\"muted\"><span class=\"prod\">━ production</span> &nbsp; <span class=\"cand\">━ candidate</span> &nbsp; dashed: decision boundaries</p>");
    }
    s
}

/// A tree model's features by mean |contribution| (largest first, at most 30), as bars; `None`
/// when the artifact does not record them (trees imported before they were).
fn importance_svg(model: &Model) -> Option<String> {
    let features = &model.artifact().features;
    let mut order: Vec<(usize, f64)> = features
        .iter()
        .enumerate()
        .map(|(j, f)| f.mean_abs_contribution.map(|v| (j, v)))
        .collect::<Option<_>>()?;
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown = order.len().min(30);
    let row = 16.0;
    let height = 30.0 + row * shown as f64;
    let max = order.first().map_or(0.0, |o| o.1).max(1e-12);
    let (left, right) = (180.0, W - 60.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {height:.0}\" role=\"img\" aria-label=\"feature importance\" class=\"chart\"><text x=\"{:.1}\" y=\"14\" font-size=\"11\" text-anchor=\"middle\" fill=\"#59636e\">mean |contribution| per answer (TreeSHAP over the training rows)</text>",
        (left + right) / 2.0
    );
    for (i, &(j, v)) in order.iter().take(shown).enumerate() {
        let y = 20.0 + row * i as f64;
        let len = v / max * (right - left);
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text><rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"#0969da\"><title>{v:.4}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#59636e\">{v:.3}</text>",
            left - 6.0,
            y + 11.0,
            name(&features[j].name),
            y + 2.0,
            row - 4.0,
            left + len + 4.0,
            y + 11.0
        );
    }
    s.push_str("</svg>");
    if features.len() > shown {
        let _ = write!(
            s,
            "<p class=\"muted\">the {shown} largest of {} features</p>",
            features.len()
        );
    }
    Some(s)
}

fn bars_svg(model: &Model) -> String {
    let artifact = model.artifact();
    let features = &artifact.features;
    // Effects in logit units for a typical move of each feature (see `Model::typical_effect`).
    let effect = |logit: usize, j: usize| model.typical_effect(logit, j);
    // One bar per feature and logit: of a model with many classes, the first few.
    let all_logits = artifact.coefficients.len();
    let logits = all_logits.min(CLASSES_SHOWN.min(8));
    let names: Vec<String> = match model.kind() {
        ModelKind::BinaryLogistic => vec![format!("log-odds of {}", model.classes()[1])],
        ModelKind::MultinomialLogistic | ModelKind::TreeEnsemble => {
            model.classes().iter().take(logits).cloned().collect()
        }
    };
    let shown = features.len().min(30);
    let row = 16.0;
    let height = 40.0 + row * (shown * logits) as f64;
    let max = (0..logits)
        .flat_map(|k| (0..shown).map(move |j| (k, j)))
        .map(|(k, j)| effect(k, j).abs())
        .fold(1e-12, f64::max);
    let (left, right) = (180.0, W - 20.0);
    let mid = (left + right) / 2.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {height:.0}\" role=\"img\" aria-label=\"feature effects\" class=\"chart\"><text x=\"{mid:.1}\" y=\"14\" font-size=\"11\" text-anchor=\"middle\" fill=\"#59636e\">weight × training std (logit change for a typical move)</text><line x1=\"{mid:.1}\" y1=\"20\" x2=\"{mid:.1}\" y2=\"{:.1}\" stroke=\"#d1d9e0\"/>",
        height - 4.0
    );
    let colors = [
        "#0969da", "#bf8700", "#1a7f37", "#8250df", "#cf222e", "#59636e",
    ];
    for (j, feature) in features.iter().take(shown).enumerate() {
        for k in 0..logits {
            let y = 24.0 + row * (j * logits + k) as f64;
            let v = effect(k, j);
            let len = v.abs() / max * (right - mid);
            let x = if v < 0.0 { mid - len } else { mid };
            let label = if logits == 1 {
                name(&feature.name)
            } else {
                format!("{} · {}", name(&feature.name), name(&names[k]))
            };
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{label}</text><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{v:.4}</title></rect>",
                left - 6.0,
                y + 11.0,
                y + 2.0,
                row - 4.0,
                colors[k % colors.len()]
            );
        }
    }
    s.push_str("</svg>");
    if features.len() > shown || all_logits > logits {
        let _ = write!(
            s,
            "<p class=\"muted\">the first {shown} of {} features, {logits} of {all_logits} logits</p>",
            features.len()
        );
    }
    s
}

fn metrics_table(models: &[(&str, &Model)]) -> String {
    let mut s = String::from("<h3>Quality when trained</h3><table><tr><th></th>");
    for (role, _) in models {
        let _ = write!(s, "<th class=\"n\">{role}</th>");
    }
    s.push_str("</tr>");
    type Row = (&'static str, fn(&Model) -> String);
    let rows: [Row; 6] = [
        ("train accuracy", |m| {
            num(Some(m.artifact().metrics.train_accuracy), 4)
        }),
        ("CV accuracy", |m| num(m.artifact().metrics.cv_accuracy, 4)),
        ("log loss", |m| {
            num(Some(m.artifact().metrics.train_log_loss), 4)
        }),
        ("ROC AUC", |m| {
            num(
                m.artifact().metrics.train.as_ref().and_then(|r| r.roc_auc),
                4,
            )
        }),
        ("converged", |m| match m.artifact().metrics.converged {
            Some(true) => format!(
                "<span class=\"ok\">yes</span> ({} it.)",
                m.artifact().metrics.iterations.unwrap_or(0)
            ),
            Some(false) => "<span class=\"bad\">no</span>".to_owned(),
            None => "–".to_owned(),
        }),
        ("trained on", |m| {
            format!(
                "{} rows, {}",
                m.artifact().provenance.rows,
                esc(&m.artifact().created_at)
            )
        }),
    ];
    for (label, value) in rows {
        let _ = write!(s, "<tr><td>{label}</td>");
        for (_, m) in models {
            let _ = write!(s, "<td class=\"n\">{}</td>", value(m));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn confusion_tables(models: &[(&str, &Model)]) -> String {
    let mut s = String::from("<div class=\"cols\">");
    for (role, model) in models {
        let Some(report) = &model.artifact().metrics.train else {
            continue;
        };
        let _ = write!(s, "<div><h3>{role}: per class (train)</h3>");
        s.push_str(&class_table(report));
        s.push_str("</div>");
    }
    s.push_str("</div>");
    s
}

/// Per-class precision, recall and F1 with the confusion matrix's rows; for a model of more
/// than [`CLASSES_SHOWN`] classes, the first of them without the matrix (which would grow with
/// the square of the classes), and a note.
fn class_table(report: &ClassReport) -> String {
    let n = report.classes.len();
    let with_matrix = n <= CLASSES_SHOWN;
    let mut s = String::from(
        "<table><tr><th>class</th><th class=\"n\">P</th><th class=\"n\">R</th><th class=\"n\">F1</th>",
    );
    if with_matrix {
        for c in &report.classes {
            let _ = write!(
                s,
                "<th class=\"n\" title=\"predicted {0}\">→{0}</th>",
                name(&c.class)
            );
        }
    }
    s.push_str("</tr>");
    for (c, row) in report
        .classes
        .iter()
        .zip(&report.confusion)
        .take(CLASSES_SHOWN)
    {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td>",
            name(&c.class),
            c.precision,
            c.recall,
            c.f1
        );
        if with_matrix {
            for n in row {
                let _ = write!(s, "<td class=\"n\">{n}</td>");
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    if !with_matrix {
        let _ = write!(
            s,
            "<p class=\"muted\">the first {CLASSES_SHOWN} of {n} classes, without the {n} × {n} confusion matrix: <code>limen models show --json</code> has all of it</p>"
        );
    }
    s
}

/// A small line chart of `values` (oldest first) with its last value.
fn sparkline(values: &[f64], color: &str) -> String {
    let (w, h) = (240.0, 40.0);
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1e-9);
    let n = values.len().max(2) - 1;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 / n as f64 * w,
                h - 2.0 - v / max * (h - 4.0)
            )
        })
        .collect();
    format!(
        "<svg viewBox=\"0 0 {w} {h}\" class=\"spark\" preserveAspectRatio=\"none\"><polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

fn live_block(live: &Live) -> String {
    let mut s = String::from("<h3>Live</h3><div class=\"cols\">");
    let last = |v: &[f64]| v.last().copied();
    let _ = write!(
        s,
        "<div>instances/s <b>{}</b>{}</div><div>out of training range/s <b>{}</b>{}</div>",
        num(last(&live.rate), 1),
        sparkline(&live.rate, "#0969da"),
        num(last(&live.out_of_range), 2),
        sparkline(&live.out_of_range, "#cf222e")
    );
    s.push_str("</div>");
    if let Some((held, needed)) = live.drift_collecting {
        let _ = write!(
            s,
            "<p class=\"muted\">live PSI: collecting ({held} of {needed} instances)</p>"
        );
    }
    if !live.psi.is_empty() {
        // The features that moved most, first.
        let mut psi: Vec<&(String, f64)> = live.psi.iter().collect();
        psi.sort_by(|a, b| b.1.total_cmp(&a.1));
        s.push_str("<table><tr><th>feature</th><th class=\"n\">live PSI</th></tr>");
        for (feature, psi) in psi.iter().take(PSI_SHOWN) {
            let class = if *psi > 0.25 { "bad" } else { "" };
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"n {class}\">{psi:.4}</td></tr>",
                name(feature)
            );
        }
        s.push_str("</table>");
        if live.psi.len() > PSI_SHOWN {
            let _ = write!(
                s,
                "<p class=\"muted\">the {PSI_SHOWN} highest of {} features</p>",
                live.psi.len()
            );
        }
    }
    if let Some(t) = &live.shadow {
        let _ = write!(
            s,
            "<p>shadow of candidate {}: {} samples, label agreement {}, mean |Δp| {}, max |Δp| {}</p>",
            t.candidate,
            t.samples,
            num(t.label_agreement(), 4),
            num(t.mean_abs_diff(), 4),
            num((t.samples > 0).then_some(t.max_abs_diff), 4)
        );
    }
    s
}

fn timeline(history: &[HistoryEntry]) -> String {
    if history.is_empty() {
        return "<h3>History</h3><p class=\"muted\">no promotions yet</p>".to_owned();
    }
    let mut s = String::from("<h3>History</h3><ol class=\"timeline\">");
    for e in history.iter().rev().take(20) {
        let (class, what) = match e.action {
            Action::Promote => ("promote", "promoted"),
            Action::Rollback => ("rollback", "rolled back to"),
            Action::Gc => ("gc", "collected garbage"),
        };
        let version = e.version.map_or(String::new(), |v| format!(" <b>{v}</b>"));
        let _ = write!(
            s,
            "<li class=\"{class}\">{what}{version} <span class=\"muted\">{} by {}@{}</span><br><code>{}</code></li>",
            esc(&e.at),
            name(&e.user),
            name(&e.host),
            esc_short(&e.command, COMMAND_CHARS)
        );
    }
    s.push_str("</ol>");
    s
}

/// A whole page. `stylesheet` is a link to the served stylesheet (`Some("/static/limen.css")`)
/// or `None` to inline it (report files); `refresh` re-requests the page every so many seconds.
pub fn page(
    title: &str,
    header: &str,
    body: &str,
    stylesheet: Option<&str>,
    refresh: Option<u32>,
) -> String {
    let (head, tail) = page_frame(title, header, stylesheet, refresh);
    head + body + tail
}

/// [`page`] without its body: what comes before it and after it, so that a server can write
/// the body in between, into one buffer, as it renders it.
pub fn page_frame(
    title: &str,
    header: &str,
    stylesheet: Option<&str>,
    refresh: Option<u32>,
) -> (String, &'static str) {
    let style = match stylesheet {
        Some(href) => format!("<link rel=\"stylesheet\" href=\"{}\">", esc(href)),
        None => format!("<style>{STYLE}</style>"),
    };
    let refresh = refresh.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">")
    });
    (
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">{refresh}<title>{}</title>{style}</head><body><header>{header}</header><main>",
            esc(title)
        ),
        "</main></body></html>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{binary_artifact, multinomial_artifact};

    #[test]
    fn names_from_the_store_are_escaped_everywhere() {
        let mut a = multinomial_artifact();
        a.classes = vec![
            "a\"quote".into(),
            "<script>alert(1)</script>".into(),
            "new\nline".into(),
        ];
        a.features[0].name = "<b>width</b>".into();
        let model = Model::new(a).unwrap();
        let history = vec![{
            let mut e = HistoryEntry::now(Action::Promote, VersionId::try_from(7).ok(), None);
            e.user = "<img src=x onerror=alert(1)>".into();
            e.command = "limen validate \"--x\" <y>".into();
            e
        }];
        let view = ModelView {
            name: "m<&>",
            production: Some((VersionId::try_from(7).unwrap(), &model)),
            candidate: None,
            history: &history,
            live: None,
        };
        let html = page(
            "t<",
            "<h1>x</h1>",
            &model_section(&view, "m"),
            None,
            Some(5),
        );
        for raw in [
            "<script>alert",
            "<b>width",
            "a\"quote",
            "<img src",
            "\"--x\"",
            "m<&>",
        ] {
            assert!(!html.contains(raw), "unescaped {raw:?}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;width&lt;/b&gt;"));
        assert!(!html.contains("<script"), "no script at all");
    }

    #[test]
    fn a_models_categories_and_imputed_values_are_listed_escaped() {
        let mut a = binary_artifact();
        a.format = crate::model::FORMAT_V3.into();
        let mut island = a.features[0].clone();
        island.name = "island".into();
        a.features.push(island);
        a.preprocessing = Some(vec![
            crate::model::Column::Numeric { impute: 1.25 },
            crate::model::Column::Categorical {
                categories: vec!["Biscoe".into(), "<script>x</script>".into()],
                other: vec![],
                missing: false,
                shares: vec![0.5, 0.5],
            },
        ]);
        a.coefficients = vec![vec![4.3, 0.5, -0.5]];
        let model = Model::new(a).unwrap();
        let table = preprocessing_table(&model);
        assert!(table.contains("missing: 1.2500"), "{table}");
        assert!(
            table.contains("one of Biscoe, &lt;script&gt;x&lt;/script&gt;"),
            "{table}"
        );
        assert!(!table.contains("<script"), "{table}");
        assert!(preprocessing_table(&Model::new(binary_artifact()).unwrap()).is_empty());
    }

    #[test]
    fn a_one_feature_binary_model_gets_its_curve_and_boundary() {
        let model = Model::new(binary_artifact()).unwrap();
        let svg = chart_svg(&[("production", &model)]);
        assert!(
            svg.contains("<polyline") && svg.contains("boundary 1.660"),
            "{svg}"
        );
        let other = Model::new(multinomial_artifact()).unwrap();
        let bars = chart_svg(&[("production", &other)]);
        assert!(bars.contains("<rect") && !bars.contains("<polyline"));
    }
}
