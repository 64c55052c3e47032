//! `distributeai tui`: the terminal front door to a node, in the manner of k9s or gitui.
//!
//! - [`app`]: state and key handling, apart from I/O and drawing.
//! - [`ui`]: drawing the state with ratatui.
//!
//! [`run`] owns the terminal: it draws on every change, reads keys on a thread of its own,
//! fetches through the typed client (`distributeai_api::ApiClient`) on a task of its own so a
//! slow node never holds up drawing, follows the node's server-sent events
//! (`GET /api/v1/events`) to refresh at once when a job or peer changes, polls every two
//! seconds besides, and keeps retrying while the node is unreachable. The terminal is restored
//! on exit, panic included.

pub mod app;
pub mod ui;

use std::time::Duration;

use anyhow::Result;
use distributeai_api::ApiClient;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::{mpsc, watch};

use app::{Action, App, DetailData, Snapshot};

/// Most of a verified output the TUI keeps to show (bytes).
const MAX_SHOWN_OUTPUT: usize = 64 * 1024;

/// What wakes the loop.
enum Wake {
    Key(ratatui::crossterm::event::KeyEvent),
    /// The node's data changed: fetch again.
    Changed,
    /// A fetch finished.
    Fetched(Box<Result<Snapshot, String>>),
    /// A submit or cancel finished: its status line, and a job to open.
    Done(String, Option<String>),
    Resize,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What to fetch: everything, plus the open job's detail (and its output once completed,
/// unless already held). Every `send_modify` wakes the fetcher, an unchanged request included.
#[derive(Debug, Clone, Default)]
struct Want {
    detail: Option<(String, bool)>,
}

/// Fetches everything the current view needs.
async fn fetch(api: &ApiClient, want: &Want) -> Result<Snapshot, String> {
    let text = |e: distributeai_api::ClientError| e.to_string();
    let (node, peers, jobs, stats, ledger) = tokio::try_join!(
        api.node(),
        api.peers(),
        api.jobs(),
        api.stats(),
        api.ledger()
    )
    .map_err(text)?;
    let mut detail = None;
    if let Some((id, want_output)) = &want.detail
        && let Ok(job) = api.job(id).await
    {
        let logs = api.logs(id).await.unwrap_or_default();
        let output = if *want_output && job.status == distributeai_api::JobStatus::Completed {
            api.result_stdout(id).await.ok().map(|b| {
                // The screen shows a few lines; a large output is cut, not kept whole.
                let shown = &b[..b.len().min(MAX_SHOWN_OUTPUT)];
                String::from_utf8_lossy(shown).into_owned()
            })
        } else {
            None
        };
        detail = Some(DetailData {
            id: id.clone(),
            job,
            logs,
            output,
        });
    }
    Ok(Snapshot {
        node,
        peers,
        jobs,
        stats,
        ledger,
        detail,
    })
}

/// Fetches whenever asked, off the draw loop, so a slow node never freezes the screen.
async fn fetcher(api: ApiClient, mut want: watch::Receiver<Want>, wake: mpsc::Sender<Wake>) {
    loop {
        let asked = want.borrow_and_update().clone();
        let fetched = fetch(&api, &asked).await;
        if wake.send(Wake::Fetched(Box::new(fetched))).await.is_err() {
            return;
        }
        if want.changed().await.is_err() {
            return;
        }
    }
}

/// Follows the node's event stream, waking the loop on every change; reconnects forever.
async fn follow_events(api: ApiClient, wake: mpsc::Sender<Wake>) {
    loop {
        if let Ok(mut events) = api.events().await {
            while let Ok(Some(_event)) = events.next().await {
                if wake.send(Wake::Changed).await.is_err() {
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

/// Runs the TUI against the node API at `api` (`host:port` or a URL), sending `token` if the
/// node requires one, until the user quits.
pub async fn run(api: &str, token: Option<String>) -> Result<()> {
    let client = ApiClient::new(api)
        .with_timeout(Duration::from_secs(5))
        .with_token(token);
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
    let (want_tx, want_rx) = watch::channel(Want::default());
    tokio::spawn(fetcher(client.clone(), want_rx, wake_tx.clone()));
    let refresh = |app: &App| {
        want_tx.send_modify(|w| {
            w.detail = app
                .detail
                .as_ref()
                .map(|d| (d.id.clone(), d.output.is_none()));
        })
    };

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
            Some(Wake::Changed) => refresh(&app),
            Some(Wake::Fetched(fetched)) => app.apply(*fetched),
            Some(Wake::Done(status, open)) => {
                app.status = Some(status.clone());
                app.push_event(status);
                if let Some(id) = open {
                    app.open_job(id);
                }
                refresh(&app);
            }
            Some(Wake::Key(key)) => match app.on_key(key) {
                Action::None => {}
                Action::Quit => break Ok(()),
                Action::Refresh => refresh(&app),
                Action::Cancel(id) => {
                    let (api, done) = (client.clone(), wake_tx.clone());
                    tokio::spawn(async move {
                        let status = match api.cancel(&id).await {
                            Ok(_) => format!("cancelled {}", App::short(&id)),
                            Err(e) => format!("cancel refused: {e}"),
                        };
                        let _ = done.send(Wake::Done(status, None)).await;
                    });
                }
                Action::Submit(spec) => {
                    let (api, done) = (client.clone(), wake_tx.clone());
                    tokio::spawn(async move {
                        let woke = match api.submit(&spec).await {
                            Ok(job) => Wake::Done(
                                format!("submitted job {}", App::short(&job.id)),
                                Some(job.id),
                            ),
                            Err(e) => Wake::Done(format!("refused: {e}"), None),
                        };
                        let _ = done.send(woke).await;
                    });
                }
            },
        }
    };
    ratatui::restore();
    result
}
