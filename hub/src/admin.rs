//! The admin subcommands (`env`, `token`, `registry`, `apikey`): they work
//! directly on the store, with or without a running hub.
//!
//! Output goes to stdout: text by default, one JSON document with `--json`.
//! Commands that create a secret print it alone on the last line so a
//! script can capture it with `tail -n1`. Nothing else ever prints a
//! secret.

use std::io::{BufRead, Write};

use serde::Serialize;

use crate::api::apikeys::{create_api_key, ApiKeyView};
use crate::api::registries::RegistryView;
use crate::api::rfc3339;
use crate::api::tokens::{create_token, TokenView};
use crate::config::{ApiKeyCommand, Command, EnvCommand, RegistryCommand, TokenCommand};
use crate::store::{EnvKind, NewEnvironment, NewRegistry, Store, StoreError};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input on the command line.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

struct Out {
    json: bool,
    lines: Vec<String>,
}

impl Out {
    fn print_json<T: Serialize>(&mut self, value: &T) {
        self.lines
            .push(serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
    }

    fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }
}

/// Runs one admin command; returns what to print on stdout.
pub async fn run(store: &Store, command: Command, json: bool) -> Result<String, AdminError> {
    let mut out = Out {
        json,
        lines: Vec::new(),
    };
    match command {
        Command::Serve(_) => return Err(AdminError::Usage("serve is not an admin command".into())),
        Command::Push(_) => {
            return Err(AdminError::Usage(
                "push talks to a running hub, not to the store".into(),
            ))
        }
        Command::Env(cmd) => env(store, cmd, &mut out).await?,
        Command::Token(cmd) => token(store, cmd, &mut out).await?,
        Command::Registry(cmd) => registry(store, cmd, &mut out).await?,
        Command::Apikey(cmd) => apikey(store, cmd, &mut out).await?,
    }
    let mut text = out.lines.join("\n");
    text.push('\n');
    Ok(text)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvRow {
    id: i64,
    name: String,
    #[serde(rename = "type")]
    kind: EnvKind,
    socket: Option<String>,
    created_at: String,
    agent_id: Option<String>,
    agent_name: Option<String>,
    last_seen: Option<String>,
}

async fn env(store: &Store, cmd: EnvCommand, out: &mut Out) -> Result<(), AdminError> {
    match cmd {
        EnvCommand::Create { name, kind, socket } => {
            let kind = EnvKind::parse(&kind)?;
            let env = store
                .create_environment(NewEnvironment { name, kind, socket })
                .await?;
            let _ = store
                .audit(
                    "cli",
                    "environment.create",
                    Some(&format!("environment:{}", env.id)),
                    Some(&env.name),
                )
                .await;
            if out.json {
                out.print_json(&serde_json::json!({"id": env.id, "name": env.name, "type": env.kind, "socket": env.socket}));
            } else {
                out.line(format!(
                    "created {} environment {} ({:?})",
                    env.kind.as_str(),
                    env.id,
                    env.name
                ));
            }
        }
        EnvCommand::List => {
            let rows: Vec<EnvRow> = store
                .list_environments()
                .await?
                .into_iter()
                .map(|e| EnvRow {
                    id: e.id,
                    name: e.name,
                    kind: e.kind,
                    socket: e.socket,
                    created_at: rfc3339(e.created_at),
                    agent_id: e.agent.as_ref().map(|a| a.id.clone()),
                    agent_name: e.agent.as_ref().map(|a| a.name.clone()),
                    last_seen: e.agent.as_ref().map(|a| rfc3339(a.last_seen)),
                })
                .collect();
            if out.json {
                out.print_json(&rows);
            } else {
                out.line(format!(
                    "{:<4} {:<20} {:<6} {:<24} LAST SEEN",
                    "ID", "NAME", "TYPE", "AGENT"
                ));
                for r in rows {
                    out.line(format!(
                        "{:<4} {:<20} {:<6} {:<24} {}",
                        r.id,
                        r.name,
                        r.kind.as_str(),
                        r.agent_name.or(r.socket).unwrap_or_else(|| "-".into()),
                        r.last_seen.unwrap_or_else(|| "-".into())
                    ));
                }
            }
        }
        EnvCommand::Rm { env } => {
            let found = store.find_environment(&env).await?;
            store.delete_environment(found.id).await?;
            let _ = store
                .audit(
                    "cli",
                    "environment.delete",
                    Some(&format!("environment:{}", found.id)),
                    Some(&found.name),
                )
                .await;
            if out.json {
                out.print_json(&serde_json::json!({"deleted": found.id}));
            } else {
                out.line(format!(
                    "deleted environment {} ({:?})",
                    found.id, found.name
                ));
            }
        }
    }
    Ok(())
}

async fn token(store: &Store, cmd: TokenCommand, out: &mut Out) -> Result<(), AdminError> {
    match cmd {
        TokenCommand::Create {
            env,
            expires,
            public_url,
        } => {
            let base = public_url
                .as_deref()
                .map(crate::install::check_public_url)
                .transpose()
                .map_err(AdminError::Usage)?;
            let found = store.find_environment(&env).await?;
            let mut created = create_token(store, found.id, expires.map(|d| d.as_secs())).await?;
            if let Some(base) = &base {
                created.install = Some(
                    crate::install::commands(base, &created.token)
                        .map_err(|e| AdminError::Usage(e.message().to_owned()))?,
                );
            }
            let _ = store
                .audit(
                    "cli",
                    "token.create",
                    Some(&format!("token:{}", created.id)),
                    Some(&format!("environment:{}", found.id)),
                )
                .await;
            if out.json {
                out.print_json(&created);
            } else {
                match &created.install {
                    Some(install) => {
                        out.line("Install the agent on the Docker host with:");
                        out.line(format!("  {}", install.one_liner));
                    }
                    None => out.line(
                        "(add --public-url https://HUB, or set MOORING_PUBLIC_URL, to get the install one-liner)",
                    ),
                }
                out.line(format!(
                    "token {} for environment {} ({:?}), expires {}; shown once:",
                    created.id,
                    found.id,
                    found.name,
                    created.expires_at.as_deref().unwrap_or("never")
                ));
                out.line(created.token);
            }
        }
        TokenCommand::List { env } => {
            let env_id = match env {
                Some(e) => Some(store.find_environment(&e).await?.id),
                None => None,
            };
            let rows: Vec<TokenView> = store
                .list_tokens(env_id)
                .await?
                .into_iter()
                .map(TokenView::from)
                .collect();
            if out.json {
                out.print_json(&rows);
            } else {
                out.line(format!(
                    "{:<4} {:<4} {:<10} {:<8} EXPIRES",
                    "ID", "ENV", "PREFIX", "STATUS"
                ));
                for t in rows {
                    out.line(format!(
                        "{:<4} {:<4} {:<10} {:<8} {}",
                        t.id,
                        t.environment_id,
                        t.prefix,
                        t.status,
                        t.expires_at.unwrap_or_else(|| "never".into())
                    ));
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let record = store.revoke_token(id).await?;
            let _ = store
                .audit("cli", "token.revoke", Some(&format!("token:{id}")), None)
                .await;
            if out.json {
                out.print_json(&TokenView::from(record));
            } else {
                out.line(format!(
                    "revoked token {id} (a running hub drops its agent within 30 s)"
                ));
            }
        }
    }
    Ok(())
}

async fn registry(store: &Store, cmd: RegistryCommand, out: &mut Out) -> Result<(), AdminError> {
    match cmd {
        RegistryCommand::Add {
            name,
            url,
            username,
            password_stdin,
            password,
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                password
            }
            .filter(|p| !p.is_empty());
            let reg = store
                .create_registry(NewRegistry {
                    name,
                    url,
                    username,
                    password,
                })
                .await?;
            let _ = store
                .audit(
                    "cli",
                    "registry.create",
                    Some(&format!("registry:{}", reg.id)),
                    Some(&reg.name),
                )
                .await;
            let view = RegistryView::from(reg);
            if out.json {
                out.print_json(&view);
            } else {
                out.line(format!(
                    "added registry {} ({:?}, {})",
                    view.id, view.name, view.url
                ));
            }
        }
        RegistryCommand::List => {
            let rows: Vec<RegistryView> = store
                .list_registries()
                .await?
                .into_iter()
                .map(RegistryView::from)
                .collect();
            if out.json {
                out.print_json(&rows);
            } else {
                out.line(format!(
                    "{:<4} {:<20} {:<32} {:<16} PASSWORD",
                    "ID", "NAME", "URL", "USER"
                ));
                for r in rows {
                    out.line(format!(
                        "{:<4} {:<20} {:<32} {:<16} {}",
                        r.id,
                        r.name,
                        r.url,
                        r.username.unwrap_or_else(|| "-".into()),
                        if r.has_password { "set" } else { "-" }
                    ));
                }
            }
        }
        RegistryCommand::Rm { registry } => {
            let found = store.find_registry(&registry).await?;
            store.delete_registry(found.id).await?;
            let _ = store
                .audit(
                    "cli",
                    "registry.delete",
                    Some(&format!("registry:{}", found.id)),
                    None,
                )
                .await;
            if out.json {
                out.print_json(&serde_json::json!({"deleted": found.id}));
            } else {
                out.line(format!("deleted registry {} ({:?})", found.id, found.name));
            }
        }
    }
    Ok(())
}

async fn apikey(store: &Store, cmd: ApiKeyCommand, out: &mut Out) -> Result<(), AdminError> {
    match cmd {
        ApiKeyCommand::Create {
            name,
            permissions,
            environments,
        } => {
            let envs = (!environments.is_empty()).then_some(environments);
            let created = create_api_key(store, &name, permissions, envs).await?;
            let _ = store
                .audit(
                    "cli",
                    "apikey.create",
                    Some(&format!("apikey:{}", created.id)),
                    Some(&created.name),
                )
                .await;
            if out.json {
                out.print_json(&created);
            } else {
                out.line(format!(
                    "API key {} ({:?}) with {}; shown once:",
                    created.id,
                    created.name,
                    created.permissions.join(", ")
                ));
                out.line(created.key);
            }
        }
        ApiKeyCommand::List => {
            let rows: Vec<ApiKeyView> = store
                .list_api_keys()
                .await?
                .into_iter()
                .map(ApiKeyView::from)
                .collect();
            if out.json {
                out.print_json(&rows);
            } else {
                out.line(format!(
                    "{:<4} {:<16} {:<10} {:<8} PERMISSIONS",
                    "ID", "NAME", "PREFIX", "STATUS"
                ));
                for k in rows {
                    out.line(format!(
                        "{:<4} {:<16} {:<10} {:<8} {}",
                        k.id,
                        k.name,
                        k.prefix,
                        k.status,
                        k.permissions.join(",")
                    ));
                }
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let record = store.revoke_api_key(id).await?;
            let _ = store
                .audit("cli", "apikey.revoke", Some(&format!("apikey:{id}")), None)
                .await;
            if out.json {
                out.print_json(&ApiKeyView::from(record));
            } else {
                out.line(format!("revoked API key {id}"));
            }
        }
    }
    Ok(())
}

/// Writes `text` to stdout and flushes.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}
