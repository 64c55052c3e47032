//! The TUI's state and how keys change it, apart from drawing and I/O so both are tested on
//! their own. Data from the node's API is kept as JSON values: the TUI shows what the API says.

use std::collections::VecDeque;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

/// The views, reachable with 1-4 or Tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// This node, the mesh, standing, jobs by status, recent events.
    Overview,
    /// The job list; Enter opens a job.
    Jobs,
    /// The submit form.
    Submit,
    /// Peers with capabilities, reputation and credits.
    Peers,
}

impl View {
    /// In tab order.
    pub const ALL: [View; 4] = [View::Overview, View::Jobs, View::Submit, View::Peers];

    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "1 Overview",
            View::Jobs => "2 Jobs",
            View::Submit => "3 Submit",
            View::Peers => "4 Peers",
        }
    }
}

/// Whether the node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Not heard from yet.
    Connecting,
    /// The last request succeeded.
    Connected,
    /// The last request failed; retrying.
    Unreachable(String),
}

/// What the node's API returned last.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// `GET /api/v1/node`.
    pub node: Option<Value>,
    /// `GET /api/v1/peers`.
    pub peers: Vec<Value>,
    /// `GET /api/v1/jobs`.
    pub jobs: Vec<Value>,
    /// `GET /api/v1/stats`.
    pub stats: Option<Value>,
    /// `GET /api/v1/ledger`.
    pub ledger: Option<Value>,
}

/// The job opened in the detail view.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// Its id.
    pub id: String,
    /// `GET /api/v1/jobs/{id}`.
    pub job: Option<Value>,
    /// `GET /api/v1/jobs/{id}/logs`.
    pub logs: Vec<Value>,
    /// The verified stdout, once completed.
    pub output: Option<String>,
    /// Lines the timeline is scrolled back from its newest line.
    pub scroll: u16,
}

/// One field of the submit form.
#[derive(Debug, Clone)]
pub struct Field {
    /// Label.
    pub label: &'static str,
    /// Text typed.
    pub value: String,
    /// Validation message, shown beside it.
    pub error: Option<String>,
}

/// The submit form.
#[derive(Debug, Clone)]
pub struct Form {
    /// Fields in order.
    pub fields: Vec<Field>,
    /// The focused field.
    pub focus: usize,
}

impl Default for Form {
    fn default() -> Self {
        let field = |label, value: &str| Field {
            label,
            value: value.to_string(),
            error: None,
        };
        Self {
            fields: vec![
                field("image", "distributeai/toolbox:local"),
                field("command", "sh -c 'seq 1 100000 | sha256sum'"),
                field("redundancy n", "3"),
                field("consensus k", "2"),
                field("cpus", "1"),
                field("memory MiB", "64"),
                field("timeout s", "60"),
                field("reward", "0"),
            ],
            focus: 0,
        }
    }
}

/// Sort order of the peer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSort {
    /// Highest reputation first.
    Reputation,
    /// Most credits first.
    Credits,
    /// Most recently seen first.
    LastSeen,
    /// By PeerId.
    PeerId,
}

impl PeerSort {
    fn next(self) -> Self {
        match self {
            PeerSort::Reputation => PeerSort::Credits,
            PeerSort::Credits => PeerSort::LastSeen,
            PeerSort::LastSeen => PeerSort::PeerId,
            PeerSort::PeerId => PeerSort::Reputation,
        }
    }

    /// Name shown in the title.
    pub fn name(self) -> &'static str {
        match self {
            PeerSort::Reputation => "reputation",
            PeerSort::Credits => "credits",
            PeerSort::LastSeen => "last seen",
            PeerSort::PeerId => "peer id",
        }
    }
}

/// What the key asks the I/O loop to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave.
    Quit,
    /// Fetch everything again.
    Refresh,
    /// Submit this spec.
    Submit(Value),
    /// Cancel this job.
    Cancel(String),
}

