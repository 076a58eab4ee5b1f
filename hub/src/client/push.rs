//! `mooring-hub push`: push an image through a running hub and draw its
//! progress, one bar per layer, until the job ends.
//!
//! Starts the job with `POST /api/images/push`, follows `GET /api/jobs/{id}`
//! as Server-Sent Events (reconnecting with `Last-Event-ID`), and exits
//! non-zero when the push fails. Without a terminal the bars are hidden and
//! each layer's state changes are printed as lines instead.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use http::{Method, StatusCode};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use super::follow::{api_error, follow_job, StreamedEvent};
use super::http::{ClientError, HubClient};

/// Times the job stream is reopened before giving up.
const MAX_RECONNECTS: u32 = 20;

/// Arguments of `mooring-hub push`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// URL of the running hub.
    #[arg(long, env = "MOORING_HUB_URL", default_value = "http://127.0.0.1:3000")]
    pub hub_url: String,
    /// API key with `images:push` on the environment.
    #[arg(long, env = "MOORING_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Environment id holding the image (default: the hub's `local` one).
    #[arg(long = "env", env = "MOORING_PUSH_ENV")]
    pub env: Option<i64>,
    /// Image to push: an id (`sha256:…`) or a reference (`app:v1`).
    #[arg(long, env = "MOORING_PUSH_IMAGE")]
    pub image: String,
    /// Registry id to push to.
    #[arg(long, env = "MOORING_PUSH_REGISTRY")]
    pub registry: i64,
    /// New name and/or tag for the pushed image (`team/app:v2`).
    #[arg(long, env = "MOORING_PUSH_TAG")]
    pub tag: Option<String>,
}

