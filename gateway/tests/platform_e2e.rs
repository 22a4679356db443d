//! End-to-end tests of the platform through the real binary: first start, tokens and scopes,
//! JSON errors, limits, durability across SIGKILL, usage and costs, config and docs.

mod common;

use common::{loopback_env, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["error"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn first_start_prints_a_token_and_serves_health_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&loopback_env(dir.path()));
    let token = server.token.clone().expect("first start prints a token");
    let account = server
        .account_id
        .clone()
        .expect("first start names the account");
    assert!(
        dir.path().join("mediaplane.db").exists(),
        "SQLite database under the data dir"
    );
    let http = reqwest::Client::new();

    let (status, body) = json_of(http.get(server.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = json_of(http.get(server.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["storage"], "local");

    // Missing, wrong and well-formed tokens.
    let verify = server.url("/client/v4/user/tokens/verify");
    let (status, body) = json_of(http.get(&verify).send().await.unwrap()).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
    assert_eq!(body["success"], false);
    let (status, body) = json_of(
        http.get(&verify)
            .bearer_auth("mp_wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let (status, body) = json_of(http.get(&verify).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["account_id"], account.as_str());

    // A narrowly scoped token: may read images, may not read billing or manage tokens.
    let tokens = server.url(&format!("/client/v4/accounts/{account}/tokens"));
    let (status, body) = json_of(
        http.post(&tokens)
            .bearer_auth(&token)
            .json(&json!({"name": "reader", "scopes": ["images:read"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let reader = body["result"]["value"].as_str().unwrap().to_string();
    let reader_id = body["result"]["id"].as_str().unwrap().to_string();
    let usage = server.url(&format!("/client/v4/accounts/{account}/usage"));
    let (status, body) = json_of(http.get(&usage).bearer_auth(&reader).send().await.unwrap()).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, _) = json_of(http.get(&tokens).bearer_auth(&reader).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another account's path is forbidden even for an admin token.
    let other = server.url("/client/v4/accounts/00000000000000000000000000000000/usage");
    let (status, _) = json_of(http.get(&other).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Unknown scopes and malformed bodies are rejected with JSON errors.
    let (status, body) = json_of(
        http.post(&tokens)
            .bearer_auth(&token)
            .json(&json!({"name": "x", "scopes": ["images:delete"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("images:delete"));
    let (status, body) = json_of(
        http.post(&tokens)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["success"], false);

    // Revocation takes effect at once.
    let (status, _) = json_of(
        http.delete(format!("{tokens}/{reader_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        json_of(http.get(&verify).bearer_auth(&reader).send().await.unwrap()).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    // Errors produced outside handlers have the same JSON shape.
    let (status, body) =
        json_of(http.get(server.url("/no/such/route")).send().await.unwrap()).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert!(server.url("/metrics").starts_with("http"));
    let metrics = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
}

#[tokio::test]
async fn request_ids_are_returned_and_bodies_over_the_limit_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = loopback_env(dir.path());
    env.push(("MEDIAPLANE_MAX_BODY_BYTES".into(), "1024".into()));
    let server = Server::start(&env);
    let token = server.token.clone().unwrap();
    let account = server.account_id.clone().unwrap();
    let http = reqwest::Client::new();
    let response = http.get(server.url("/healthz")).send().await.unwrap();
    assert!(response
        .headers()
        .get("x-request-id")
        .is_some_and(|v| v.len() >= 32));
    let response = http
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-1");

    let big = json!({"name": "n".repeat(4096), "scopes": ["admin"]});
    let (status, body) = json_of(
        http.post(server.url(&format!("/client/v4/accounts/{account}/tokens")))
            .bearer_auth(&token)
            .json(&big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Nothing was created by the rejected request.
    let (_, body) = json_of(
        http.get(server.url(&format!("/client/v4/accounts/{account}/tokens")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["result"].as_array().unwrap().len(), 1);

    // CORS preflight from a browser page.
    let response = http
        .request(reqwest::Method::OPTIONS, server.url("/healthz"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_some());
}

#[tokio::test]
async fn an_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let env = loopback_env(dir.path());
    let mut server = Server::start(&env);
    let token = server.token.clone().unwrap();
    let account = server.account_id.clone().unwrap();
    let http = reqwest::Client::new();
    let (status, body) = json_of(
        http.post(server.url(&format!("/client/v4/accounts/{account}/tokens")))
            .bearer_auth(&token)
            .json(&json!({"name": "durable", "scopes": ["stream:read"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let created = body["result"]["value"].as_str().unwrap().to_string();
    // SIGKILL right after the acknowledgement: no graceful shutdown, no flush.
    server.kill();

    let mut env2 = loopback_env(dir.path());
    env2.retain(|(k, _)| k != "MEDIAPLANE_DATA_DIR");
    env2.push((
        "MEDIAPLANE_DATA_DIR".into(),
        dir.path().display().to_string(),
    ));
    let restarted = Server::start(&env2);
    assert!(
        restarted.token.is_none(),
        "bootstrap happens once per database"
    );
    let (status, body) = json_of(
        http.get(restarted.url("/client/v4/user/tokens/verify"))
            .bearer_auth(&created)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["scopes"], json!(["stream:read"]));
}

#[tokio::test]
async fn usage_recorded_by_products_shows_up_with_costs_on_every_backend() {
    for tp in platform::testing::all_backends().await {
        let render = std::sync::Arc::new(String::new);
        let app = gateway::App::with_platform(
            tp.platform.clone(),
            gateway::test_settings(),
            platform::metering::PriceTable::default(),
            render,
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router.clone();
        let serving = tokio::spawn(async move { axum::serve(listener, router).await });

        // 1,200 GB of SFU egress on 2026-10-31 and 10,000 unique transformations on 2026-11-01:
        // two months, each with its own free allowance.
        let meter = &tp.platform.meter;
        let oct31 = platform::time_util::parse_time_ms("2026-10-31T23:00:00Z").unwrap();
        let nov1 = platform::time_util::parse_time_ms("2026-11-01T00:00:00Z").unwrap();
        meter.record_at(
            &tp.account_id,
            platform::Metric::CallsEgressBytes,
            1200e9,
            oct31,
        );
        meter.record_at(
            &tp.account_id,
            platform::Metric::ImagesTransformations,
            10_000.0,
            nov1,
        );
        meter.record_at(
            &tp.account_id,
            platform::Metric::CallsEgressBytes,
            500e9,
            nov1,
        );

        let http = reqwest::Client::new();
        let url = format!("{base}/client/v4/accounts/{}/usage?since=2026-10-01T00:00:00Z&until=2026-12-01T00:00:00Z", tp.account_id);
        let (status, body) =
            json_of(http.get(&url).bearer_auth(&tp.token).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", tp.label);
        let line = |name: &str| {
            body["result"]["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["name"] == name)
                .unwrap()
                .clone()
        };
        // October: 200 GB over the free 1,000 → $10. November: 500 GB, free.
        assert_eq!(
            line("calls_egress")["billableUnits"].as_f64(),
            Some(200.0),
            "{}",
            tp.label
        );
        assert_eq!(line("calls_egress")["costUsd"].as_f64(), Some(10.0));
        // November: 10,000 transformations, 5,000 free → 5 × $0.50.
        assert_eq!(
            line("images_transformations")["costUsd"].as_f64(),
            Some(2.5)
        );
        assert_eq!(body["result"]["totalUsd"].as_f64(), Some(12.5));

        let bad = format!(
            "{base}/client/v4/accounts/{}/usage?since=tomorrow",
            tp.account_id
        );
        let (status, body) =
            json_of(http.get(&bad).bearer_auth(&tp.token).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("since"));

        app.shutdown().await;
        serving.abort();
    }
}

#[tokio::test]
async fn sqlite_and_postgres_schemas_stay_in_step() {
    let Some(server_url) = std::env::var("MEDIAPLANE_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        assert!(
            std::env::var("MEDIAPLANE_TEST_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "PostgreSQL required"
        );
        eprintln!("skipped: MEDIAPLANE_TEST_POSTGRES_URL not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = platform::Db::connect(
        &format!("sqlite://{}/s.db?mode=rwc", dir.path().display()),
        2,
    )
    .await
    .unwrap();
    sqlite.migrate().await.unwrap();
    let pg_url = platform::testing::create_postgres_database(&server_url).await;
    let pg = platform::Db::connect(&pg_url, 2).await.unwrap();
    pg.migrate().await.unwrap();
    let (a, b) = (
        sqlite.schema_columns().await.unwrap(),
        pg.schema_columns().await.unwrap(),
    );
    let only_sqlite: Vec<_> = a.iter().filter(|c| !b.contains(c)).collect();
    let only_pg: Vec<_> = b.iter().filter(|c| !a.contains(c)).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "only in SQLite: {only_sqlite:?}; only in PostgreSQL: {only_pg:?}"
    );
    assert!(a.len() >= 10);
}

#[test]
fn every_setting_in_help_is_documented_in_readme() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mediaplane"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut missing = Vec::new();
    for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if (word.starts_with("MEDIAPLANE_") || word == "DATABASE_URL")
            && !readme.contains(word)
            && !missing.contains(&word)
        {
            missing.push(word);
        }
    }
    assert!(
        missing.is_empty(),
        "settings missing from README's configuration table: {missing:?}"
    );
}

#[tokio::test]
async fn two_processes_share_one_postgres_and_one_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let Some(config) = platform::testing::external_config(dir.path().to_path_buf()) else {
        eprintln!("skipped: PostgreSQL + S3 not configured");
        return;
    };
    let database_url =
        platform::testing::create_postgres_database(config.database_url.as_deref().unwrap()).await;
    let shared = |data: &std::path::Path| {
        let mut env = loopback_env(data);
        env.extend([
            ("DATABASE_URL".to_string(), database_url.clone()),
            (
                "MEDIAPLANE_S3_BUCKET".to_string(),
                config.s3_bucket.clone().unwrap(),
            ),
            (
                "MEDIAPLANE_S3_ENDPOINT".to_string(),
                config.s3_endpoint.clone().unwrap(),
            ),
            (
                "MEDIAPLANE_S3_ACCESS_KEY_ID".to_string(),
                config.s3_access_key_id.clone().unwrap_or_default(),
            ),
            (
                "MEDIAPLANE_S3_SECRET_ACCESS_KEY".to_string(),
                config.s3_secret_access_key.clone().unwrap_or_default(),
            ),
            (
                "MEDIAPLANE_S3_FORCE_PATH_STYLE".to_string(),
                "true".to_string(),
            ),
            ("MEDIAPLANE_S3_PREFIX".to_string(), config.s3_prefix.clone()),
            (
                "MEDIAPLANE_BOOTSTRAP_TOKEN".to_string(),
                "mp_shared_bootstrap_token_for_test".to_string(),
            ),
        ]);
        env
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both start at once against the empty database: exactly one bootstraps.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::start(&shared(dir_a.path())));
        let b = s.spawn(|| Server::start(&shared(dir_b.path())));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(
        usize::from(a.account_id.is_some()) + usize::from(b.account_id.is_some()),
        1,
        "exactly one process bootstraps"
    );
    let account = a.account_id.clone().or(b.account_id.clone()).unwrap();
    let http = reqwest::Client::new();
    for server in [&a, &b] {
        let (status, body) = json_of(http.get(server.url("/readyz")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["storage"], "s3");
    }
    // A token created through A works on B, and revoking it on B is seen by A.
    let (status, body) = json_of(
        http.post(a.url(&format!("/client/v4/accounts/{account}/tokens")))
            .bearer_auth("mp_shared_bootstrap_token_for_test")
            .json(&json!({"name": "shared", "scopes": ["images:write"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (value, id) = (
        body["result"]["value"].as_str().unwrap().to_string(),
        body["result"]["id"].as_str().unwrap().to_string(),
    );
    let (status, _) = json_of(
        http.get(b.url("/client/v4/user/tokens/verify"))
            .bearer_auth(&value)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = json_of(
        http.delete(b.url(&format!("/client/v4/accounts/{account}/tokens/{id}")))
            .bearer_auth("mp_shared_bootstrap_token_for_test")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = json_of(
        http.get(a.url("/client/v4/user/tokens/verify"))
            .bearer_auth(&value)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn cli(data_dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mediaplane"))
        .env("MEDIAPLANE_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn tokens_are_managed_from_the_cli_and_settings_come_from_a_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    // The server bootstraps; its HTTP address comes from a config file.
    let port = common::free_port();
    let config_file = dir.path().join("mediaplane.toml");
    std::fs::write(
        &config_file,
        format!("http_addr = \"127.0.0.1:{port}\"\n[calls]\nudp_bind = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let mut env = loopback_env(dir.path());
    env.retain(|(k, _)| k != "MEDIAPLANE_HTTP_ADDR" && k != "MEDIAPLANE_CALLS_UDP_BIND");
    env.push((
        "MEDIAPLANE_CONFIG".into(),
        config_file.display().to_string(),
    ));
    let server = Server::start(&env);
    assert_eq!(server.base, format!("http://127.0.0.1:{port}"));

    let created = cli(
        dir.path(),
        &[
            "token",
            "create",
            "--scopes",
            "billing:read",
            "--name",
            "finance",
        ],
    );
    let token = created
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .trim()
        .to_string();
    let id = created
        .lines()
        .find_map(|l| l.strip_prefix("id:    "))
        .unwrap()
        .trim()
        .to_string();
    let listed = cli(dir.path(), &["token", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("active") && l.contains("billing:read")),
        "{listed}"
    );

    let http = reqwest::Client::new();
    let usage = server.url(&format!(
        "/client/v4/accounts/{}/usage",
        server.account_id.clone().unwrap()
    ));
    assert_eq!(
        http.get(&usage)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    cli(dir.path(), &["token", "revoke", &id]);
    assert_eq!(
        http.get(&usage)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(cli(dir.path(), &["token", "list"])
        .lines()
        .any(|l| l.starts_with(&id) && l.contains("revoked")));
}
