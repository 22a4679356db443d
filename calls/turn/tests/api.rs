//! The keys and credentials APIs end to end, on every configured backend, including what the
//! TURN listener does with the minted, revoked and deleted credentials.

mod common;

use calls_turn::TurnConfig;
use common::{allocate, AllocateOutcome, Server};
use serde_json::{json, Value};

#[tokio::test]
async fn turn_keys_crud_and_credentials() {
    for tp in platform::testing::all_backends().await {
        let label = tp.label;
        let server = Server::start(tp, TurnConfig::for_tests()).await;
        let http = &server.http;
        let token = server.tp.token.clone();

        // Create: the secret appears once.
        let (key_id, secret) = server.create_key("prod").await;
        assert_eq!(secret.len(), 64, "{label}");
        let listed: Value = http
            .get(server.accounts_url("turn_keys"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["success"], true);
        assert_eq!(listed["result"][0]["uid"], key_id.as_str());
        assert_eq!(listed["result"][0]["name"], "prod");
        assert!(
            listed["result"][0].get("key").is_none(),
            "{label}: secret never listed"
        );
        let one: Value = http
            .get(server.accounts_url(&format!("turn_keys/{key_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(one["result"].get("key").is_none());
        let renamed: Value = http
            .put(server.accounts_url(&format!("turn_keys/{key_id}")))
            .bearer_auth(&token)
            .json(&json!({"name": "renamed"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(renamed["result"]["name"], "renamed");
        let missing = http
            .get(server.accounts_url("turn_keys/0123"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["errors"][0]["error"], "turn_key_not_found");
        let bad_json = http
            .post(server.accounts_url("turn_keys"))
            .bearer_auth(&token)
            .body("{nope")
            .send()
            .await
            .unwrap();
        assert_eq!(bad_json.status(), 400);
        let no_token = http
            .get(server.accounts_url("turn_keys"))
            .send()
            .await
            .unwrap();
        assert_eq!(no_token.status(), 401);
        let other_account = http
            .get(format!(
                "{}/client/v4/accounts/someoneelse/calls/turn_keys",
                server.base
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(other_account.status(), 403);

        // Credentials API: bearer is the key secret; ttl bounded to 48 h.
        let generate = format!("{}/v1/turn/keys/{key_id}/credentials/generate", server.base);
        for (ttl, status) in [(0, 400), (172_801, 400)] {
            let r = http
                .post(&generate)
                .bearer_auth(&secret)
                .json(&json!({"ttl": ttl}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{label}: ttl {ttl}");
        }
        assert_eq!(
            http.post(&generate)
                .bearer_auth(&token)
                .json(&json!({"ttl": 60}))
                .send()
                .await
                .unwrap()
                .status(),
            401,
            "an API token is not the key secret"
        );
        assert_eq!(
            http.post(&generate)
                .json(&json!({"ttl": 60}))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let r = http
            .post(&generate)
            .bearer_auth(&secret)
            .json(&json!({"ttl": 172_800}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        let urls: Vec<&str> = body["iceServers"]["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap())
            .collect();
        let addrs = server.turn.addrs();
        assert_eq!(
            urls,
            vec![
                format!("turn:127.0.0.1:{}?transport=udp", addrs.udp.unwrap().port()),
                format!("turn:127.0.0.1:{}?transport=tcp", addrs.tcp.unwrap().port()),
                format!(
                    "turns:127.0.0.1:{}?transport=tcp",
                    addrs.tls.unwrap().port()
                ),
            ]
        );
        let ice: Value = http
            .post(format!(
                "{}/v1/turn/keys/{key_id}/credentials/generate-ice-servers",
                server.base
            ))
            .bearer_auth(&secret)
            .json(&json!({"ttl": 600}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            ice["iceServers"][0]["urls"][0],
            format!("stun:127.0.0.1:{}", addrs.udp.unwrap().port())
        );
        assert!(ice["iceServers"][1]["username"].is_string());

        // The minted credential allocates; revoked, it no longer does.
        let (username, credential) = server.generate(&key_id, &secret, 600).await;
        let udp = addrs.udp.unwrap();
        let (_socket, outcome) = allocate(udp, &username, &credential, "mediaplane").await;
        assert!(
            matches!(outcome, AllocateOutcome::Relayed(_)),
            "{label}: {outcome:?}"
        );
        let (_s, forged) = allocate(udp, &username, "Zm9yZ2Vk", "mediaplane").await;
        assert!(
            matches!(forged, AllocateOutcome::Error(401)),
            "{label}: {forged:?}"
        );
        let revoke = format!(
            "{}/v1/turn/keys/{key_id}/credentials/{username}/revoke",
            server.base
        );
        assert_eq!(
            http.post(&revoke)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            http.post(&revoke)
                .bearer_auth(&secret)
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        let (_s, revoked) = allocate(udp, &username, &credential, "mediaplane").await;
        assert!(
            matches!(revoked, AllocateOutcome::Error(401)),
            "{label}: {revoked:?}"
        );
        let bad_user = format!(
            "{}/v1/turn/keys/{key_id}/credentials/alice/revoke",
            server.base
        );
        assert_eq!(
            http.post(&bad_user)
                .bearer_auth(&secret)
                .send()
                .await
                .unwrap()
                .status(),
            400
        );

        // Deleting the key kills its credentials.
        let (username, credential) = server.generate(&key_id, &secret, 600).await;
        let deleted = http
            .delete(server.accounts_url(&format!("turn_keys/{key_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 200);
        let (_s, after_delete) = allocate(udp, &username, &credential, "mediaplane").await;
        assert!(
            matches!(after_delete, AllocateOutcome::Error(401)),
            "{label}: {after_delete:?}"
        );
        assert_eq!(
            http.post(&generate)
                .bearer_auth(&secret)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            http.get(server.accounts_url(&format!("turn_keys/{key_id}")))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn keys_survive_a_restart_and_expired_credentials_fail() {
    let tp = platform::testing::embedded().await;
    let platform = tp.platform.clone();
    let server = Server::start(tp, TurnConfig::for_tests()).await;
    let (key_id, secret) = server.create_key("k").await;
    server.turn.shutdown().await;
    // A second service on the same database loads the key from it.
    let second = calls_turn::TurnService::start(platform, TurnConfig::for_tests())
        .await
        .unwrap();
    let udp = second.addrs().udp.unwrap();
    let username = format!(
        "{}:{key_id}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60
    );
    let credential = calls_turn::credentials::credential_for(&secret, &username);
    let (_s, outcome) = allocate(udp, &username, &credential, "mediaplane").await;
    assert!(
        matches!(outcome, AllocateOutcome::Relayed(_)),
        "{outcome:?}"
    );
    let expired = "1000:x".to_string();
    let credential = calls_turn::credentials::credential_for(&secret, &expired);
    let (_s, outcome) = allocate(udp, &expired, &credential, "mediaplane").await;
    assert!(
        matches!(outcome, AllocateOutcome::Error(401)),
        "{outcome:?}"
    );
    second.shutdown().await;
    server.stop().await;
}
