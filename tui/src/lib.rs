//! `distributeai tui`: the terminal front door to a node, in the manner of k9s or gitui.
//!
//! - [`app`]: state and key handling, apart from I/O and drawing.
//! - [`ui`]: drawing the state with ratatui.
//!
//! [`run`] owns the terminal: it draws on every change, reads keys on a thread of its own,
//! follows the node's server-sent events (`GET /api/v1/events`) to refresh at once when a job or
//! peer changes, polls every two seconds besides, and keeps retrying while the node is
//! unreachable. The terminal is restored on exit, panic included.

pub mod app;
pub mod ui;

use std::time::Duration;

use anyhow::Result;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use serde_json::Value;
use tokio::sync::mpsc;

use app::{Action, App, Connection};

/// What wakes the loop.
enum Wake {
    Key(ratatui::crossterm::event::KeyEvent),
    Changed,
    Resize,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A JSON client of the node's API.
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn fetch(&self, path: &str) -> Result<reqwest::Response, String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        Err(body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.to_string()))
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.fetch(path)
            .await?
            .json()
            .await
            .map_err(|e| e.to_string())
    }

    async fn text(&self, path: &str) -> Result<String, String> {
        self.fetch(path)
            .await?
            .text()
            .await
            .map_err(|e| e.to_string())
    }
}

/// Fetches everything the current view needs into `app`.
async fn refresh(api: &Api, app: &mut App) {
    let fetched = async {
        let node = api.get("/api/v1/node").await?;
        let peers = api.get("/api/v1/peers").await?;
        let jobs = api.get("/api/v1/jobs").await?;
        let stats = api.get("/api/v1/stats").await?;
        let ledger = api.get("/api/v1/ledger").await?;
        Ok::<_, String>((node, peers, jobs, stats, ledger))
    }
    .await;
    match fetched {
        Ok((node, peers, jobs, stats, ledger)) => {
            if app.connection != Connection::Connected {
                app.push_event(format!("connected to {}", app.api));
            }
            app.connection = Connection::Connected;
            app.data.node = Some(node);
            app.data.peers = peers.as_array().cloned().unwrap_or_default();
            for job in jobs.as_array().into_iter().flatten() {
                let id = job["id"].as_str().unwrap_or_default();
                let before = app
                    .data
                    .jobs
                    .iter()
                    .find(|j| j["id"] == id)
                    .map(|j| j["status"].clone());
                if before.as_ref() != Some(&job["status"]) {
                    app.push_event(format!(
                        "job {} {}",
                        App::short(id),
                        job["status"].as_str().unwrap_or("?")
                    ));
                }
            }
            app.data.jobs = jobs.as_array().cloned().unwrap_or_default();
            app.data.stats = Some(stats);
            app.data.ledger = Some(ledger);
        }
        Err(error) => {
            if !matches!(app.connection, Connection::Unreachable(_)) {
                app.push_event(format!("lost the node: {error}"));
            }
            app.connection = Connection::Unreachable(error);
            return;
        }
    }
    if let Some(detail) = &mut app.detail {
        let id = detail.id.clone();
        if let Ok(job) = api.get(&format!("/api/v1/jobs/{id}")).await {
            let completed = job["status"] == "completed";
            detail.job = Some(job);
            if let Ok(logs) = api.get(&format!("/api/v1/jobs/{id}/logs")).await {
                detail.logs = logs.as_array().cloned().unwrap_or_default();
            }
            if completed && detail.output.is_none() {
                detail.output = api.text(&format!("/api/v1/jobs/{id}/result")).await.ok();
            }
        }
    }
}

/// Follows the node's event stream, waking the loop on every change; reconnects forever.
async fn follow_events(api: Api, wake: mpsc::Sender<Wake>) {
    loop {
        if let Ok(mut response) = api
            .http
            .get(format!("{}/api/v1/events", api.base))
            .send()
            .await
        {
            while let Ok(Some(chunk)) = response.chunk().await {
                if chunk.windows(5).any(|w| w == b"data:")
                    && wake.send(Wake::Changed).await.is_err()
                {
                    return;
                }
            }
        }
        if wake.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Runs the TUI against the node API at `api` (`host:port` or a URL) until the user quits.
pub async fn run(api: &str) -> Result<()> {
    let base = if api.starts_with("http") {
        api.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", api.trim_end_matches('/'))
    };
    let client = Api {
        base,
        http: reqwest::Client::new(),
    };
    let mut app = App::new(api);
    // ratatui::init enters the alternate screen and installs a panic hook that restores the
    // terminal before the panic message is printed.
    let mut terminal = ratatui::init();
    let (wake_tx, mut wake) = mpsc::channel(64);

    let keys = wake_tx.clone();
    std::thread::spawn(move || {
        loop {
            let woke = match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => Wake::Key(key),
                Ok(Event::Resize(..)) => Wake::Resize,
                Ok(_) => continue,
                Err(_) => break,
            };
            if keys.blocking_send(woke).is_err() {
                break;
            }
        }
    });
    tokio::spawn(follow_events(client.clone(), wake_tx.clone()));

    refresh(&client, &mut app).await;
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let result = loop {
        if let Err(e) = terminal.draw(|frame| ui::draw(frame, &app, now_ms())) {
            break Err(e.into());
        }
        let woke = tokio::select! {
            w = wake.recv() => w,
            _ = poll.tick() => Some(Wake::Changed),
        };
        match woke {
            None => break Ok(()),
            Some(Wake::Resize) => {}
            Some(Wake::Changed) => refresh(&client, &mut app).await,
            Some(Wake::Key(key)) => match app.on_key(key) {
                Action::None => {}
                Action::Quit => break Ok(()),
                Action::Refresh => refresh(&client, &mut app).await,
                Action::Cancel(id) => {
                    let url = format!("{}/api/v1/jobs/{id}", client.base);
                    app.status = Some(match client.http.delete(url).send().await {
                        Ok(r) if r.status().is_success() => {
                            format!("cancelled {}", App::short(&id))
                        }
                        Ok(r) => format!("cancel refused: {}", r.status()),
                        Err(e) => format!("cancel failed: {e}"),
                    });
                    refresh(&client, &mut app).await;
                }
                Action::Submit(spec) => {
                    let url = format!("{}/api/v1/jobs", client.base);
                    match client.http.post(url).json(&spec).send().await {
                        Ok(r) => {
                            let ok = r.status().is_success();
                            let body: Value = r.json().await.unwrap_or_default();
                            if ok {
                                let id = body["id"].as_str().unwrap_or_default().to_string();
                                app.status = Some(format!("submitted {}", App::short(&id)));
                                app.push_event(format!("submitted job {}", App::short(&id)));
                                app.open_job(id);
                            } else {
                                app.status = Some(format!(
                                    "refused: {}",
                                    body["error"].as_str().unwrap_or("?")
                                ));
                            }
                        }
                        Err(e) => app.status = Some(format!("cannot submit: {e}")),
                    }
                    refresh(&client, &mut app).await;
                }
            },
        }
    };
    ratatui::restore();
    result
}
