//! End-to-end tests of delivery, signed URLs, `/cdn-cgi/image`, caching and metering.

mod common;

use std::time::Duration;

use axum::{response::Redirect, routing::get, Router};
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn upload_id(s: &Server, data: Vec<u8>) -> (String, String) {
    let (status, body) = s.upload(data, &[]).await;
    assert_eq!(status, 200, "{body}");
    let id = body["result"]["id"].as_str().unwrap().to_string();
    let hash_url = body["result"]["variants"][0].as_str().unwrap().to_string();
    (id, hash_url)
}

/// `/images/delivery/<hash>` of this server.
async fn delivery_base(s: &Server) -> String {
    let (_, config) = s.get_json(&s.api("/v1/config")).await;
    config["result"]["delivery_url_prefix"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn variants_are_delivered_with_caching_headers() {
    for s in servers(test_config).await {
        let (id, public) = upload_id(&s, jpeg(800, 600)).await;
        let (status, _) = s
            .send_json(
                Method::POST,
                &s.api("/v1/variants"),
                json!({"id": "thumb", "options": {"fit": "cover", "width": 100, "height": 100}}),
            )
            .await;
        assert_eq!(status, 200);
        let base = delivery_base(&s).await;

        let r = s.client.get(&public).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(dims(&r.bytes().await.unwrap()), (800, 600));

        let r = s
            .client
            .get(format!("{base}/{id}/thumb"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert_eq!(r.headers()["vary"], "Accept");
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age="));
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(dims(&r.bytes().await.unwrap()), (100, 100));

        let r = s
            .client
            .get(format!("{base}/{id}/thumb"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(
            s.client
                .get(format!("{base}/{id}/nosuch"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        assert_eq!(
            s.client
                .get(format!("{base}/nosuch-image/thumb"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );

        // Flexible variants: off by default, then on.
        let r = s
            .client
            .get(format!("{base}/{id}/w=40,sharpen=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        s.send_json(
            Method::PATCH,
            &s.api("/v1/config"),
            json!({"flexible_variants": true}),
        )
        .await;
        let r = s
            .client
            .get(format!("{base}/{id}/w=40,sharpen=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(dims(&r.bytes().await.unwrap()), (40, 30));
        let r = s
            .client
            .get(format!("{base}/{id}/w=40,bogus=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("bogus"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn signed_urls_guard_private_images() {
    for s in servers(test_config).await {
        let (status, body) = s
            .upload(jpeg(64, 64), &[("requireSignedURLs", "true")])
            .await;
        assert_eq!(status, 200);
        let url = body["result"]["variants"][0].as_str().unwrap().to_string();
        let path = s.path_of(&url);
        let (_, keys) = s.get_json(&s.api("/v1/keys")).await;
        let key = keys["result"]["keys"][0]["value"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec();

        assert_eq!(
            s.client.get(&url).send().await.unwrap().status(),
            403,
            "unsigned"
        );
        let exp = platform::time_util::now_ms() / 1000 + 300;
        let sig = images::signing::sign(&key, &path, &format!("exp={exp}"));
        let r = s
            .client
            .get(format!("{url}?exp={exp}&sig={sig}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private"));
        let bad = s
            .client
            .get(format!("{url}?exp={exp}&sig={}", "0".repeat(64)))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 403);
        let body: Value = bad.json().await.unwrap();
        assert_eq!(error_code(&body), 5410);
        let past = exp - 1000;
        let sig = images::signing::sign(&key, &path, &format!("exp={past}"));
        assert_eq!(
            s.client
                .get(format!("{url}?exp={past}&sig={sig}"))
                .send()
                .await
                .unwrap()
                .status(),
            403,
            "expired"
        );
        let other = s
            .client
            .get(format!(
                "{url}?exp={exp}&sig={}",
                images::signing::sign(b"wrong key", &path, &format!("exp={exp}"))
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 403);

        // A variant that never requires signatures serves private images unsigned.
        s.send_json(
            Method::POST,
            &s.api("/v1/variants"),
            json!({"id": "open", "options": {"width": 10}, "neverRequireSignedURLs": true}),
        )
        .await;
        let open = url.replace("/public", "/open");
        assert_eq!(s.client.get(&open).send().await.unwrap().status(), 200);
        // Private images are not reachable through /cdn-cgi/image.
        let r = s
            .client
            .get(format!(
                "{}/cdn-cgi/image/w=10/{}",
                s.base,
                path.trim_start_matches('/')
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
}

#[tokio::test]
async fn cdn_cgi_options_and_formats() {
    for s in servers(test_config).await {
        let (_, public) = upload_id(&s, jpeg(1200, 900)).await;
        let source = s.cdn_source(&public);
        let cdn = |opts: &str| format!("{}/cdn-cgi/image/{opts}/{source}", s.base);
        for (opts, expected) in [
            ("width=300", (300, 225)),
            ("w=300,h=300,fit=cover", (300, 300)),
            ("w=300,h=300,fit=contain", (300, 225)),
            ("w=300,h=300,fit=pad,background=%23ff0000", (300, 300)),
            ("w=2000,h=2000,fit=scale-down", (1200, 900)),
            ("w=2000,h=500,fit=crop,gravity=top", (1200, 500)),
            ("w=300,h=100,fit=squeeze", (300, 100)),
            ("w=100,dpr=2", (200, 150)),
            ("w=300,rotate=90,flip=h", (300, 400)),
            ("trim=100;100;100;100,blur=3,brightness=1.1,contrast=1.1,gamma=1.2,saturation=0.5,quality=low,metadata=none,anim=false", (1000, 700)),
        ] {
            let r = s.client.get(cdn(opts)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{opts}");
            assert_eq!(dims(&r.bytes().await.unwrap()), expected, "{}: {opts}", s.label);
        }
        // format=auto: avif > webp > original, by Accept; outputs decoded by ffprobe.
        for (accept, mime, codec) in [
            ("image/avif,image/webp,*/*", "image/avif", "av1"),
            ("image/webp,*/*", "image/webp", "webp"),
        ] {
            let r = s
                .client
                .get(cdn("width=300,format=auto"))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["content-type"], mime);
            let bytes = r.bytes().await.unwrap();
            if let Some((name, w, h)) = ffprobe(&bytes) {
                assert_eq!((name.as_str(), w, h), (codec, 300, 225));
            }
        }
        // Lossy WebP: a VP8 (not VP8L) bitstream whose size follows quality.
        let webp_at = |q: u32| {
            let url = cdn(&format!("width=300,format=webp,quality={q}"));
            let client = s.client.clone();
            async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
        };
        let (low, high) = (webp_at(30).await, webp_at(95).await);
        assert_eq!(&low[12..16], b"VP8 ");
        assert!(low.len() < high.len(), "{} vs {}", low.len(), high.len());
        assert_eq!(dims(&high), (300, 225));
        let r = s
            .client
            .get(cdn("width=300,format=auto"))
            .header("accept", "*/*")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        let r = s
            .client
            .get(cdn("width=300,format=png"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "image/png");
        let r = s
            .client
            .get(cdn("width=300,format=json"))
            .send()
            .await
            .unwrap();
        let info: Value = r.json().await.unwrap();
        assert_eq!(
            (info["width"].as_u64(), info["height"].as_u64()),
            (Some(300), Some(225))
        );

        for (opts, named) in [
            ("width=abc", "width"),
            ("fit=stretch", "fit"),
            ("frobnicate=2", "frobnicate"),
            ("rotate=45", "rotate"),
        ] {
            let r = s.client.get(cdn(opts)).send().await.unwrap();
            assert_eq!(r.status(), 400, "{opts}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(error_code(&body), 5400);
            assert!(
                body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains(named),
                "{body}"
            );
        }
        let r = s
            .client
            .get(cdn("w=100,h=50,format=avif,quality=60"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/avif");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(&bytes[4..12], b"ftypavif");
        if let Some((name, w, h)) = ffprobe(&bytes) {
            assert_eq!((name.as_str(), w, h), ("av1", 67, 50));
        }
        let r = s
            .client
            .get(format!(
                "{}/cdn-cgi/image/w=10/not/a/known/path.jpg",
                s.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
}

#[tokio::test]
async fn concurrent_identical_requests_compute_once_and_meter_uniquely() {
    for s in servers(test_config).await {
        let (_, public) = upload_id(&s, jpeg(1600, 1200)).await;
        let source = s.cdn_source(&public);
        let url = format!("{}/cdn-cgi/image/width=333,format=auto/{source}", s.base);
        let before = s.service.transforms_computed();
        let requests = (0..8).map(|_| s.client.get(&url).header("accept", "image/webp").send());
        let responses = futures::future::join_all(requests).await;
        for r in responses {
            assert_eq!(r.unwrap().status(), 200);
        }
        assert_eq!(
            s.service.transforms_computed() - before,
            1,
            "8 identical requests, one computation"
        );
        // Another Accept gives another output format: computed, but the same unique transformation.
        let r = s
            .client
            .get(&url)
            .header("accept", "*/*")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert_eq!(s.service.transforms_computed() - before, 2);
        let r = s
            .client
            .get(format!("{}/cdn-cgi/image/width=334/{source}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        s.platform.meter.flush().await.unwrap();
        let quantity = |metric: &'static str| {
            let db = s.platform.db.clone();
            let account = s.account_id.clone();
            async move {
                let v: Option<f64> = sqlx::query_scalar(
                    "SELECT SUM(quantity) FROM usage_hourly WHERE account_id = $1 AND metric = $2",
                )
                .bind(account)
                .bind(metric)
                .fetch_one(db.pool())
                .await
                .unwrap();
                v.unwrap_or(0.0)
            }
        };
        assert_eq!(
            quantity("images.transformations").await,
            2.0,
            "{}: width=333 (auto counted once) + width=334",
            s.label
        );
        assert_eq!(quantity("images.delivered").await, 10.0);
        assert_eq!(quantity("images.stored").await, 1.0);
    }
}

/// A tiny origin server for remote sources: `/photo.jpg`, a redirect to a private address, and a
/// redirect to a disallowed origin.
async fn origin_server() -> (String, tokio::task::JoinHandle<()>) {
    let photo = jpeg(400, 300);
    let app = Router::new()
        .route(
            "/photo.jpg",
            get(move || async move { ([("content-type", "image/jpeg")], photo.clone()) }),
        )
        .route(
            "/to-private",
            get(|| async { Redirect::temporary("http://10.0.0.1/photo.jpg") }),
        )
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn remote_sources_are_allow_listed_and_ssrf_guarded() {
    let (origin, task) = origin_server().await;
    let allow = origin.clone();
    for s in servers(move || {
        let mut c = test_config();
        c.remote_origins = vec![allow.clone()];
        c.remote_allow_loopback = true;
        c.remote_timeout_secs = 2;
        c
    })
    .await
    {
        let r = s
            .client
            .get(format!(
                "{}/cdn-cgi/image/width=100/{origin}/photo.jpg",
                s.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", s.label);
        assert_eq!(dims(&r.bytes().await.unwrap()), (100, 75));
        for path in ["to-private", "to-metadata"] {
            let r = s
                .client
                .get(format!(
                    "{}/cdn-cgi/image/width=100/{origin}/{path}",
                    s.base
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "redirect to a private address: {path}");
        }
        let r = s
            .client
            .get(format!(
                "{}/cdn-cgi/image/width=100/http://127.0.0.2:1/photo.jpg",
                s.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "origin not on the allow-list");
        let r = s
            .client
            .get(format!("{}/cdn-cgi/image/width=100/{origin}/slow", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 504, "time cap");
        let r = s
            .client
            .get(format!(
                "{}/cdn-cgi/image/width=100,onerror=redirect/{origin}/missing.jpg",
                s.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            303,
            "onerror=redirect sends the client to the source"
        );
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            format!("{origin}/missing.jpg")
        );
    }
    // Without the test-only loopback permission, the same allow-listed origin is refused.
    let allow = origin.clone();
    for s in servers(move || {
        let mut c = test_config();
        c.remote_origins = vec![allow.clone()];
        c
    })
    .await
    {
        let r = s
            .client
            .get(format!(
                "{}/cdn-cgi/image/width=100/{origin}/photo.jpg",
                s.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), 5404);
    }
    task.abort();
}

#[tokio::test]
async fn server_stays_responsive_while_transforms_run() {
    for s in servers(|| {
        let mut c = test_config();
        c.transform_workers = 1;
        c
    })
    .await
    {
        let (_, public) = upload_id(&s, jpeg(2000, 1500)).await;
        let source = s.cdn_source(&public);
        // Start several distinct heavy transforms, then make a management call meanwhile: it must
        // complete while transforms are still queued on the single worker.
        let heavy: Vec<_> = (0..4)
            .map(|i| {
                let url = format!(
                    "{}/cdn-cgi/image/width={},blur=40,sharpen=5/{source}",
                    s.base,
                    1900 - i
                );
                let client = s.client.clone();
                tokio::spawn(
                    async move { client.get(url).send().await.map(|r| r.status().as_u16()) },
                )
            })
            .collect();
        let (status, _) = s.get_json(&s.api("/v1/stats")).await;
        assert_eq!(status, 200);
        let unfinished = heavy.iter().filter(|h| !h.is_finished()).count();
        for h in heavy {
            assert_eq!(h.await.unwrap().unwrap(), 200);
        }
        // Not a timing assertion: it only records that the API answered with transforms pending.
        println!(
            "{}: management call answered with {unfinished} of 4 transforms still pending",
            s.label
        );
    }
}
