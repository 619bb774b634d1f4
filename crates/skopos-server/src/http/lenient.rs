//! Request targets read as leniently as Go reads them.
//!
//! Prometheus (Go's `net/http`) answers `GET /api/v1/query?query=up{job="node"}`
//! typed by hand with a raw `"`; hyper refuses the request line before any
//! handler runs and answers an empty 400. [`Lenient`] wraps each accepted
//! connection (after TLS) and percent-encodes, in the query part of each
//! HTTP/1 request line only, the bytes the `http` crate refuses there and Go
//! takes (`"`, `<`, `>`, `\`, `^`, `` ` ``, `|`, and bytes outside ASCII), so
//! the form decoder gives the handler the text the client meant.
//!
//! To find each request line on a kept-alive connection it follows the
//! framing: a head ends at its blank line, then `Content-Length` bytes of
//! body are passed untouched. A chunked body, an upgrade (the WebSocket of
//! `/loki/api/v1/tail`), HTTP/2's preface or a head it cannot read make it
//! step aside for the rest of the connection: it never rewrites a byte it
//! is not sure is a request target.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An acceptor that wraps `A`'s streams in [`LenientStream`].
#[derive(Clone, Debug)]
pub struct Lenient<A>(pub A);

impl<A, I, S> Accept<I, S> for Lenient<A>
where
    A: Accept<I, S> + Clone + Send + 'static,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = LenientStream<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.0.accept(stream, service);
        Box::pin(async move {
            let (s, svc) = inner.await?;
            Ok((LenientStream::new(s), svc))
        })
    }
}

/// The longest head line followed; a longer one makes the rewriter step
/// aside (hyper refuses such heads on its own).
const MAX_LINE: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the request line: before the target, in its path, in its query,
    /// after it.
    Method,
    Path,
    Query,
    Version,
    /// In the header lines.
    Headers,
    /// Body bytes left before the next request line.
    Body(u64),
    /// Not following any more: bytes pass untouched.
    Aside,
}

/// What [`LenientStream`] does to the bytes read, as a function of the
/// bytes: kept apart from the I/O so it can be tested alone.
#[derive(Debug)]
pub struct Rewriter {
    state: State,
    /// The current line (request line or header line).
    line: Vec<u8>,
    content_length: u64,
    aside_after_head: bool,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::Method,
            line: Vec::new(),
            content_length: 0,
            aside_after_head: false,
        }
    }
}

/// Bytes the `http` crate refuses in a query and Go accepts.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'|') || b >= 0x80
}

impl Rewriter {
    /// Appends to `out` what hyper should read for `input`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Aside => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                State::Body(left) => {
                    let n = (left.min((input.len() - i) as u64)) as usize;
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.state = match left - n as u64 {
                        0 => State::Method,
                        rest => State::Body(rest),
                    };
                }
                _ => {
                    self.byte(input[i], out);
                    i += 1;
                }
            }
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        self.line.push(b);
        if self.line.len() > MAX_LINE {
            self.state = State::Aside;
            out.push(b);
            return;
        }
        match self.state {
            State::Method => {
                if b == b' ' {
                    if self.line.starts_with(b"PRI ") {
                        self.state = State::Aside;
                    } else {
                        self.state = State::Path;
                    }
                } else if b == b'\n' && self.line.len() <= 2 {
                    // Blank lines between requests are allowed.
                    self.line.clear();
                }
                out.push(b);
            }
            State::Path | State::Query => {
                if b == b' ' {
                    self.state = State::Version;
                    out.push(b);
                } else if b == b'\r' || b == b'\n' {
                    self.end_request_line(b, out);
                } else if self.state == State::Query && needs_escape(b) {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                } else {
                    if b == b'?' {
                        self.state = State::Query;
                    }
                    out.push(b);
                }
            }
            State::Version => {
                if b == b'\n' {
                    self.line.clear();
                    self.start_head();
                }
                out.push(b);
            }
            State::Headers => {
                out.push(b);
                if b == b'\n' {
                    self.header_line();
                }
            }
            State::Body(_) | State::Aside => out.push(b),
        }
    }

    fn end_request_line(&mut self, b: u8, out: &mut Vec<u8>) {
        // HTTP/0.9-style line without a version: hyper refuses it.
        self.state = State::Aside;
        out.push(b);
    }

    fn start_head(&mut self) {
        self.state = State::Headers;
        self.content_length = 0;
        self.aside_after_head = false;
    }

    /// A complete header line is in `self.line`.
    fn header_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let text = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(&line);
        if text.is_empty() {
            self.state = if self.aside_after_head {
                State::Aside
            } else if self.content_length > 0 {
                State::Body(self.content_length)
            } else {
                State::Method
            };
            return;
        }
        let Some(colon) = text.iter().position(|&c| c == b':') else {
            self.aside_after_head = true;
            return;
        };
        let name = text[..colon].to_ascii_lowercase();
        let value = String::from_utf8_lossy(&text[colon + 1..])
            .trim()
            .to_ascii_lowercase();
        match name.as_slice() {
            b"content-length" => match value.parse::<u64>() {
                Ok(n) if self.content_length == 0 || self.content_length == n => {
                    self.content_length = n
                }
                _ => self.aside_after_head = true,
            },
            b"transfer-encoding" | b"upgrade" => self.aside_after_head = true,
            _ => {}
        }
    }
}

