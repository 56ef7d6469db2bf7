//! A client that disconnects mid-stream is still metered (a peer lost charges this way): the
//! stream's drop hands the upstream stream to a drain task, which reads it to its end so the
//! charge is the provider's own usage, never less than it bills.

use std::time::Duration;

use futures_util::StreamExt;
use layers_testkit::mock_openai::{Reply, StreamEnd};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};

use crate::support::*;

#[tokio::test]
async fn usage_is_recorded_when_the_client_disconnects_mid_stream() {
    let mock = MockOpenAi::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with_mock(&mock)).await.unwrap();
    let (user, key) = app.user_with_key("gone@example.com", "10").await;
    let pieces: Vec<String> = (0..200).map(|i| format!(" word{i}")).collect();
    mock.reply_with(Reply::SlowStream {
        pieces,
        delay: Duration::from_millis(10),
        end: StreamEnd::Finish,
        prompt_tokens: 40,
    });

    for cut_after in [1usize, 3, 7] {
        let resp = app.chat(&key, &stream_body(MOCK_MODEL, "tell me a long story", false)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        for _ in 0..cut_after {
            body.next().await.unwrap().unwrap();
        }
        drop(body); // the client goes away mid-stream
    }

    let rows = app.wait_for_usage(&user, 3).await;
    for row in &rows {
        assert_eq!(row.status, 499, "recorded as client closed");
        assert_eq!(row.error_code.as_deref(), Some("client_closed"));
        assert!(!row.usage_estimated, "the provider's final usage was read after the client left");
        assert_eq!((row.usage.prompt_tokens, row.usage.completion_tokens), (40, 200), "{row:?}");
        assert!(row.cost.0 > 0 && row.charged == row.cost, "the whole generation is charged");
    }
    assert_eq!(mock.requests().len(), 3, "nothing was retried");
}
