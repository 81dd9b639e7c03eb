//! `cargo run --example browser`: a native Netabase node and a page that
//! runs a second node in your browser, both holding one shared list.
//!
//! Builds the page's wasm module (`examples/browser/app.rs`, release, with
//! wasm-bindgen), starts the native node listening on WebSocket on
//! 127.0.0.1, and serves the page at <http://127.0.0.1:8080/>. Open it in
//! two tabs: each tab is a peer with its own storage, and every item added
//! or deleted in one shows up in the other and here. Lines typed into this
//! terminal are added by the native node.
//!
//! ```text
//! cargo run --example browser -- [--port 8080 (0: any)] [--data DIR] [--no-build]
//! ```
//!
//! Needs the `wasm32-unknown-unknown` target and `wasm-bindgen-cli` at the
//! wasm-bindgen version in Cargo.lock (`tests/browser/run` installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use netabase::node::{Netabase, NetabaseConfig};
use netabase_workspace::models::{Item, ItemQueries};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;

#[path = "http.rs"]
mod http;

const LIST: &str = "shared";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 8080u16;
    let mut data = PathBuf::from("target/browser-example/node");
    let mut build = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            "--data" => data = args.next().ok_or("--data needs a value")?.into(),
            "--no-build" => build = false,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let pkg = PathBuf::from("target/browser-example/pkg");
    if build {
        build_page(&pkg)?;
    }

    let config = NetabaseConfig {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0/ws".parse()?],
        ..NetabaseConfig::default()
    };
    let node = Netabase::new_with_path(&data, config)?;
    node.register::<Item>()?;
    node.start_swarm().await?;
    let native = node.addresses()[0].to_string();
    let page = TcpListener::bind(("127.0.0.1", port)).await?;
    let port = page.local_addr()?.port();
    println!("native node {} at {native}", node.peer_id());
    println!(
        "open http://127.0.0.1:{port}/ (type a line here to add an item from the native node)"
    );

    let typed = node.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Err(error) = add(&typed, line).await {
                eprintln!("could not add: {error}");
            }
        }
    });
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            accepted = page.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (node, native, pkg) = (node.clone(), native.clone(), pkg.clone());
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, &node, &native, &pkg).await {
                        eprintln!("page server: {error}");
                    }
                });
            }
        }
    }
    node.shutdown().await?;
    Ok(())
}

/// The native node adds an item to the shared list.
async fn add(node: &Netabase, text: String) -> Result<(), netabase::node::NodeError> {
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    node.put_record(Item {
        id,
        list: LIST.into(),
        text,
    })
    .await
    .map(drop)
}

/// The page, its worker and wasm module, and two calls for scripts:
/// `/native/add?text=..` (the native node writes) and `/native/items`.
async fn serve(
    stream: tokio::net::TcpStream,
    node: &Netabase,
    native: &str,
    pkg: &Path,
) -> std::io::Result<()> {
    let request = http::Request::read(stream).await?;
    match request.path.as_str() {
        "/" | "/index.html" => {
            let html = include_str!("index.html").replace("{{NATIVE}}", native);
            request
                .respond(200, "text/html; charset=utf-8", html.as_bytes())
                .await
        }
        "/worker.js" => {
            let js = include_str!("worker.js");
            request.respond(200, "text/javascript", js.as_bytes()).await
        }
        "/native/add" => {
            let text = request.text("text");
            match add(node, text).await {
                Ok(()) => request.respond(200, "text/plain", b"ok").await,
                Err(error) => {
                    request
                        .respond(500, "text/plain", error.to_string().as_bytes())
                        .await
                }
            }
        }
        "/native/items" => {
            let items = node
                .query_local_records::<Item, _, _>(|tree| tree.by_list(LIST))
                .await
                .unwrap_or_default();
            let text: Vec<String> = items.into_iter().map(|item| item.text).collect();
            request
                .respond(200, "text/plain", text.join("\n").as_bytes())
                .await
        }
        path if path.starts_with("/pkg/") && !path.contains("..") => {
            let file = pkg.join(&path["/pkg/".len()..]);
            let kind = if path.ends_with(".wasm") {
                "application/wasm"
            } else {
                "text/javascript"
            };
            match tokio::fs::read(&file).await {
                Ok(bytes) => request.respond(200, kind, &bytes).await,
                Err(_) => {
                    request
                        .respond(404, "text/plain", b"not built: run without --no-build")
                        .await
                }
            }
        }
        _ => request.respond(404, "text/plain", b"not found").await,
    }
}

/// Builds the page's wasm module and its JavaScript glue into `pkg`.
fn build_page(pkg: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--profile",
            "wasm-release",
            "--target",
            "wasm32-unknown-unknown",
            "--example",
            "browser-app",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err("building the page's wasm module failed (is the target installed? `rustup target add wasm32-unknown-unknown`)".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let wasm = target.join("wasm32-unknown-unknown/wasm-release/examples/browser_app.wasm");
    let status = Command::new("wasm-bindgen")
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(pkg)
        .arg(&wasm)
        .status()
        .map_err(|error| {
            format!("could not run wasm-bindgen ({error}): install it with `cargo install wasm-bindgen-cli --version <the wasm-bindgen version in Cargo.lock>`, or run tests/browser/run once")
        })?;
    if !status.success() {
        return Err("wasm-bindgen failed".into());
    }
    Ok(())
}
