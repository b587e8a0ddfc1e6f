//! A line for hyper's own answers to requests it cannot parse.
//!
//! Hyper answers a request line over 64 KiB with `414`, headers over its buffer with `431` and a
//! malformed request with `400`, then closes the connection. It does so before any service runs
//! and offers no hook, so those answers have an empty body and no `x-dkv-node` header: a client
//! that sent a 100 KB key would get a bare `414` and could not even tell it came from a node.
//!
//! [`Explained`] wraps the connection and rewrites exactly those answers on their way out. It
//! recognises them by what only hyper writes: a response head alone in one write, with status
//! 400, 414 or 431, `content-length: 0` and no `x-dkv-node` header, written while no answer of
//! the router is in flight and once everything written before was flushed. The router's own
//! answers always carry that header and error answers always a body (`answers.rs`), so none of
//! them matches; everything else passes through untouched.
//!
//! "No answer in flight" is counted, not guessed from the bytes: [`InFlight`] counts the answers
//! the router has begun and whose body hyper has not yet dropped, and a write counts as starting
//! an answer only after a flush with none in flight. Until 2026-12-07 a write was taken to start
//! an answer when the write before it had been taken whole: a value whose last 64 KiB piece was
//! exactly such a head was rewritten in the middle of a GET's body, and the bytes it added broke
//! the next answer on that keep-alive connection (found by a code-reading hunt: a client that may
//! write could corrupt what others read). Nothing is rewritten on an HTTP/2 connection, whose
//! errors are frames.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::front::answers;