/// An accepted connection whose reads go through a [`Rewriter`].
pub struct LenientStream<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewritten bytes not yet given to the reader.
    pending: Vec<u8>,
    at: usize,
    scratch: Box<[u8]>,
}

impl<S> LenientStream<S> {
    pub fn new(inner: S) -> Self {
        LenientStream {
            inner,
            rewriter: Rewriter::default(),
            pending: Vec::new(),
            at: 0,
            scratch: vec![0; 16 << 10].into_boxed_slice(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.at < me.pending.len() {
                let n = (me.pending.len() - me.at).min(buf.remaining());
                buf.put_slice(&me.pending[me.at..me.at + n]);
                me.at += n;
                return Poll::Ready(Ok(()));
            }
            me.pending.clear();
            me.at = 0;
            if me.rewriter.state == State::Aside || matches!(me.rewriter.state, State::Body(_)) {
                // Straight into the caller's buffer: bodies are most bytes.
                if let State::Body(left) = me.rewriter.state {
                    if left >= buf.remaining() as u64 {
                        let before = buf.filled().len();
                        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
                        if let Poll::Ready(Ok(())) = r {
                            let n = (buf.filled().len() - before) as u64;
                            me.rewriter.state = match left - n.min(left) {
                                0 => State::Method,
                                rest => State::Body(rest),
                            };
                        }
                        return r;
                    }
                } else {
                    return Pin::new(&mut me.inner).poll_read(cx, buf);
                }
            }
            let mut rb = ReadBuf::new(&mut me.scratch);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let filled = rb.filled();
                    if filled.is_empty() {
                        return Poll::Ready(Ok(())); // end of stream
                    }
                    let input = filled.to_vec();
                    me.rewriter.feed(&input, &mut me.pending);
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::Rewriter;

    /// Feeds `input` in pieces of `step` bytes.
    fn rewrite(input: &[u8], step: usize) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            r.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn raw_quotes_in_the_query_are_escaped_and_nothing_else_changes() {
        let input = b"GET /api/v1/query?query=up{job=\"node\"}|x HTTP/1.1\r\nHost: a\r\n\r\n";
        let want = b"GET /api/v1/query?query=up{job=%22node%22}%7Cx HTTP/1.1\r\nHost: a\r\n\r\n";
        for step in [1, 3, 7, input.len()] {
            assert_eq!(rewrite(input, step), want, "step {step}");
        }
        // The path and a request without a query are left alone.
        let plain = b"GET /a\"b HTTP/1.1\r\n\r\n";
        assert_eq!(rewrite(plain, 1), plain);
    }

    #[test]
    fn bodies_pass_untouched_and_the_next_request_line_is_found() {
        let body = b"query=up{a=\"b\"} x\"y HTTP/1.1\r\n";
        let mut input = format!(
            "POST /api/v1/query?q=\"1\" HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET /x?q=\"2\" HTTP/1.1\r\n\r\n");
        let mut want = format!(
            "POST /api/v1/query?q=%221%22 HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        want.extend_from_slice(body);
        want.extend_from_slice(b"GET /x?q=%222%22 HTTP/1.1\r\n\r\n");
        for step in [1, 5, input.len()] {
            assert_eq!(rewrite(&input, step), want, "step {step}");
        }
    }

    #[test]
    fn chunked_bodies_upgrades_and_http2_make_it_step_aside() {
        for head in [
            "POST /a?q=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /tail?q=1 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        ] {
            let mut input = head.as_bytes().to_vec();
            input.extend_from_slice(b"GET /x?q=\"2\" HTTP/1.1\r\n\r\n");
            assert_eq!(rewrite(&input, 1), input, "{head}");
        }
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\"\x80\"";
        assert_eq!(rewrite(h2, 1), h2);
    }

    #[test]
    fn non_ascii_query_bytes_are_percent_encoded() {
        let input = "GET /q?query=x{a=\"é\"} HTTP/1.1\r\n\r\n";
        assert_eq!(
            rewrite(input.as_bytes(), 2),
            b"GET /q?query=x{a=%22%C3%A9%22} HTTP/1.1\r\n\r\n"
        );
    }
}