/// The whole UI state.
#[derive(Debug, Clone)]
pub struct App {
    /// The API address shown in the header.
    pub api: String,
    /// Current view.
    pub view: View,
    /// Whether a job is open (within the Jobs view).
    pub detail: Option<Detail>,
    /// API data.
    pub data: Data,
    /// Connection state.
    pub connection: Connection,
    /// Selected row of the job list.
    pub job_selected: usize,
    /// Selected row of the peer list.
    pub peer_selected: usize,
    /// Peer sort order.
    pub peer_sort: PeerSort,
    /// Job filter text.
    pub filter: String,
    /// Whether keys go to the filter.
    pub filtering: bool,
    /// The submit form.
    pub form: Form,
    /// Whether the help overlay is shown.
    pub help: bool,
    /// Recent events, newest first.
    pub events: VecDeque<String>,
    /// One-line status message.
    pub status: Option<String>,
}

fn short(text: &str) -> String {
    let n = text.chars().count();
    if n <= 12 {
        text.to_string()
    } else {
        text.chars().skip(n - 12).collect()
    }
}

impl App {
    /// A fresh state for the node at `api`.
    pub fn new(api: &str) -> Self {
        Self {
            api: api.to_string(),
            view: View::Overview,
            detail: None,
            data: Data::default(),
            connection: Connection::Connecting,
            job_selected: 0,
            peer_selected: 0,
            peer_sort: PeerSort::Reputation,
            filter: String::new(),
            filtering: false,
            form: Form::default(),
            help: false,
            events: VecDeque::new(),
            status: None,
        }
    }

    /// Records an event for the overview.
    pub fn push_event(&mut self, text: impl Into<String>) {
        self.events.push_front(text.into());
        self.events.truncate(50);
    }

    /// Jobs matching the filter (id, image or status contain it).
    pub fn visible_jobs(&self) -> Vec<&Value> {
        let filter = self.filter.to_lowercase();
        self.data
            .jobs
            .iter()
            .filter(|j| {
                filter.is_empty()
                    || ["id", "status"].iter().any(|k| {
                        j[*k]
                            .as_str()
                            .is_some_and(|v| v.to_lowercase().contains(&filter))
                    })
                    || j["spec"]["image"]
                        .as_str()
                        .is_some_and(|v| v.to_lowercase().contains(&filter))
            })
            .collect()
    }

