//! A client that disconnects mid-stream is still metered (a peer lost charges this way): the
//! usage row is written from the stream's drop, for what was generated.

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
        assert!(row.usage_estimated, "no upstream usage arrived, so it is estimated");
        assert!(row.usage.prompt_tokens > 0);
        assert!(row.cost.0 > 0, "what was generated is charged");
    }
    // The upstream connections were closed, not left generating: the mock saw 3 requests only.
    assert_eq!(mock.requests().len(), 3);
}
