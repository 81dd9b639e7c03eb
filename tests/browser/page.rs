//! The browser example's page in headless Chromium, driven through
//! ChromeDriver's WebDriver API: started by `tests/browser/run` against a
//! running `cargo run --example browser`.
//!
//! It opens the page, has the native node write an item and waits until
//! the page lists it; opens a second tab (a peer of its own), adds an item
//! there and waits until the first tab lists it; adds an item in the first
//! tab and waits until the native node holds it, deletes it from the page
//! and waits until the native node no longer lists it, then saves a
//! screenshot of the first tab. Exits non-zero,
//! saying what it waited for, if any step fails within its time.
//!
//! ```text
//! browser-page-check <page url> <screenshot.png>
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long each step may take.
const STEP: Duration = Duration::from_secs(60);

fn main() {
    let mut args = std::env::args().skip(1);
    let page = args
        .next()
        .expect("usage: browser-page-check <page url> <screenshot.png>");
    let screenshot = args
        .next()
        .expect("usage: browser-page-check <page url> <screenshot.png>");
    let driver = Driver::start();
    let result = check(&driver, &page, &screenshot);
    drop(driver);
    if let Err(error) = result {
        eprintln!("page check failed: {error}");
        std::process::exit(1);
    }
    println!("page check passed; screenshot at {screenshot}");
}

