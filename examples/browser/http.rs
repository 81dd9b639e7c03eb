//! Just enough HTTP/1.1 for the browser example's page server and the
//! browser tests' control API: one GET per connection, answered and closed.

// Two binaries include this file, and each uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A request's path and query arguments (unescaped).
pub struct Request {
    pub path: String,
    pub args: HashMap<String, String>,
    stream: BufReader<TcpStream>,
}

impl Request {
    /// Reads a request's head.
    pub async fn read(stream: TcpStream) -> std::io::Result<Request> {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        // The rest of the head: nothing in it matters here.
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await? <= 2 {
                break;
            }
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let args = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), unescape(v)))
            .collect();
        Ok(Request {
            path: path.to_string(),
            args,
            stream,
        })
    }

    /// A numeric argument.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.args.get(name).and_then(|v| v.parse().ok())
    }

    /// A text argument, empty when absent.
    pub fn text(&self, name: &str) -> String {
        self.args.get(name).cloned().unwrap_or_default()
    }

    /// Answers and closes the connection. Any origin may call: the browser
    /// tests' pages are served from another port.
    pub async fn respond(
        self,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> std::io::Result<()> {
        let reason = if status == 200 { "OK" } else { "Not OK" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut stream = self.stream.into_inner();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    }
}

/// `%XX` and `+` in a query value.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
