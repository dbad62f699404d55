//! The admin API and the registry snapshot over HTTP: who may call what (every route × every
//! kind of credential), the audit log, revocation, and share links with a password or a filter
//! answering from the real ClickHouse.

use reqwest::Method;
use serde_json::{Value, json};
use ta_central::QueryConfig;
use ta_central::query::{QueryState, ROUTES};
use ta_central::registry::{Kind, NewCredential, Registry};
use ta_shared::snapshot::{SignedSnapshot, SigningKey};

use crate::stats_model::{seeded, serve_state};

/// A registry-backed ta-query on `config`'s database: its URL, the admin token and the
/// public key that verifies its snapshots.
pub(crate) struct Central {
    pub(crate) base: String,
    /// A bootstrap admin token (its audit actor is `bootstrap`).
    pub(crate) admin: String,
    key: ta_shared::snapshot::VerifyingKey,
    _dir: tempfile::TempDir,
}

fn credential(kind: Kind, sites: &[&str]) -> NewCredential {
    NewCredential {
        kind,
        sites: sites.iter().map(|s| s.to_string()).collect(),
        label: "bootstrap".into(),
        password: None,
        expires_at: None,
        filter: None,
    }
}

pub(crate) async fn central(config: &QueryConfig) -> Central {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let key_path = dir.path().join("signing.pk8");
    let der = SigningKey::generate_pkcs8();
    std::fs::write(&key_path, &der).unwrap();
    let key = SigningKey::from_pkcs8(&der).unwrap().verifying_key();
    let (_, admin) = Registry::open(&path)
        .unwrap()
        .create_credential("bootstrap", credential(Kind::Admin, &[]), now())
        .unwrap();
    let config = QueryConfig {
        registry: Some(path),
        registry_signing_key: Some(key_path),
        access_file: None,
        ..config.clone()
    };
    let base = serve_state(QueryState::new(&config).unwrap()).await;
    Central {
        base,
        admin,
        key,
        _dir: dir,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A request; status and JSON body (Null when empty or not JSON).
async fn call(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_admin_route_answers_admin_tokens_only_and_the_snapshot_edge_credentials_only() {
    let c = central(&QueryConfig::default()).await;
    let base = &c.base;
    let admin = Some(c.admin.as_str());
    let (s, created) = call(
        Method::POST,
        &format!("{base}/v1/admin/sites"),
        admin,
        Some(json!({"id": "shop", "allowed_origins": ["https://shop.example"]})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let mut secrets = Vec::new();
    for kind in ["read", "edge", "share"] {
        let sites = if kind == "edge" {
            json!([])
        } else {
            json!(["shop"])
        };
        let (s, v) = call(
            Method::POST,
            &format!("{base}/v1/admin/credentials"),
            admin,
            Some(json!({"kind": kind, "sites": sites})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        secrets.push(v["secret"].as_str().unwrap().to_owned());
    }
    let (read, edge, share) = (&secrets[0], &secrets[1], &secrets[2]);
    // Every admin route and method, with a body that is valid for it.
    let calls: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/v1/admin/sites", None),
        (
            Method::POST,
            "/v1/admin/sites",
            Some(json!({"id": "other", "allowed_origins": ["*"]})),
        ),
        (Method::GET, "/v1/admin/sites/shop", None),
        (
            Method::PATCH,
            "/v1/admin/sites/shop",
            Some(json!({"respect_dnt": true})),
        ),
        (
            Method::POST,
            "/v1/admin/sites/shop/rotate-key",
            Some(json!({"grace_secs": 60})),
        ),
        (
            Method::POST,
            "/v1/admin/sites/shop/rotate-hmac-secret",
            None,
        ),
        (Method::GET, "/v1/admin/credentials", None),
        (
            Method::POST,
            "/v1/admin/credentials",
            Some(json!({"kind": "read", "sites": ["shop"]})),
        ),
        (Method::DELETE, "/v1/admin/credentials/cr_nonexistent", None),
        (Method::GET, "/v1/admin/audit", None),
        (Method::DELETE, "/v1/admin/sites/other", None),
    ];
    let covered: std::collections::BTreeSet<&str> = calls
        .iter()
        .map(|(_, p, _)| {
            ROUTES
                .iter()
                .find(|r| {
                    let (r, p) = (r.split('/'), p.split('/'));
                    r.clone().count() == p.clone().count()
                        && r.zip(p).all(|(a, b)| a == b || a.starts_with('{'))
                })
                .copied()
                .unwrap_or(p)
        })
        .collect();
    let admin_routes: Vec<&str> = ROUTES
        .iter()
        .copied()
        .filter(|r| r.starts_with("/v1/admin/"))
        .collect();
    assert!(
        admin_routes.iter().all(|r| covered.contains(r)),
        "{admin_routes:?} vs {covered:?}"
    );
    for (method, path, body) in &calls {
        let url = format!("{base}{path}");
        // Nobody, a wrong token, a share link (in the URL, as the dashboard sends it): 401.
        assert_eq!(
            call(method.clone(), &url, None, body.clone()).await.0,
            401,
            "{method} {path}"
        );
        assert_eq!(
            call(
                method.clone(),
                &url,
                Some("ta-wrong-token-000000"),
                body.clone()
            )
            .await
            .0,
            401,
            "{method} {path}"
        );
        let shared = format!("{url}?share={share}");
        assert_eq!(
            call(method.clone(), &shared, None, body.clone()).await.0,
            401,
            "{method} {path}"
        );
        // A read token and an edge credential: 403, with the reason.
        for token in [read, edge] {
            let (s, v) = call(method.clone(), &url, Some(token), body.clone()).await;
            assert_eq!(s, 403, "{method} {path}: {v}");
            assert!(
                v["message"].as_str().unwrap().contains("admin token"),
                "{v}"
            );
        }
        // The admin: what the route does.
        let (s, v) = call(method.clone(), &url, admin, body.clone()).await;
        let expected = match (method.as_str(), *path) {
            ("POST", "/v1/admin/sites" | "/v1/admin/credentials") => 201,
            ("DELETE", "/v1/admin/credentials/cr_nonexistent") => 404,
            ("DELETE", _) => 204,
            _ => 200,
        };
        assert_eq!(s, expected, "{method} {path}: {v}");
    }
    // The snapshot: edge credentials only; it verifies with the public key.
    let url = format!("{base}/v1/registry/snapshot");
    assert_eq!(call(Method::GET, &url, None, None).await.0, 401);
    for token in [c.admin.as_str(), read.as_str()] {
        assert_eq!(call(Method::GET, &url, Some(token), None).await.0, 403);
    }
    assert_eq!(
        call(Method::GET, &format!("{url}?share={share}"), None, None)
            .await
            .0,
        401
    );
    let (s, v) = call(Method::GET, &url, Some(edge), None).await;
    assert_eq!(s, 200, "{v}");
    let snapshot = SignedSnapshot::from_json(v.to_string().as_bytes())
        .unwrap()
        .verify(&c.key)
        .unwrap();
    assert_eq!(
        snapshot.site_ids().into_iter().collect::<Vec<_>>(),
        ["shop"]
    );
    // Two keys during the rotation above, the first one ending in 60 s.
    let shop = &snapshot.sites[0];
    assert_eq!(shop.config.api_keys.len(), 2);
    assert!(shop.key_not_after[0].is_some() && shop.key_not_after[1].is_none());
    // Stats endpoints refuse edge credentials and admin tokens read them (site exists).
    let stats = format!("{base}/v1/sites");
    assert_eq!(
        call(Method::GET, &stats, Some(edge), None).await.1["sites"],
        json!([])
    );
}

#[tokio::test]
async fn changes_are_audited_without_secrets_and_revocation_applies_at_once() {
    let c = central(&QueryConfig::default()).await;
    let base = &c.base;
    let admin = Some(c.admin.as_str());
    let (_, v) = call(
        Method::POST,
        &format!("{base}/v1/admin/sites"),
        admin,
        Some(json!({"id": "blog", "allowed_origins": ["*"], "hmac_secret": true})),
    )
    .await;
    let hmac = v["hmac_secret"].as_str().unwrap().to_owned();
    assert_eq!(hmac.len(), 64);
    let (_, v) = call(
        Method::POST,
        &format!("{base}/v1/admin/credentials"),
        admin,
        Some(json!({"kind": "read", "sites": ["blog"], "label": "grafana"})),
    )
    .await;
    let (token, id) = (
        v["secret"].as_str().unwrap().to_owned(),
        v["credential"]["id"].as_str().unwrap().to_owned(),
    );
    let sites = format!("{base}/v1/sites");
    assert_eq!(
        call(Method::GET, &sites, Some(&token), None).await.1["sites"],
        json!(["blog"])
    );
    // Secrets never come back: neither in listings nor in the audit log.
    let (_, listed) = call(Method::GET, &format!("{base}/v1/admin/sites"), admin, None).await;
    let (_, creds) = call(
        Method::GET,
        &format!("{base}/v1/admin/credentials"),
        admin,
        None,
    )
    .await;
    assert_eq!(listed["sites"][0]["has_hmac_secret"], json!(true));
    let (s, _) = call(
        Method::DELETE,
        &format!("{base}/v1/admin/credentials/{id}"),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(call(Method::GET, &sites, Some(&token), None).await.0, 401);
    let (_, audit) = call(
        Method::GET,
        &format!("{base}/v1/admin/audit?limit=10"),
        admin,
        None,
    )
    .await;
    for text in [listed.to_string(), creds.to_string(), audit.to_string()] {
        assert!(!text.contains(&hmac) && !text.contains(&token) && !text.contains(&c.admin));
    }
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "credential.delete",
            "credential.create",
            "site.create",
            "credential.create"
        ]
    );
    // Who: the admin credential's id (the bootstrap one was created by "bootstrap").
    let admin_id = entries[0]["actor"].as_str().unwrap();
    assert!(admin_id.starts_with("cr_"), "{admin_id}");
    assert!(entries[..3].iter().all(|e| e["actor"] == admin_id));
    assert_eq!(entries[3]["actor"], "bootstrap");
    assert_eq!(entries[0]["target"], json!(id));
    assert!(
        entries
            .iter()
            .all(|e| e["at"].as_i64().unwrap() > 1_700_000_000)
    );
    // Bad input: 400 naming the field; unknown site 404; duplicate 409.
    for (body, part) in [
        (json!({"allowed_origins": ["*"]}), "id"),
        (json!({"id": "x y"}), "id"),
        (
            json!({"id": "x", "allowed_origins": ["nope"]}),
            "allowed_origins",
        ),
        (json!({"id": "x", "hostnames": ["Bad Host"]}), "hostnames"),
        (json!({"id": "x", "colour": "red"}), "body"),
        (json!({"id": "x", "hmac_secret": "mine"}), "hmac_secret"),
        (json!({"id": "x", "goals": [{"id": "g"}]}), "goals"),
    ] {
        let (s, v) = call(
            Method::POST,
            &format!("{base}/v1/admin/sites"),
            admin,
            Some(body.clone()),
        )
        .await;
        assert_eq!((s, v["part"].as_str()), (400, Some(part)), "{body}: {v}");
    }
    let (s, _) = call(
        Method::POST,
        &format!("{base}/v1/admin/sites"),
        admin,
        Some(json!({"id": "blog"})),
    )
    .await;
    assert_eq!(s, 409);
    let (s, v) = call(
        Method::PATCH,
        &format!("{base}/v1/admin/sites/nope"),
        admin,
        Some(json!({"respect_dnt": true})),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(
        Method::POST,
        &format!("{base}/v1/admin/sites/blog/rotate-key"),
        admin,
        Some(json!({"grace_secs": -1})),
    )
    .await;
    assert_eq!((s, v["part"].as_str()), (400, Some("grace_secs")), "{v}");
}

#[tokio::test]
async fn share_links_with_a_password_or_a_filter_read_only_what_they_grant() {
    let s = seeded().await;
    let c = central(&s.config).await;
    let base = &c.base;
    let admin = Some(c.admin.as_str());
    // The seeded sites, as the edges' sites file has them, and nothing else.
    let (st, v) = call(
        Method::POST,
        &format!("{base}/v1/admin/sites"),
        admin,
        Some(json!({"id": "site-1", "allowed_origins": ["*"]})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let create = |body: Value| {
        let base = base.clone();
        let admin = c.admin.clone();
        async move {
            let (st, v) = call(
                Method::POST,
                &format!("{base}/v1/admin/credentials"),
                Some(&admin),
                Some(body),
            )
            .await;
            assert_eq!(st, 201, "{v}");
            v["secret"].as_str().unwrap().to_owned()
        }
    };
    let locked =
        create(json!({"kind": "share", "sites": ["site-1"], "password": "open sesame"})).await;
    let blog =
        create(json!({"kind": "share", "sites": ["site-1"], "filter": "page:is:/pricing"})).await;
    let agg = |extra: &str| {
        format!(
            "{base}/v1/stats/aggregate?site_id=site-1&period=custom&from=2024-01-01&to=2030-01-01{extra}"
        )
    };
    let get = |url: String, password: Option<&'static str>| async move {
        let mut req = reqwest::Client::new().get(url);
        if let Some(p) = password {
            req = req.header("X-Share-Password", p);
        }
        let res = req.send().await.unwrap();
        (
            res.status().as_u16(),
            res.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let (st, v) = get(agg(&format!("&share={locked}")), None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("share_password_required")),
        "{v}"
    );
    assert_eq!(
        get(agg(&format!("&share={locked}")), Some("wrong password"))
            .await
            .0,
        401
    );
    let (st, whole) = get(agg(&format!("&share={locked}")), Some("open sesame")).await;
    assert_eq!(st, 200, "{whole}");
    let (_, admins) = call(Method::GET, &agg(""), admin, None).await;
    assert_eq!(whole["results"], admins["results"]);
    // The filtered link answers as the admin does under that filter, never the whole site.
    let (st, limited) = get(agg(&format!("&share={blog}")), None).await;
    assert_eq!(st, 200, "{limited}");
    let (_, filtered) = call(Method::GET, &agg("&filter=page:is:/pricing"), admin, None).await;
    assert_eq!(limited["results"], filtered["results"]);
    assert_ne!(
        limited["results"]["pageviews"],
        admins["results"]["pageviews"]
    );
    assert!(limited["results"]["pageviews"]["value"].as_f64().unwrap() > 0.0);
    // Endpoints that cannot apply the filter refuse the link, saying why.
    let (st, v) = get(format!("{base}/v1/metrics/pageviews?site_id=site-1&from=2024-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&share={blog}"), None).await;
    assert_eq!(st, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("filter"), "{v}");
    let (st, _) = get(format!("{base}/v1/sites?share={blog}"), None).await;
    assert_eq!(st, 200);
    // A funnel would count steps outside the filter: refused.
    let funnel =
        format!("{base}/v1/stats/funnel?site_id=site-1&period=30d&funnel=pro&share={blog}");
    let (st, v) = get(funnel, None).await;
    assert_eq!(st, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("funnel"), "{v}");
    // Without a registry the admin API says how to get one.
    let plain = crate::stats_model::serve(&s.config).await;
    let (st, v) = call(
        Method::GET,
        &format!("{plain}/v1/admin/sites"),
        Some("test-admin-token"),
        None,
    )
    .await;
    assert_eq!(st, 503, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("TA_QUERY_REGISTRY"),
        "{v}"
    );
}
