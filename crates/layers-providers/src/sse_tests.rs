use super::*;
use proptest::prelude::*;

fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c, &mut out).unwrap();
    }
    out
}

fn ev(data: &str) -> SseEvent {
    SseEvent { event: None, data: data.to_owned() }
}

#[test]
fn parses_the_grammar() {
    let input = b": comment\ndata: a\n\ndata:b\ndata:  c\n\nevent: message_stop\ndata: {}\n\nid: 1\n\ndata\n\n";
    let got = parse_all(&[input]);
    assert_eq!(
        got,
        vec![ev("a"), ev("b\n c"), SseEvent { event: Some("message_stop".into()), data: "{}".into() }, ev(""),]
    );
}

#[test]
fn all_line_endings() {
    let got = parse_all(&[b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]);
    assert_eq!(got, vec![ev("a"), ev("b"), ev("c")]);
}

#[test]
fn crlf_split_across_reads() {
    let got = parse_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n", b"\r\n"]);
    assert_eq!(got, vec![ev("a"), ev("b")]);
}

#[test]
fn multibyte_split_across_reads() {
    let text = "data: 你好, мир 👋\n\n".as_bytes();
    // Split inside the 4-byte emoji and inside a CJK character.
    let got = parse_all(&[&text[..8], &text[8..20], &text[20..]]);
    assert_eq!(got, vec![ev("你好, мир 👋")]);
}

#[test]
fn unterminated_event_is_not_dispatched() {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    d.push(b"data: [DONE]", &mut out).unwrap();
    assert!(out.is_empty());
    assert!(d.has_partial_event());
}

#[test]
fn endless_lines_and_events_are_refused() {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    let chunk = vec![b'x'; 1024 * 1024];
    let mut result = Ok(());
    for _ in 0..20 {
        result = d.push(&chunk, &mut out);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(EventTooLarge));
    let mut d = SseDecoder::new();
    let line = format!("data: {}\n", "y".repeat(1024 * 1024));
    let mut result = Ok(());
    for _ in 0..20 {
        result = d.push(line.as_bytes(), &mut out);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(EventTooLarge), "many data lines without a blank line");
}

#[test]
fn writes_events() {
    let mut buf = Vec::new();
    write_data(&mut buf, b"{\"a\":1}");
    write_event(&mut buf, "ping", b"{}");
    assert_eq!(buf, b"data: {\"a\":1}\n\nevent: ping\ndata: {}\n\n");
    assert_eq!(parse_all(&[&buf]).len(), 2);
}

fn sample_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for (i, word) in ["Hello", " 世界", " 🌍", "\"quoted\"", " Ωmega"].iter().enumerate() {
        let sep: &[u8] = if i % 2 == 0 { b"\n\n" } else { b"\r\n\r\n" };
        s.extend_from_slice(format!("data: {{\"i\":{i},\"t\":\"{word}\"}}").as_bytes());
        s.extend_from_slice(sep);
    }
    s.extend_from_slice(b"event: done\r\ndata: [DONE]\r\n\r\n");
    s
}

proptest! {
    #[test]
    fn any_split_parses_the_same(cuts in proptest::collection::vec(0usize..400, 0..40)) {
        let input = sample_stream();
        let whole = parse_all(&[&input]);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for c in cuts {
            pieces.push(&input[last..c]);
            last = c;
        }
        pieces.push(&input[last..]);
        prop_assert_eq!(parse_all(&pieces), whole);
    }

    #[test]
    fn byte_at_a_time_parses_the_same(_x in 0..1u8) {
        let input = sample_stream();
        let pieces: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(parse_all(&pieces), parse_all(&[&input]));
    }
}
