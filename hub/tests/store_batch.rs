//! The heartbeat sweep's batch store calls: last-seen for many agents in
//! one go, and the re-check of many tokens, across more rows than one
//! statement takes.

mod common;

use common::TempDir;
use mooring_hub::store::{AgentRecord, EnvKind, NewEnvironment, Store, TokenProblem};

const ENVS: usize = 450;

async fn store_with_agents(dir: &TempDir) -> (Store, Vec<i64>, Vec<i64>) {
    let (store, _) = Store::open(&dir.0, None).await.expect("open store");
    let mut envs = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..ENVS {
        let env = store
            .create_environment(NewEnvironment {
                name: format!("edge-{i}"),
                kind: EnvKind::Edge,
                socket: None,
            })
            .await
            .expect("create env");
        let agent = AgentRecord {
            id: format!("agent-{i}"),
            last_seen: 1,
            ..Default::default()
        };
        store.record_agent(env.id, &agent).await.expect("agent");
        let token = store
            .create_token(env.id, &format!("p{i:07}"), "$argon2id$x", None)
            .await
            .expect("token");
        envs.push(env.id);
        tokens.push(token.id);
    }
    (store, envs, tokens)
}

#[tokio::test]
async fn last_seen_of_every_agent_is_written_in_one_batch() {
    let dir = TempDir::new();
    let (store, envs, _) = store_with_agents(&dir).await;
    let seen: Vec<(i64, i64)> = envs.iter().map(|id| (*id, 1_000_000 + id)).collect();
    store.touch_agents(&seen).await.expect("touch");
    for (id, ts) in &seen {
        let env = store.get_environment(*id).await.expect("env");
        assert_eq!(env.agent.expect("agent").last_seen, *ts, "env {id}");
    }
    store
        .touch_agents(&[])
        .await
        .expect("empty batch is a no-op");
}

#[tokio::test]
async fn only_revoked_expired_and_deleted_tokens_are_reported() {
    let dir = TempDir::new();
    let (store, envs, tokens) = store_with_agents(&dir).await;
    // One of each problem, spread over both statements (400 ids each).
    store.revoke_token(tokens[3]).await.expect("revoke");
    store
        .delete_environment(envs[420])
        .await
        .expect("delete env and its tokens");
    let expired = store
        .create_token(envs[7], "pexpired", "$argon2id$x", Some(1))
        .await
        .expect("expired token");
    let mut ids = tokens.clone();
    ids.push(expired.id);
    ids.push(999_999); // never existed
    let mut problems = store.unusable_tokens(&ids).await.expect("check");
    problems.sort();
    let mut want = vec![
        (tokens[3], TokenProblem::Revoked),
        (tokens[420], TokenProblem::Deleted),
        (expired.id, TokenProblem::Expired),
        (999_999, TokenProblem::Deleted),
    ];
    want.sort();
    assert_eq!(problems, want);
    assert_eq!(TokenProblem::Revoked.to_string(), "Token revoked");
}

/// A reconnect storm: every link-up record must land. Deferred
/// transactions that read before they write used to fail at once with
/// "database is locked" when another connection committed in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_link_ups_and_disconnects_are_all_recorded() {
    let dir = TempDir::new();
    let (store, envs, tokens) = store_with_agents(&dir).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (env, token)) in envs.iter().zip(&tokens).enumerate() {
        let (store, env, token) = (store.clone(), *env, *token);
        tasks.spawn(async move {
            store
                .record_disconnect(env, "timeout", 10, 10, None)
                .await
                .map_err(|e| format!("disconnect {env}: {e}"))?;
            let agent = AgentRecord {
                id: format!("agent-{i}"),
                connected_at: 20,
                last_seen: 20,
                ..Default::default()
            };
            let detail = format!("again {i}");
            let audit = mooring_hub::store::NewAudit {
                actor: "agent:x",
                action: "agent.connect",
                target: None,
                detail: Some(&detail),
            };
            store
                .record_link_up(env, token, &agent, &audit)
                .await
                .map_err(|e| format!("link up {env}: {e}"))
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Err(err) = done.expect("task") {
            failures.push(err);
        }
    }
    assert!(
        failures.is_empty(),
        "{} lost: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let statuses = store.env_statuses().await.expect("statuses");
    for env in &envs {
        let status = statuses.get(env).expect("status row");
        assert_eq!(status.disconnect_reason, None, "env {env}");
        assert_eq!(status.disconnect_count, 1, "env {env}");
    }
    let audit = store.list_audit(10_000).await.expect("audit");
    assert_eq!(
        audit.iter().filter(|a| a.action == "agent.connect").count(),
        ENVS
    );
}