    /// Peers in the chosen order.
    pub fn sorted_peers(&self) -> Vec<&Value> {
        let mut peers: Vec<&Value> = self.data.peers.iter().collect();
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::MIN);
        match self.peer_sort {
            PeerSort::Reputation => {
                peers.sort_by(|a, b| f(b, "reputation").total_cmp(&f(a, "reputation")))
            }
            PeerSort::Credits => peers.sort_by(|a, b| f(b, "credits").total_cmp(&f(a, "credits"))),
            PeerSort::LastSeen => {
                peers.sort_by(|a, b| f(b, "last_seen").total_cmp(&f(a, "last_seen")))
            }
            PeerSort::PeerId => {
                peers.sort_by(|a, b| a["peer_id"].as_str().cmp(&b["peer_id"].as_str()))
            }
        }
        peers
    }

    /// Opens the detail view of a job.
    pub fn open_job(&mut self, id: String) {
        self.view = View::Jobs;
        self.detail = Some(Detail {
            id,
            ..Detail::default()
        });
    }

    /// The selected job's id in the list.
    pub fn selected_job_id(&self) -> Option<String> {
        self.visible_jobs()
            .get(self.job_selected)
            .and_then(|j| j["id"].as_str().map(str::to_string))
    }

    /// Handles one key.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.help {
            self.help = false;
            return Action::None;
        }
        if self.filtering {
            match key.code {
                KeyCode::Enter | KeyCode::Esc => self.filtering = false,
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.job_selected = 0;
            return Action::None;
        }
        if self.view == View::Submit {
            return self.on_form_key(key);
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('r') => return Action::Refresh,
            KeyCode::Char(c @ '1'..='4') => {
                self.view = View::ALL[(c as usize) - ('1' as usize)];
                self.detail = None;
            }
            KeyCode::Tab => {
                let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
                self.view = View::ALL[(i + 1) % View::ALL.len()];
                self.detail = None;
            }
            _ => return self.on_view_key(key),
        }
        Action::None
    }

    fn on_view_key(&mut self, key: KeyEvent) -> Action {
        let down = matches!(key.code, KeyCode::Down | KeyCode::Char('j'));
        let up = matches!(key.code, KeyCode::Up | KeyCode::Char('k'));
        match self.view {
            View::Jobs => {
                if let Some(detail) = &mut self.detail {
                    match key.code {
                        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                            self.detail = None
                        }
                        KeyCode::Char('c') => return Action::Cancel(detail.id.clone()),
                        _ if up => detail.scroll = detail.scroll.saturating_add(1),
                        _ if down => detail.scroll = detail.scroll.saturating_sub(1),
                        _ => {}
                    }
                    return Action::None;
                }
                let count = self.visible_jobs().len();
                match key.code {
                    _ if down && count > 0 => {
                        self.job_selected = (self.job_selected + 1).min(count - 1)
                    }
                    _ if up => self.job_selected = self.job_selected.saturating_sub(1),
                    KeyCode::Char('/') => {
                        self.filtering = true;
                        self.filter.clear();
                    }
                    KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => {
                        if let Some(id) = self.selected_job_id() {
                            self.open_job(id);
                            return Action::Refresh;
                        }
                    }
                    KeyCode::Char('c') => {
                        if let Some(id) = self.selected_job_id() {
                            return Action::Cancel(id);
                        }
                    }
                    _ => {}
                }
            }
            View::Peers => {
                let count = self.data.peers.len();
                match key.code {
                    _ if down && count > 0 => {
                        self.peer_selected = (self.peer_selected + 1).min(count - 1)
                    }
                    _ if up => self.peer_selected = self.peer_selected.saturating_sub(1),
                    KeyCode::Char('s') => self.peer_sort = self.peer_sort.next(),
                    _ => {}
                }
            }
            View::Overview | View::Submit => {}
        }
        Action::None
    }

    fn on_form_key(&mut self, key: KeyEvent) -> Action {
        let form = &mut self.form;
        let n = form.fields.len();
        match key.code {
            KeyCode::Esc => {
                self.view = View::Jobs;
            }
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % n,
            KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + n - 1) % n,
            KeyCode::Backspace => {
                form.fields[form.focus].value.pop();
            }
            KeyCode::Char(c) => form.fields[form.focus].value.push(c),
            KeyCode::Enter => match self.form.validate() {
                Some(spec) => {
                    self.status = Some("submitting…".into());
                    return Action::Submit(spec);
                }
                None => self.status = Some("fix the fields marked in red".into()),
            },
            _ => {}
        }
        Action::None
    }

    /// Short form of an id for tables.
    pub fn short(text: &str) -> String {
        short(text)
    }
}

/// Splits a command line into words, honouring single and double quotes.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

impl Form {
    /// Checks every field, marking errors in place; returns the job spec JSON when all are
    /// valid, `None` when some field shows an error.
    pub fn validate(&mut self) -> Option<Value> {
        for f in &mut self.fields {
            f.error = None;
        }
        let number = |f: &mut Field, min: u64, max: u64| -> Option<u64> {
            match f.value.trim().parse::<u64>() {
                Ok(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    f.error = Some(format!("a whole number from {min} to {max}"));
                    None
                }
            }
        };
        let image = self.fields[0].value.trim().to_string();
        if image.is_empty() {
            self.fields[0].error = Some("required".into());
        }
        let command = match split_command(&self.fields[1].value) {
            Ok(words) => Some(words),
            Err(e) => {
                self.fields[1].error = Some(e);
                None
            }
        };
        let n = number(&mut self.fields[2], 1, 16);
        let k = number(&mut self.fields[3], 1, 16);
        if let (Some(n), Some(k)) = (n, k)
            && k > n
        {
            self.fields[3].error = Some("k must not exceed n".into());
        }
        let cpus = number(&mut self.fields[4], 1, 1024);
        let memory = number(&mut self.fields[5], 16, 16 * 1024 * 1024);
        let timeout = number(&mut self.fields[6], 1, 86_400);
        let reward = number(&mut self.fields[7], 0, u64::from(u32::MAX));
        if self.fields.iter().any(|f| f.error.is_some()) {
            return None;
        }
        Some(json!({
            "image": image,
            "command": command,
            "redundancy": n,
            "consensus": k,
            "resources": { "cpus": cpus, "memory_mb": memory, "gpus": 0 },
            "timeout_s": timeout,
            "reward": reward,
        }))
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyEventKind, KeyEventState};

    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    fn with_jobs() -> App {
        let mut app = App::new("127.0.0.1:7070");
        app.data.jobs = vec![
            json!({"id": "aaaa1111", "status": "completed", "spec": {"image": "busybox"}}),
            json!({"id": "bbbb2222", "status": "running", "spec": {"image": "python"}}),
            json!({"id": "cccc3333", "status": "failed", "spec": {"image": "busybox"}}),
        ];
        app
    }