/// Whether an image argument is an id rather than a name.
fn looks_like_id(image: &str) -> bool {
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    (12..=64).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// The request body for `args`.
pub fn push_body(args: &PushArgs) -> Value {
    let mut body = json!({"imageId": args.image, "registryId": args.registry});
    if !looks_like_id(&args.image) {
        body["imageName"] = Value::String(args.image.clone());
    }
    if let Some(tag) = &args.tag {
        body["newTag"] = Value::String(tag.clone());
    }
    body
}

/// Runs the command: `Ok` with the completion event when the push
/// completed, [`ClientError::JobFailed`] when it failed.
pub async fn run_push(args: &PushArgs) -> Result<Value, ClientError> {
    let client = HubClient::new(&args.hub_url, args.api_key.clone())?;
    let path = match args.env {
        Some(env) => format!("/api/images/push?env={env}"),
        None => "/api/images/push".to_owned(),
    };
    let body = push_body(args);
    let resp = client
        .send(
            Method::POST,
            &path,
            &[("accept", "*/*")],
            Some(body.to_string().into_bytes()),
        )
        .await?;
    let status = resp.status();
    let bytes = resp.bytes(1024 * 1024).await?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status != StatusCode::OK && status != StatusCode::ACCEPTED {
        return Err(api_error(status, &answer));
    }
    let job_id = answer["jobId"]
        .as_str()
        .ok_or_else(|| ClientError::BadAnswer(format!("no jobId in {answer}")))?
        .to_owned();
    let mut view = ProgressView::new(std::io::stderr().is_terminal());
    let end = follow_job(&client, &job_id, None, MAX_RECONNECTS, |ev| view.show(ev)).await?;
    view.clear();
    let result = end.result;
    if result["status"] == "complete" {
        let digest = result["digest"].as_str().unwrap_or("");
        println!(
            "{} {}",
            result["message"].as_str().unwrap_or("Image pushed"),
            digest
        );
        Ok(result)
    } else {
        let error = result["error"].as_str().unwrap_or("push failed");
        Err(ClientError::JobFailed(match result["detail"].as_str() {
            Some(detail) => format!("{error} (Docker said: {detail})"),
            None => error.to_owned(),
        }))
    }
}

/// The live display: one bar per layer, plain lines for the rest.
#[derive(Debug)]
pub struct ProgressView {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    /// Last status printed per layer (plain mode).
    last: HashMap<String, String>,
    plain: bool,
}

/// Layers shown at most; more are summarised.
const MAX_BARS: usize = 256;

impl ProgressView {
    /// A view drawing bars when `terminal`, printing lines otherwise.
    pub fn new(terminal: bool) -> Self {
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        ProgressView {
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            last: HashMap::new(),
            plain: !terminal,
        }
    }

    /// Shows one job event.
    pub fn show(&mut self, ev: &StreamedEvent) {
        let data = &ev.data;
        let status = data["status"].as_str().unwrap_or("");
        let Some(layer) = data["id"].as_str() else {
            if !ev.is_terminal() && !status.is_empty() {
                let message = data["message"].as_str().unwrap_or(status);
                self.line(message);
            }
            return;
        };
        let current = data["progressDetail"]["current"].as_u64();
        let total = data["progressDetail"]["total"].as_u64();
        if self.plain {
            if self.last.get(layer).map(String::as_str) != Some(status)
                && self.last.len() < MAX_BARS
            {
                self.last.insert(layer.to_owned(), status.to_owned());
                self.line(&format!("{layer}: {status}"));
            }
            return;
        }
        let Some(bar) = self.bar(layer) else { return };
        match (current, total) {
            (Some(cur), Some(tot)) if tot > 0 => {
                bar.set_length(tot);
                bar.set_position(cur.min(tot));
                bar.set_message(status.to_owned());
            }
            (Some(cur), _) => {
                bar.set_position(cur);
                bar.set_message(status.to_owned());
            }
            _ => {
                let done = matches!(status, "Pushed" | "Layer already exists" | "Mounted from")
                    || status.starts_with("Mounted from");
                if done {
                    if let Some(len) = bar.length() {
                        bar.set_position(len);
                    }
                    bar.finish_with_message(status.to_owned());
                } else {
                    bar.set_message(status.to_owned());
                }
            }
        }
    }

    /// The bar of a layer, created on first sight.
    pub fn bar(&mut self, layer: &str) -> Option<&ProgressBar> {
        if !self.bars.contains_key(layer) {
            if self.bars.len() >= MAX_BARS {
                return None;
            }
            let style = ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:10} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(style);
            bar.set_prefix(layer.chars().take(12).collect::<String>());
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bars.insert(layer.to_owned(), bar);
        }
        self.bars.get(layer)
    }

    fn line(&self, text: &str) {
        if self.plain {
            eprintln!("{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }

    /// Stops every bar, leaving their last state on screen.
    pub fn clear(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(image: &str, tag: Option<&str>) -> PushArgs {
        PushArgs {
            hub_url: "http://127.0.0.1:1".into(),
            api_key: None,
            env: Some(2),
            image: image.into(),
            registry: 3,
            tag: tag.map(str::to_owned),
        }
    }

    #[test]
    fn body_names_the_image_unless_it_is_an_id() {
        assert_eq!(
            push_body(&args("app:v1", Some("team/app:v2"))),
            json!({"imageId": "app:v1", "imageName": "app:v1", "registryId": 3, "newTag": "team/app:v2"})
        );
        let id = "sha256:43edbe594485e591165bb4e89bc093dce450376967517c9191286d09f8bceb50";
        assert_eq!(
            push_body(&args(id, None)),
            json!({"imageId": id, "registryId": 3})
        );
        assert!(looks_like_id("43edbe594485"));
    }

    #[test]
    fn bars_follow_layer_progress() {
        let mut view = ProgressView::new(false);
        view.plain = false; // draw hidden bars
        let ev = |data: Value| StreamedEvent { id: 1, data };
        view.show(&ev(
            json!({"status": "Preparing", "progressDetail": {}, "id": "l1"}),
        ));
        view.show(&ev(json!({"status": "Pushing", "progressDetail": {"current": 50, "total": 200}, "id": "l1"})));
        let bar = view.bar("l1").expect("bar").clone();
        assert_eq!((bar.position(), bar.length()), (50, Some(200)));
        assert_eq!(bar.message(), "Pushing");
        view.show(&ev(
            json!({"status": "Pushed", "progressDetail": {}, "id": "l1"}),
        ));
        assert!(bar.is_finished());
        assert_eq!(bar.position(), 200);
        view.show(&ev(
            json!({"status": "Layer already exists", "progressDetail": {}, "id": "l2"}),
        ));
        assert!(view.bar("l2").expect("bar").is_finished());
        view.clear();
    }
}
