//! End-to-end tests of the Images management API over real HTTP, on every configured backend.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn upload_get_list_patch_blob_delete() {
    for s in servers(test_config).await {
        let data = jpeg(640, 480);
        let (status, body) = s
            .upload(data.clone(), &[("metadata", r#"{"owner":"ann"}"#)])
            .await;
        assert_eq!(status, 200, "{}: {body}", s.label);
        let image = &body["result"];
        let id = image["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(image["filename"], "photo.jpg");
        assert_eq!(image["meta"]["owner"], "ann");
        assert_eq!(image["requireSignedURLs"], false);
        assert_eq!(
            (
                image["width"].as_i64(),
                image["height"].as_i64(),
                image["format"].as_str()
            ),
            (Some(640), Some(480), Some("jpeg"))
        );
        assert_eq!(image["size"].as_u64(), Some(data.len() as u64));
        let variant_url = image["variants"][0].as_str().unwrap().to_string();
        assert!(
            variant_url.ends_with(&format!("/{id}/public")),
            "{variant_url}"
        );

        let (status, got) = s.get_json(&s.api(&format!("/v1/{id}"))).await;
        assert_eq!(status, 200);
        assert_eq!(got["result"]["id"], id.as_str());

        let blob = s
            .client
            .get(s.api(&format!("/v1/{id}/blob")))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(blob.headers()["content-type"], "image/jpeg");
        assert_eq!(blob.bytes().await.unwrap().to_vec(), data);

        let (status, patched) = s
            .send_json(
                Method::PATCH,
                &s.api(&format!("/v1/{id}")),
                json!({"metadata": {"owner": "bob"}, "requireSignedURLs": true}),
            )
            .await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["result"]["meta"]["owner"], "bob");
        assert_eq!(patched["result"]["requireSignedURLs"], true);
        let (status, _) = s
            .send_json(
                Method::PATCH,
                &s.api(&format!("/v1/{id}")),
                json!({"bogus": 1}),
            )
            .await;
        assert_eq!(status, 400);

        // Deliver once (creates a derivative), then delete: original and derivatives are gone.
        let (status, _) = s
            .send_json(
                Method::PATCH,
                &s.api(&format!("/v1/{id}")),
                json!({"requireSignedURLs": false}),
            )
            .await;
        assert_eq!(status, 200);
        let delivered = s.client.get(&variant_url).send().await.unwrap();
        assert_eq!(delivered.status(), 200);
        assert!(s.object_count().await >= 2, "original + derivative stored");
        let (status, _) = s
            .send_json(Method::DELETE, &s.api(&format!("/v1/{id}")), json!({}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            s.object_count().await,
            0,
            "{}: every object removed",
            s.label
        );
        assert_eq!(s.get_json(&s.api(&format!("/v1/{id}"))).await.0, 404);
        assert_eq!(
            s.client.get(&variant_url).send().await.unwrap().status(),
            404
        );

        // Custom ids.
        let (status, body) = s.upload(jpeg(8, 8), &[("id", "products/shoe-1")]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["id"], "products/shoe-1");
        let (status, _) = s.get_json(&s.api("/v1/products%2Fshoe-1")).await;
        assert_eq!(status, 200);
        let (status, body) = s.upload(jpeg(8, 8), &[("id", "products/shoe-1")]).await;
        assert_eq!((status, error_code(&body)), (409, 5409));
        let (status, _) = s
            .upload(jpeg(8, 8), &[("id", "x"), ("requireSignedURLs", "true")])
            .await;
        assert_eq!(status, 400, "custom ids cannot be private");
        let (status, _) = s.upload(jpeg(8, 8), &[("id", "../etc")]).await;
        assert_eq!(status, 400);

        // Auth.
        let r = s.client.get(s.api("/v2")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
}

#[tokio::test]
async fn list_pages_with_continuation_tokens_and_stats() {
    for s in servers(test_config).await {
        let mut ids = Vec::new();
        for _ in 0..12 {
            let (status, body) = s.upload(jpeg(4, 4), &[]).await;
            assert_eq!(status, 200);
            ids.push(body["result"]["id"].as_str().unwrap().to_string());
        }
        let (status, page1) = s.get_json(&s.api("/v2?per_page=10&sort_order=asc")).await;
        assert_eq!(status, 200, "{page1}");
        let first: Vec<String> = page1["result"]["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(first.len(), 10);
        let token = page1["result"]["continuation_token"].as_str().unwrap();
        let (_, page2) = s
            .get_json(&s.api(&format!(
                "/v2?per_page=10&sort_order=asc&continuation_token={token}"
            )))
            .await;
        let second: Vec<String> = page2["result"]["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(second.len(), 2);
        assert!(page2["result"]["continuation_token"].is_null());
        let mut all = [first, second].concat();
        all.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(all, expected);
        let (_, desc) = s.get_json(&s.api("/v2?per_page=10")).await;
        assert_eq!(
            desc["result"]["images"][0]["id"],
            ids[11].as_str(),
            "default order is newest first"
        );

        for bad in [
            "/v2?per_page=5",
            "/v2?sort_order=sideways",
            "/v2?continuation_token=%%%",
        ] {
            assert_eq!(s.get_json(&s.api(bad)).await.0, 400, "{bad}");
        }
        let (_, stats) = s.get_json(&s.api("/v1/stats")).await;
        assert_eq!(stats["result"]["count"]["current"], 12);
        assert!(stats["result"]["count"]["allowed"].as_i64().unwrap() > 12);
    }
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing() {
    for s in servers(|| {
        let mut c = test_config();
        c.max_upload_bytes = 200_000;
        c.max_megapixels = 4;
        c
    })
    .await
    {
        let good = jpeg(64, 64);
        let corrupt = good[..good.len() / 2].to_vec();
        let (status, body) = s.upload(corrupt, &[]).await;
        assert_eq!((status, error_code(&body)), (400, 5402), "corrupt: {body}");
        let (status, body) = s
            .upload(b"just some text, not an image".to_vec(), &[])
            .await;
        assert_eq!((status, error_code(&body)), (415, 5415), "junk: {body}");
        let (status, body) = s.upload(vec![0xFF; 300_000], &[]).await;
        assert_eq!((status, error_code(&body)), (413, 5413), "oversize: {body}");
        // Decompression bomb: a tiny PNG whose header claims 20,000 x 20,000.
        let (status, body) = s.upload(png_claiming(20_000, 20_000), &[]).await;
        assert_eq!((status, error_code(&body)), (413, 5414), "bomb: {body}");
        let (status, body) = s
            .upload(
                good.clone(),
                &[("metadata", &format!(r#"{{"a":"{}"}}"#, "x".repeat(1100)))],
            )
            .await;
        assert_eq!(status, 400, "metadata over 1024 bytes: {body}");
        let (status, _) = s.upload(good.clone(), &[("metadata", "not json")]).await;
        assert_eq!(status, 400);
        let (status, _) = s
            .upload(good.clone(), &[("url", "https://example.com/a.jpg")])
            .await;
        assert_eq!(status, 400, "file and url are exclusive");
        // Upload by URL pointing at loopback: refused by the SSRF guard before connecting.
        let form = reqwest::multipart::Form::new().text("url", "http://127.0.0.1:9/a.jpg");
        let r = s
            .client
            .post(s.api("/v1"))
            .bearer_auth(&s.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), 5404);

        assert_eq!(s.object_count().await, 0, "{}: nothing stored", s.label);
        let (_, stats) = s.get_json(&s.api("/v1/stats")).await;
        assert_eq!(stats["result"]["count"]["current"], 0);
    }
}

#[tokio::test]
async fn direct_creator_uploads_are_one_time() {
    for s in servers(test_config).await {
        let (status, body) = s
            .send_json(
                Method::POST,
                &s.api("/v2/direct_upload"),
                json!({"metadata": {"k": "v"}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let id = body["result"]["id"].as_str().unwrap().to_string();
        let url = body["result"]["uploadURL"].as_str().unwrap().to_string();
        let (_, draft) = s.get_json(&s.api(&format!("/v1/{id}"))).await;
        assert_eq!(draft["result"]["draft"], true);

        // Wrong type: refused, nothing stored, still a draft (the URL may be retried).
        let post = |data: Vec<u8>| {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(data).file_name("a.jpg"),
            );
            s.client.post(&url).multipart(form).send()
        };
        let r = post(b"%PDF-1.4 not an image".to_vec()).await.unwrap();
        assert_eq!(r.status(), 415);
        assert_eq!(s.object_count().await, 0);
        let r = post(jpeg(32, 32)).await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "no token needed: the URL is the credential"
        );
        let uploaded: Value = r.json().await.unwrap();
        assert_eq!(uploaded["result"]["id"], id.as_str());
        assert_eq!(uploaded["result"]["meta"]["k"], "v");
        assert!(uploaded["result"].get("draft").is_none());
        let objects = s.object_count().await;
        let r = post(jpeg(32, 32)).await.unwrap();
        assert_eq!(r.status(), 409, "second use refused");
        assert_eq!(
            s.object_count().await,
            objects,
            "the refused reuse left nothing"
        );

        // Expired URL: refused with 410 and the draft is gone.
        let (_, body) = s
            .send_json(Method::POST, &s.api("/v2/direct_upload"), json!({}))
            .await;
        let expired_id = body["result"]["id"].as_str().unwrap().to_string();
        let expired_url = body["result"]["uploadURL"].as_str().unwrap().to_string();
        sqlx::query("UPDATE images SET upload_expires_at = 1 WHERE id = $1")
            .bind(&expired_id)
            .execute(s.platform.db.pool())
            .await
            .unwrap();
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(jpeg(8, 8)).file_name("a.jpg"),
        );
        let r = s
            .client
            .post(&expired_url)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410);
        assert_eq!(
            s.get_json(&s.api(&format!("/v1/{expired_id}"))).await.0,
            404
        );
        assert_eq!(s.object_count().await, objects);

        // Expiry bounds, multipart creation like Cloudflare's clients send.
        let soon = platform::time_util::rfc3339_from_ms(platform::time_util::now_ms() + 60_000);
        let (status, _) = s
            .send_json(
                Method::POST,
                &s.api("/v2/direct_upload"),
                json!({"expiry": soon}),
            )
            .await;
        assert_eq!(status, 400, "under 2 minutes");
        let late =
            platform::time_util::rfc3339_from_ms(platform::time_util::now_ms() + 7 * 3_600_000);
        let (status, _) = s
            .send_json(
                Method::POST,
                &s.api("/v2/direct_upload"),
                json!({"expiry": late}),
            )
            .await;
        assert_eq!(status, 400, "over 6 hours");
        let form = reqwest::multipart::Form::new()
            .text("requireSignedURLs", "true")
            .text("metadata", r#"{"a":1}"#);
        let r = s
            .client
            .post(s.api("/v2/direct_upload"))
            .bearer_auth(&s.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = s
            .client
            .post(format!("{}/images/upload/not-a-real-token", s.base))
            .multipart(reqwest::multipart::Form::new().text("x", "y"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}

#[tokio::test]
async fn variants_crud_and_config() {
    for s in servers(test_config).await {
        let (status, list) = s.get_json(&s.api("/v1/variants")).await;
        assert_eq!(status, 200);
        assert!(
            list["result"]["variants"]["public"].is_object(),
            "default public variant: {list}"
        );
        let (status, body) = s.send_json(Method::POST, &s.api("/v1/variants"), json!({"id": "thumb", "options": {"fit": "cover", "width": 50, "height": 40, "metadata": "none"}})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["variant"]["options"]["width"], 50);
        let (status, _) = s
            .send_json(
                Method::POST,
                &s.api("/v1/variants"),
                json!({"id": "thumb", "options": {"fit": "cover", "width": 50}}),
            )
            .await;
        assert_eq!(status, 409);
        for bad in [
            json!({"id": "bad name", "options": {}}),
            json!({"id": "x", "options": {"fit": "stretch"}}),
            json!({"id": "x", "options": {"width": 0}}),
            json!({"id": "x"}),
        ] {
            assert_eq!(
                s.send_json(Method::POST, &s.api("/v1/variants"), bad.clone())
                    .await
                    .0,
                400,
                "{bad}"
            );
        }
        let (status, body) = s
            .send_json(
                Method::PATCH,
                &s.api("/v1/variants/thumb"),
                json!({"options": {"fit": "contain", "width": 60}, "neverRequireSignedURLs": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, got) = s.get_json(&s.api("/v1/variants/thumb")).await;
        assert_eq!(got["result"]["variant"]["options"]["fit"], "contain");
        assert_eq!(got["result"]["variant"]["neverRequireSignedURLs"], true);
        assert_eq!(
            s.send_json(Method::DELETE, &s.api("/v1/variants/thumb"), json!({}))
                .await
                .0,
            200
        );
        assert_eq!(s.get_json(&s.api("/v1/variants/thumb")).await.0, 404);

        let (_, config) = s.get_json(&s.api("/v1/config")).await;
        assert_eq!(config["result"]["flexible_variants"], false);
        let (status, config) = s
            .send_json(
                Method::PATCH,
                &s.api("/v1/config"),
                json!({"flexible_variants": true}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(config["result"]["flexible_variants"], true);

        let (_, keys) = s.get_json(&s.api("/v1/keys")).await;
        assert_eq!(keys["result"]["keys"][0]["name"], "default");
        let (status, keys) = s
            .send_json(Method::PUT, &s.api("/v1/keys/second"), json!({}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(keys["result"]["keys"].as_array().unwrap().len(), 2);
        assert_eq!(
            s.send_json(Method::DELETE, &s.api("/v1/keys/second"), json!({}))
                .await
                .0,
            200
        );
        assert_eq!(
            s.send_json(Method::DELETE, &s.api("/v1/keys/second"), json!({}))
                .await
                .0,
            404
        );
    }
}
