//! A fast mock OpenAI-compatible upstream: fixed answers, no parsing beyond the `stream` flag,
//! so the benchmark measures the gateway and not the mock.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1730000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_bench"}"#;

fn stream_events() -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        )
    };
    let mut v = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for w in ["Hello!", " How", " can", " I", " help", " you", " today?"] {
        v.push(chunk(&format!("{{\"content\":\"{w}\"}}"), "null"));
    }
    v.push(chunk("{}", "\"stop\""));
    v.push("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n".to_owned());
    v.push("data: [DONE]\n\n".to_owned());
    v.into_iter().map(Bytes::from).collect()
}

pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // The orchestrator reads the port from the first line.
    println!("{}", listener.local_addr()?);
    let events: &'static [Bytes] = Box::leak(stream_events().into_boxed_slice());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let streaming = body.windows(13).any(|w| w == b"\"stream\":true");
                let resp = if streaming {
                    let frames = futures_iter(events);
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(StreamBody::new(frames).boxed())
                } else {
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(COMPLETION.as_bytes())).map_err(|e| match e {}).boxed())
                };
                Ok::<_, Infallible>(resp.unwrap_or_default())
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

fn futures_iter(events: &'static [Bytes]) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    futures_util::stream::iter(events.iter().cloned().map(|b| Ok(Frame::data(b))))
}
