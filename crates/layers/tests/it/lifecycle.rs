//! Start-up and shutdown: SIGTERM-style shutdown finishes in-flight streams and flushes usage;
//! `serve` refuses an unmigrated database.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use layers_store::testing::TestDatabase;
use layers_store::ConnectOptions;
use layers_testkit::mock_openai::{Reply, StreamEnd};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};

use crate::support::*;

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_streams_and_flushes_usage() {
    let mock = MockOpenAi::start().await;
    let mut app = TestApp::spawn_with(AppOptions::default().with_mock(&mock)).await.unwrap();
    let (user, key) = app.user_with_key("drain@example.com", "10").await;
    let pieces: Vec<String> = (0..15).map(|i| format!(" w{i}")).collect();
    mock.reply_with(Reply::SlowStream {
        pieces,
        delay: Duration::from_millis(30),
        end: StreamEnd::Finish,
        prompt_tokens: 3,
    });

    let resp = app.chat(&key, &stream_body(MOCK_MODEL, "x", true)).send().await.unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    // Shutdown begins while the stream is in flight.
    let url = app.db.url.clone();
    let stopping = tokio::spawn(async move {
        let result = app.stop().await;
        (app, result)
    });
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "the in-flight stream was completed");
    let (app, result) = stopping.await.unwrap();
    result.unwrap();

    // New connections are refused once stopped.
    assert!(app.http.get(format!("{}/healthz", app.url)).send().await.is_err());
    // Usage was flushed before the process would exit.
    let store = layers_store::connect(&ConnectOptions { url, max_connections: 1, app_role: None }).await.unwrap();
    let rows = store.recent_usage(user.id, 10, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, 200);
    assert_eq!(rows[0].usage.completion_tokens, 15);
}

#[tokio::test]
async fn serve_refuses_an_unmigrated_postgres_database() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = [
        ("LAYERS_DATABASE_URL".to_owned(), db.url.clone()),
        ("LAYERS_KEYS__PEPPER".to_owned(), layers_testkit::app::TEST_PEPPER.to_owned()),
        ("LAYERS_DATA_DIR".to_owned(), dir.path().display().to_string()),
    ]
    .into();
    let settings = layers::config::load(None, &env).unwrap();
    assert!(!settings.database.auto_migrate, "PostgreSQL is migrated by `layers migrate`, not by serve");
    let err = layers::startup::prepare(settings).await.err().expect("serve must refuse");
    let text = format!("{err:#}");
    assert!(text.contains("layers migrate"), "{text}");
}