    #[test]
    fn number_keys_and_tab_switch_views_and_q_quits() {
        let mut app = App::new("x");
        assert_eq!(app.on_key(key(KeyCode::Char('2'))), Action::None);
        assert_eq!(app.view, View::Jobs);
        app.on_key(key(KeyCode::Tab));
        assert_eq!(app.view, View::Submit);
        // In the form, q is text, Esc leaves.
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::None);
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.view, View::Jobs);
        app.on_key(key(KeyCode::Char('4')));
        assert_eq!(app.view, View::Peers);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn job_list_moves_filters_opens_and_cancels() {
        let mut app = with_jobs();
        app.on_key(key(KeyCode::Char('2')));
        app.on_key(key(KeyCode::Char('j')));
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.job_selected, 2, "stops at the last row");
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected_job_id().as_deref(), Some("bbbb2222"));
        assert_eq!(
            app.on_key(key(KeyCode::Char('c'))),
            Action::Cancel("bbbb2222".into())
        );

        app.on_key(key(KeyCode::Char('/')));
        for c in "busy".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.on_key(key(KeyCode::Enter));
        assert!(!app.filtering);
        assert_eq!(app.visible_jobs().len(), 2);
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::Refresh);
        assert_eq!(app.detail.as_ref().map(|d| d.id.as_str()), Some("aaaa1111"));
        app.on_key(key(KeyCode::Up));
        assert_eq!(
            app.detail.as_ref().map(|d| d.scroll),
            Some(1),
            "up scrolls back in time"
        );
        app.on_key(key(KeyCode::Esc));
        assert!(app.detail.is_none());
    }

    #[test]
    fn the_form_validates_in_place_and_builds_a_spec() {
        let mut app = App::new("x");
        app.on_key(key(KeyCode::Char('3')));
        // Focus k and make it larger than n.
        for _ in 0..3 {
            app.on_key(key(KeyCode::Tab));
        }
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Char('9')));
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::None);
        assert_eq!(
            app.form.fields[3].error.as_deref(),
            Some("k must not exceed n")
        );
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Char('2')));
        let Action::Submit(spec) = app.on_key(key(KeyCode::Enter)) else {
            panic!("expected a submission");
        };
        assert_eq!(spec["consensus"], 2);
        assert_eq!(
            spec["command"],
            json!(["sh", "-c", "seq 1 100000 | sha256sum"])
        );
        assert!(app.form.fields.iter().all(|f| f.error.is_none()));
    }

    #[test]
    fn peers_sort_cycles_and_help_closes_on_any_key() {
        let mut app = App::new("x");
        app.data.peers = vec![
            json!({"peer_id": "b", "reputation": 90.0, "credits": 70, "last_seen": 5}),
            json!({"peer_id": "a", "reputation": 120.0, "credits": 10, "last_seen": 9}),
        ];
        app.on_key(key(KeyCode::Char('4')));
        assert_eq!(app.sorted_peers()[0]["peer_id"], "a");
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!(app.peer_sort, PeerSort::Credits);
        assert_eq!(app.sorted_peers()[0]["peer_id"], "b");
        app.on_key(key(KeyCode::Char('?')));
        assert!(app.help);
        app.on_key(key(KeyCode::Char('x')));
        assert!(!app.help);
    }

    #[test]
    fn command_lines_split_like_a_shell() {
        assert_eq!(
            split_command("sh -c 'a b' \"c d\"").expect("ok"),
            vec!["sh", "-c", "a b", "c d"]
        );
        assert!(split_command("echo 'oops").is_err());
        assert!(split_command("").expect("ok").is_empty());
    }
}