/// The router's answers in flight on one connection: begun, and their body not yet dropped by
/// hyper (it drops a body once it has taken its end).
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// One more answer in flight, until the returned mark is dropped.
    pub fn begin(&self) -> Answering {
        self.0.fetch_add(1, Ordering::AcqRel);
        Answering(self.0.clone())
    }

    fn none(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

/// An answer in flight (see [`InFlight`]).
#[derive(Debug)]
pub struct Answering(Arc<AtomicUsize>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// The router's answer to one request: in flight from the call until its body is dropped.
    pub struct Tracking<F> {
        #[pin]
        inner: F,
        answering: Option<Answering>,
    }
}

impl<F> Tracking<F> {
    pub fn new(inner: F, answering: Answering) -> Self {
        Tracking { inner, answering: Some(answering) }
    }
}

impl<F, B, E> Future for Tracking<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.inner.poll(cx));
        let answering = this.answering.take();
        Poll::Ready(answer.map(|r| r.map(|inner| Tracked { inner, _answering: answering })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, in flight until hyper drops it.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        _answering: Option<Answering>,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose hyper-made error answers get a body and the node's header.
pub struct Explained<T> {
    inner: T,
    /// The `x-dkv-node` value.
    node: String,
    /// The router's answers in flight on this connection.
    in_flight: InFlight,
    /// Whether the next write starts a new answer: nothing was written since a flush that
    /// came with no answer in flight (or ever).
    at_start: bool,
    /// Whether the client spoke HTTP/2 (its first bytes were the preface): nothing is rewritten.
    http2: bool,
    /// Whether anything was read yet.
    read_any: bool,
    /// A rewritten answer being written, and how many bytes of the original it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> Explained<T> {
    pub fn new(inner: T, node: impl std::fmt::Display, in_flight: InFlight) -> Self {
        let node = node.to_string();
        Explained { inner, node, in_flight, at_start: true, http2: false, read_any: false, pending: None }
    }
}

/// The answer to write instead of `head`, if `head` is one of hyper's bare error answers.
fn explain(head: &[u8], node: &str) -> Option<Vec<u8>> {
    // Most writes are answers of other statuses: tell them apart from the status line alone.
    if !head.starts_with(b"HTTP/1.") || !matches!(head.get(9..13), Some(b"400 " | b"414 " | b"431 ")) {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    if text.find("\r\n\r\n")? + 4 != text.len() {
        return None;
    }
    let mut lines = text[..text.len() - 4].split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    if ![400, 414, 431].contains(&code) {
        return None;
    }
    let headers: Vec<(&str, &str)> =
        lines.map(|l| l.split_once(':').map(|(n, v)| (n, v.trim()))).collect::<Option<_>>()?;
    let named = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    if named("content-length") != Some("0") || named(dkv_membership::api::NODE_HEADER).is_some() {
        return None;
    }
    let body = answers::explain(StatusCode::from_u16(code).ok()?);
    let mut out = format!("{status_line}\r\n");
    for (name, value) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("content-length")) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if named("connection").is_none() {
        out.push_str("connection: close\r\n");
    }
    out.push_str(&format!(
        "content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}: {node}\r\n\r\n{body}",
        body.len(),
        dkv_membership::api::NODE_HEADER
    ));
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> Explained<T> {
    /// Write out the rewritten answer; `Ready(n)` with the original's length once it is all out.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some((bytes, written, stands_for)) = &mut self.pending else { return Poll::Ready(Ok(0)) };
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let n = *stands_for;
        self.pending = None;
        self.at_start = false;
        Poll::Ready(Ok(n))
    }

    /// Start rewriting when `data` (all of one write) is a bare error answer.
    fn intercept(&mut self, data: &[u8]) -> bool {
        if !self.at_start || self.http2 || !self.in_flight.none() {
            return false;
        }
        match explain(data, &self.node) {
            Some(answer) => {
                self.pending = Some((answer, 0, data.len()));
                true
            }
            None => false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Explained<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if !this.read_any && buf.filled().len() > before {
            this.read_any = true;
            // HTTP/2's preface begins `PRI * HTTP/2.0`; no HTTP/1 request of ours begins `PRI`.
            this.http2 = buf.filled()[before..].starts_with(b"PRI");
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Explained<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_some() || this.intercept(buf) {
            return this.drain(cx);
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.at_start = false;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        let only = match (full.next(), full.next()) {
            (Some(one), None) => Some(&**one),
            _ => None,
        };
        if this.pending.is_some() || only.is_some_and(|one| this.intercept(one)) {
            return this.drain(cx);
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.at_start = false;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_some() {
            ready!(self.drain(cx))?;
        }
        // Read before the flush: an answer that ends while it runs must not count as flushed.
        let none_in_flight = self.in_flight.none();
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        // hyper writes what it holds before it flushes: all it wrote of earlier answers is out.
        if none_in_flight {
            self.at_start = true;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_some() {
            ready!(self.drain(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BARE_414: &str =
        "HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 22:16:55 GMT\r\n\r\n";

    #[test]
    fn bare_parse_error_answers_get_a_line_and_the_node_header() {
        let out = String::from_utf8(explain(BARE_414.as_bytes(), "00ab").unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("\r\nx-dkv-node: 00ab") && head.contains("\r\ndate: Mon"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head}");
        assert!(
            body.ends_with('\n') && body.trim().lines().count() == 1 && body.contains("send a shorter one"),
            "{body}"
        );
        let bad = explain(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", "n").unwrap();
        assert!(String::from_utf8(bad).unwrap().contains("connection: close\r\n"));
    }

    #[test]
    fn other_answers_pass_unchanged() {
        let ours = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-dkv-node: 1\r\n\r\n";
        let with_body = "HTTP/1.1 414 URI Too Long\r\ncontent-length: 3\r\n\r\n";
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let head_and_more = format!("{BARE_414}x");
        for text in [ours, with_body, ok, &head_and_more, "HTTP/1.1 414 URI", "\0DKV"] {
            assert!(explain(text.as_bytes(), "n").is_none(), "{text:?}");
        }
    }

    #[tokio::test]
    async fn only_a_write_that_starts_an_answer_is_rewritten() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut conn = Explained::new(a, "7", InFlight::default());
        conn.write_all(BARE_414.as_bytes()).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        assert!(got.contains("x-dkv-node: 7") && got.contains("send a shorter one"), "{got}");

        // The same bytes in the middle of a value are data: never touched.
        let (a, mut b) = tokio::io::duplex(8);
        let mut conn = Explained::new(a, "7", InFlight::default());
        let value = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{BARE_414}", BARE_414.len());
        let writer = tokio::spawn(async move {
            // A small pipe: the first write is taken in part, so the next one continues it.
            let first = conn.write(value.as_bytes()).await.unwrap();
            conn.write_all(&value.as_bytes()[first..]).await.unwrap();
            conn.shutdown().await.unwrap();
            value
        });
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, writer.await.unwrap());
    }

    /// A GET whose value ends with such a head, written as hyper writes a large body: in
    /// pieces, each flushed, the last alone. It is data while its answer is in flight; a bare
    /// answer after that answer's end and a flush is hyper's own, and rewritten.
    #[tokio::test]
    async fn a_value_that_ends_like_a_bare_answer_is_sent_as_it_is() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let in_flight = InFlight::default();
        let mut conn = Explained::new(a, "7", in_flight.clone());
        let answering = in_flight.begin();
        let piece = "a".repeat(1 << 16);
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", piece.len() + BARE_414.len());
        for part in [head.as_str(), &piece, BARE_414] {
            conn.write_all(part.as_bytes()).await.unwrap();
            conn.flush().await.unwrap();
        }
        drop(answering);
        conn.flush().await.unwrap();
        conn.write_all(BARE_414.as_bytes()).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        let sent = format!("{head}{piece}{BARE_414}");
        assert!(got.starts_with(&sent), "the value as stored");
        assert!(got[sent.len()..].contains("x-dkv-node: 7"), "then hyper's own answer, explained");
    }
}
