//! A real Images server on SQLite + local disk for `scripts/bench-images.sh`'s cached-hit measurement:
//! uploads `<input>`, requests `/cdn-cgi/image/<options>/…` once so the derivative is cached, prints
//! that URL on stdout, then serves until stdin closes.
//!
//! Usage: bench_serve <input> [options, default "width=800,quality=85"]

use std::{io::BufRead, sync::Arc};

use images::{ImagesConfig, ImagesService};
use platform::Platform;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(input) = args.get(1) else {
        eprintln!("usage: bench_serve <input> [options]");
        std::process::exit(2);
    };
    let options = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("width=800,quality=85");
    let data = std::fs::read(input).expect("read input");

    let tp = platform::testing::embedded().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut platform_config = (*tp.platform.config).clone();
    platform_config.public_url = Some(format!("http://{addr}"));
    let platform = Platform {
        config: Arc::new(platform_config),
        ..tp.platform.clone()
    };
    let mut config = ImagesConfig::defaults();
    config.max_upload_bytes = 64 * 1024 * 1024;
    let service = ImagesService::start(platform.clone(), config)
        .await
        .expect("start");
    let app = platform::http::apply_layers(service.router(), &platform.config);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = reqwest::Client::new();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(data).file_name("bench.jpg"),
    );
    let uploaded: serde_json::Value = client
        .post(format!(
            "http://{addr}/client/v4/accounts/{}/images/v1",
            tp.account_id
        ))
        .bearer_auth(&tp.token)
        .multipart(form)
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("upload answer");
    let public = uploaded["result"]["variants"][0]
        .as_str()
        .expect("delivery URL");
    let source = public
        .strip_prefix(&format!("http://{addr}/"))
        .and_then(|p| p.strip_suffix("/public"))
        .expect("delivery path");
    let url = format!("http://{addr}/cdn-cgi/image/{options}/{source}");
    let warm = client.get(&url).send().await.expect("warm-up request");
    assert_eq!(warm.status(), 200, "warm-up request failed");
    println!("{url}");

    // Serve until the caller closes our stdin.
    tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {})
        .await
        .expect("stdin");
}