fn check(driver: &Driver, page: &str, screenshot: &str) -> Result<(), String> {
    let session = driver.session()?;
    let base = page.trim_end_matches('/');
    session.call(
        "POST",
        "url",
        &format!(r#"{{"url":{}}}"#, json_string(page)),
    )?;
    wait(&session, "the page's node starts", |s| {
        Ok(s.text()?.contains("this tab is peer"))
    })?;
    // Texts of this run: the native node keeps what earlier runs wrote.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000)
        .unwrap_or(0);
    let native_text = format!("Written by the native node ({run})");
    get(&format!(
        "{base}/native/add?text=Written+by+the+native+node+%28{run}%29"
    ))?;
    wait(&session, "the page lists the native node's item", |s| {
        Ok(s.text()?.contains(&native_text))
    })?;
    let page_text = format!("Added in the page ({run})");
    session.add_item(&page_text)?;
    wait(&session, "the native node holds the page's item", |_| {
        Ok(get(&format!("{base}/native/items"))?.contains(&page_text))
    })?;
    // Delete the page's item from the page: its row's button.
    session.script(&format!(
        "[...document.querySelectorAll('#items li')].find(li => li.textContent.startsWith({})).querySelector('button').click();",
        json_string(&page_text)
    ))?;
    wait(&session, "the native node drops the deleted item", |_| {
        Ok(!get(&format!("{base}/native/items"))?.contains(&page_text))
    })?;
    // A second tab: a peer of its own (its own storage), synced through
    // the native node.
    let first = json_value_string(&session.call("GET", "window", "")?).ok_or("no window handle")?;
    let second = session.call("POST", "window/new", r#"{"type":"tab"}"#)?;
    let second = json_field(&second, "handle").ok_or("no new tab")?;
    session.switch_to(&second)?;
    session.call(
        "POST",
        "url",
        &format!(r#"{{"url":{}}}"#, json_string(page)),
    )?;
    wait(
        &session,
        "the second tab lists the native node's item",
        |s| Ok(s.text()?.contains(&native_text)),
    )?;
    let tab_text = format!("Added in a second tab ({run})");
    session.add_item(&tab_text)?;
    session.switch_to(&first)?;
    wait(&session, "the first tab lists the second tab's item", |s| {
        Ok(s.text()?.contains(&tab_text))
    })?;
    let png = session.call("GET", "screenshot", "")?;
    let png = base64_decode(&json_value_string(&png).ok_or("no screenshot in the answer")?)?;
    std::fs::write(screenshot, png).map_err(|e| format!("writing {screenshot}: {e}"))?;
    if !session.text()?.contains(&native_text) {
        return Err("the native node's item is not on the page at the screenshot".into());
    }
    Ok(())
}

fn wait(
    session: &Session,
    what: &str,
    mut done: impl FnMut(&Session) -> Result<bool, String>,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if done(session)? {
            println!("{what}: {:.1} s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        if start.elapsed() > STEP {
            let text = session.text().unwrap_or_default();
            return Err(format!(
                "timed out waiting until {what}; the page says:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ChromeDriver on a free loopback port.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, port };
        let start = Instant::now();
        while driver.request("GET", "/status", "").is_err() {
            assert!(start.elapsed() < STEP, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn session(&self) -> Result<Session<'_>, String> {
        // The flags the machine needs: as root, and with no outside network
        // for Chromium's own services.
        let capabilities = r#"{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--disable-quic","--no-first-run","--disable-background-networking","--disable-component-update","--disable-sync","--window-size=800,600"]}}}}"#;
        let answer = self.request("POST", "/session", capabilities)?;
        let id = json_field(&answer, "sessionId").ok_or_else(|| format!("no session: {answer}"))?;
        Ok(Session { driver: self, id })
    }

    fn request(&self, method: &str, path: &str, body: &str) -> Result<String, String> {
        http(self.port, method, path, body)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn call(&self, method: &str, what: &str, body: &str) -> Result<String, String> {
        let answer = self
            .driver
            .request(method, &format!("/session/{}/{what}", self.id), body)?;
        if answer.contains(r#""error":"#) {
            return Err(format!("webdriver {what}: {answer}"));
        }
        Ok(answer)
    }

    fn script(&self, script: &str) -> Result<String, String> {
        self.call(
            "POST",
            "execute/sync",
            &format!(r#"{{"script":{},"args":[]}}"#, json_string(script)),
        )
    }

    fn switch_to(&self, handle: &str) -> Result<(), String> {
        self.call(
            "POST",
            "window",
            &format!(r#"{{"handle":{}}}"#, json_string(handle)),
        )
        .map(drop)
    }

    /// Types `text` into the page's form and submits it.
    fn add_item(&self, text: &str) -> Result<(), String> {
        self.script(&format!(
            "document.getElementById('text').value = {}; document.querySelector('#add button').click();",
            json_string(text)
        ))
        .map(drop)
    }

    /// The page's visible text.
    fn text(&self) -> Result<String, String> {
        let answer = self.script("return document.body.innerText;")?;
        Ok(json_value_string(&answer).unwrap_or_default())
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .request("DELETE", &format!("/session/{}", self.id), "");
    }
}

/// A GET to a URL on 127.0.0.1.
fn get(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .ok_or("only http://127.0.0.1:PORT/ URLs")?;
    let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
    http(
        port.parse().map_err(|_| "bad port")?,
        "GET",
        &format!("/{path}"),
        "",
    )
}

/// One HTTP/1.1 request with `Connection: close`; the answer's body.
fn http(port: u16, method: &str, path: &str, body: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(STEP))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // ChromeDriver keeps the connection open whatever the request says:
    // read the head, then as much body as it announces.
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before an answer".into());
        }
        answer.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    match length {
        Some(length) => {
            while answer.len() < head_end + length {
                let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut answer).map_err(|e| e.to_string())?;
        }
    }
    let body = String::from_utf8_lossy(&answer[head_end..]).into_owned();
    if head.contains("transfer-encoding: chunked") {
        return Ok(dechunk(&body));
    }
    Ok(body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string value of `"name":"…"` in a JSON answer.
fn json_field(json: &str, name: &str) -> Option<String> {
    let at = json.find(&format!("\"{name}\""))? + name.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    read_json_string(rest)
}

/// The answer's `"value"` when it is a string.
fn json_value_string(json: &str) -> Option<String> {
    json_field(json, "value")
}

fn read_json_string(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('?'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("not base64: {:?}", c as char)),
        } as u32)
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            n |= value(b)? << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Ok(out)
}
