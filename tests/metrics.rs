//! Black-box tests of `/metrics`: counters checked by value after known traffic.

mod common;

use common::{eventually, get, http, post, TestApp, PATIENCE};

/// The value of the sample line `name{labels}` in a Prometheus text scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn counters_match_the_traffic_sent() {
    // The store is bound, not `_`, so that its folder lives as long as the server.
    let TestApp {
        server,
        store: _store,
        version,
    } = TestApp::spawn(&[]);
    let agent = http();

    for _ in 0..5 {
        assert_eq!(
            post(&agent, &server.url("/predict"), r#"{"petal_width": 2.1}"#).status,
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            post(&agent, &server.url("/predict"), r#"{"petal_width": "x"}"#).status,
            422
        );
    }
    // A batch of 4 rows, two of them outside the training range [0.1, 2.5].
    let batch = r#"{"instances": [{"petal_width": 0.0}, {"petal_width": 1.0}, {"petal_width": 2.5}, {"petal_width": 9.0}]}"#;
    assert_eq!(
        post(&agent, &server.url("/models/iris/predict"), batch).status,
        200
    );
    let infer = r#"{"inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP64", "data": [3.0, 1.2]}]}"#;
    assert_eq!(
        post(&agent, &server.url("/v2/models/iris/infer"), infer).status,
        200
    );
    assert_eq!(get(&agent, &server.url("/nowhere")).status, 404);

    let scrape = get(&agent, &server.url("/metrics"));
    assert_eq!(scrape.status, 200);
    assert!(scrape
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = scrape.body;
    let expect = |series: &str, want: f64| {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    };
    expect(
        r#"limen_http_requests_total{method="POST",route="/predict",status="200"}"#,
        5.0,
    );
    expect(
        r#"limen_http_requests_total{method="POST",route="/predict",status="422"}"#,
        3.0,
    );
    expect(
        r#"limen_http_requests_total{method="POST",route="/models/{name}/predict",status="200"}"#,
        1.0,
    );
    expect(
        r#"limen_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"}"#,
        1.0,
    );
    expect(
        r#"limen_http_requests_total{method="GET",route="unmatched",status="404"}"#,
        1.0,
    );
    expect(
        r#"limen_http_request_duration_seconds_count{route="/predict"}"#,
        8.0,
    );
    expect(
        &format!(r#"limen_predictions_total{{model="iris",version="{version}"}}"#),
        5.0 + 4.0 + 2.0,
    );
    expect(
        r#"limen_input_out_of_training_range_total{feature="petal_width",model="iris"}"#,
        3.0,
    );
    expect(r#"limen_model_loads_total{model="iris",result="ok"}"#, 1.0);
    expect(
        &format!(r#"limen_model_loaded_info{{model="iris",version="{version}"}}"#),
        1.0,
    );
    expect("limen_store_up", 1.0);
    let age = sample(&text, "limen_store_last_scan_age_seconds").unwrap();
    assert!((0.0..5.0).contains(&age), "scan age {age}");
    assert_eq!(
        sample(&text, "limen_model_swap_lag_seconds_count"),
        Some(1.0)
    );
}

#[test]
fn failed_loads_and_swaps_are_counted() {
    let TestApp {
        server,
        store,
        version: first,
    } = TestApp::spawn(&["--poll-interval", "100ms"]);
    let agent = http();

    // A corrupt new production version: one failed load (per distinct attempt), old one serving.
    let bad = (first.parse::<u64>().unwrap() + 1).to_string();
    std::fs::create_dir(store.path().join(format!("iris/{bad}"))).unwrap();
    std::fs::write(store.path().join(format!("iris/{bad}/model.json")), "{}").unwrap();
    std::fs::write(store.path().join("iris/production"), format!("{bad}\n")).unwrap();
    let text = eventually(PATIENCE, "a failed load", || {
        let text = get(&agent, &server.url("/metrics")).body;
        sample(
            &text,
            r#"limen_model_loads_total{model="iris",result="failed"}"#,
        )
        .map(|_| text)
    });
    assert_eq!(
        sample(
            &text,
            &format!(r#"limen_model_loaded_info{{model="iris",version="{first}"}}"#)
        ),
        Some(1.0)
    );

    // A good promotion: the info gauge moves to the new version and the old series goes away.
    let second = store.train(&["--cv-folds", "0"]);
    store.ok(&["models", "promote", "iris", &second]);
    let text = eventually(PATIENCE, "the swap", || {
        let text = get(&agent, &server.url("/metrics")).body;
        sample(
            &text,
            &format!(r#"limen_model_loaded_info{{model="iris",version="{second}"}}"#),
        )
        .map(|_| text)
    });
    assert_eq!(
        sample(
            &text,
            &format!(r#"limen_model_loaded_info{{model="iris",version="{first}"}}"#)
        ),
        None,
        "the old version's series is removed"
    );
    assert_eq!(
        sample(&text, "limen_model_swap_lag_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"limen_model_loads_total{model="iris",result="ok"}"#
        ),
        Some(2.0)
    );
}

/// The `{model,version}` series of `family` in a scrape: their version labels.
fn versions_of(scrape: &str, family: &str) -> Vec<String> {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| {
            let at = l.find("version=\"")? + 9;
            Some(l[at..].split('"').next()?.to_owned())
        })
        .collect()
}

#[test]
fn series_of_a_version_end_when_it_is_no_longer_loaded() {
    let store = common::TestStore::new();
    store.promote_iris();
    let server = common::Server::serve(
        store.path(),
        &["--shadow-rate", "1", "--poll-interval", "50ms"],
    )
    .ready();
    let agent = http();
    let mut versions = Vec::new();
    // Ten rounds of: a new candidate in shadow, traffic, promotion.
    for _ in 0..10 {
        let candidate = store.train(&["--cv-folds", "0", "--alpha", "30"]);
        eventually(PATIENCE, "the candidate in shadow", || {
            let shadow =
                get(&agent, &server.url("/models/iris")).json()["shadow"]["version"].clone();
            (shadow.as_u64().map(|v| v.to_string()).as_deref() == Some(candidate.as_str()))
                .then_some(())
        });
        for _ in 0..3 {
            assert_eq!(
                post(&agent, &server.url("/predict"), r#"{"petal_width": 1.6}"#).status,
                200
            );
        }
        store.ok(&["models", "promote", "iris", &candidate]);
        eventually(PATIENCE, "the promotion served", || {
            let answer = post(&agent, &server.url("/predict"), r#"{"petal_width": 1.6}"#);
            (answer.version_header.as_deref() == Some(candidate.as_str())).then_some(())
        });
        versions.push(candidate);
    }
    // Only the version being served keeps its series; the nine before it are gone.
    let current = versions.last().unwrap();
    let scrape = eventually(PATIENCE, "old series to end", || {
        let scrape = get(&agent, &server.url("/metrics")).body;
        (versions_of(&scrape, "limen_predictions_total") == [current.clone()]).then_some(scrape)
    });
    for family in [
        "limen_model_loaded_info",
        "limen_shadow_samples_total",
        "limen_shadow_disagreements_total",
    ] {
        let left: Vec<String> = versions_of(&scrape, family)
            .into_iter()
            .filter(|v| v != current)
            .collect();
        assert!(left.is_empty(), "{family} still has {left:?}");
    }
}
