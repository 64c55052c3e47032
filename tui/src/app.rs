//! The TUI's state and how keys change it, apart from drawing and I/O so both are tested on
//! their own. Data from the node's API is kept in the API's own types (`distributeai-api`).

use std::collections::VecDeque;

use distributeai_api::{JobView, LedgerView, LogLine, NodeInfo, PeerView, Stats};
use distributeai_protocol::{Cpus, JobSpec};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

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
    pub node: Option<NodeInfo>,
    /// `GET /api/v1/peers`.
    pub peers: Vec<PeerView>,
    /// `GET /api/v1/jobs`.
    pub jobs: Vec<JobView>,
    /// `GET /api/v1/stats`.
    pub stats: Option<Stats>,
    /// `GET /api/v1/ledger`.
    pub ledger: Option<LedgerView>,
}

/// One fetch of everything the TUI shows, from the fetching task.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `GET /api/v1/node`.
    pub node: NodeInfo,
    /// `GET /api/v1/peers`.
    pub peers: Vec<PeerView>,
    /// `GET /api/v1/jobs`.
    pub jobs: Vec<JobView>,
    /// `GET /api/v1/stats`.
    pub stats: Stats,
    /// `GET /api/v1/ledger`.
    pub ledger: LedgerView,
    /// The open job, when one was open as the fetch began.
    pub detail: Option<DetailData>,
}

/// What was fetched of the open job.
#[derive(Debug, Clone)]
pub struct DetailData {
    /// Its id.
    pub id: String,
    /// `GET /api/v1/jobs/{id}`.
    pub job: JobView,
    /// `GET /api/v1/jobs/{id}/logs`.
    pub logs: Vec<LogLine>,
    /// The verified stdout, when it was asked for and the job completed.
    pub output: Option<String>,
}

/// The job opened in the detail view.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// Its id.
    pub id: String,
    /// `GET /api/v1/jobs/{id}`.
    pub job: Option<JobView>,
    /// `GET /api/v1/jobs/{id}/logs`.
    pub logs: Vec<LogLine>,
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
            fields: FIELDS
                .iter()
                .zip([
                    "distributeai/toolbox:local",
                    "sh -c 'seq 1 100000 | sha256sum'",
                    "3",
                    "2",
                    "1",
                    "64",
                    "60",
                    "0",
                ])
                .map(|((label, _), value)| field(label, value))
                .collect(),
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
    Submit(Box<JobSpec>),
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

    /// Takes in a fetch: the data, or the error that made the node unreachable. Jobs whose
    /// status changed since the last fetch are noted as events.
    pub fn apply(&mut self, fetched: Result<Snapshot, String>) {
        let snapshot = match fetched {
            Ok(snapshot) => snapshot,
            Err(error) => {
                if !matches!(self.connection, Connection::Unreachable(_)) {
                    self.push_event(format!("lost the node: {error}"));
                }
                self.connection = Connection::Unreachable(error);
                return;
            }
        };
        if self.connection != Connection::Connected {
            self.push_event(format!("connected to {}", self.api));
        }
        self.connection = Connection::Connected;
        for job in &snapshot.jobs {
            let before = self.data.jobs.iter().find(|j| j.id == job.id);
            if before.map(|j| j.status) != Some(job.status) {
                self.push_event(format!(
                    "job {} {}",
                    App::short(&job.id),
                    job.status.as_str()
                ));
            }
        }
        self.data = Data {
            node: Some(snapshot.node),
            peers: snapshot.peers,
            jobs: snapshot.jobs,
            stats: Some(snapshot.stats),
            ledger: Some(snapshot.ledger),
        };
        // A detail fetched for a job the user has since left is dropped.
        if let (Some(detail), Some(fetched)) = (&mut self.detail, snapshot.detail)
            && detail.id == fetched.id
        {
            detail.job = Some(fetched.job);
            detail.logs = fetched.logs;
            if fetched.output.is_some() {
                detail.output = fetched.output;
            }
        }
    }

    /// Records an event for the overview.
    pub fn push_event(&mut self, text: impl Into<String>) {
        self.events.push_front(text.into());
        self.events.truncate(50);
    }

    /// Jobs matching the filter (id, image or status contain it).
    pub fn visible_jobs(&self) -> Vec<&JobView> {
        let filter = self.filter.to_lowercase();
        self.data
            .jobs
            .iter()
            .filter(|j| {
                filter.is_empty()
                    || [j.id.as_str(), j.status.as_str(), j.spec.image.as_str()]
                        .iter()
                        .any(|v| v.to_lowercase().contains(&filter))
            })
            .collect()
    }

    /// Peers in the chosen order.
    pub fn sorted_peers(&self) -> Vec<&PeerView> {
        let mut peers: Vec<&PeerView> = self.data.peers.iter().collect();
        match self.peer_sort {
            PeerSort::Reputation => peers.sort_by(|a, b| b.reputation.total_cmp(&a.reputation)),
            PeerSort::Credits => peers.sort_by_key(|p| std::cmp::Reverse(p.credits)),
            PeerSort::LastSeen => peers.sort_by_key(|p| std::cmp::Reverse(p.last_seen)),
            PeerSort::PeerId => peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id)),
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
            .map(|j| j.id.clone())
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
                    return Action::Submit(Box::new(spec));
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

/// The form's fields, in order, and the spec field each one fills (as the protocol's
/// validation names it).
const FIELDS: [(&str, &str); 8] = [
    ("image", "image"),
    ("command", "command"),
    ("redundancy n", "redundancy"),
    ("consensus k", "consensus"),
    ("cpus", "resources.cpus"),
    ("memory MiB", "resources.memory_mb"),
    ("timeout s", "timeout_s"),
    ("reward", "reward"),
];

impl Form {
    /// Checks every field, marking errors in place: first that each parses as its type, then
    /// the whole spec with the protocol's own validation ([`JobSpec::check`]), whose limits
    /// are the node's. Returns the spec when it is valid, `None` when a field shows an error.
    pub fn validate(&mut self) -> Option<JobSpec> {
        for f in &mut self.fields {
            f.error = None;
        }
        fn parse<T: std::str::FromStr>(f: &mut Field, what: &str) -> Option<T> {
            let parsed = f.value.trim().parse().ok();
            if parsed.is_none() {
                f.error = Some(format!("not {what}"));
            }
            parsed
        }
        let image = self.fields[0].value.trim().to_string();
        let command = match split_command(&self.fields[1].value) {
            Ok(words) => Some(words),
            Err(e) => {
                self.fields[1].error = Some(e);
                None
            }
        };
        let n = parse::<u8>(&mut self.fields[2], "a whole number up to 255");
        let k = parse::<u8>(&mut self.fields[3], "a whole number up to 255");
        let cpus = match Cpus::parse(&self.fields[4].value) {
            Ok(cpus) => Some(cpus),
            Err(e) => {
                self.fields[4].error = Some(e);
                None
            }
        };
        let memory = parse::<u64>(&mut self.fields[5], "a whole number of MiB");
        let timeout = parse::<u32>(&mut self.fields[6], "a whole number of seconds");
        let reward = parse::<u64>(&mut self.fields[7], "a whole number");
        let (
            Some(command),
            Some(n),
            Some(k),
            Some(cpus),
            Some(memory),
            Some(timeout),
            Some(reward),
        ) = (command, n, k, cpus, memory, timeout, reward)
        else {
            return None;
        };
        let mut spec = JobSpec::new(image, command);
        spec.redundancy = n;
        spec.consensus = k;
        spec.resources.cpus = cpus;
        spec.resources.memory_mb = memory;
        spec.timeout_s = timeout;
        spec.reward = reward;
        if let Err(e) = spec.check() {
            let field = e.field().unwrap_or("image");
            let at = FIELDS
                .iter()
                .position(|(_, name)| *name == field)
                .unwrap_or(0);
            self.fields[at].error = Some(e.to_string());
            return None;
        }
        Some(spec)
    }
}

#[cfg(test)]
mod tests {
    use distributeai_api::JobStatus;
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

    fn job(id: &str, status: JobStatus, image: &str) -> JobView {
        JobView::new(id, status, JobSpec::new(image, vec![]), 0)
    }

    fn peer(id: &str, reputation: f64, credits: i64, last_seen: u64) -> PeerView {
        PeerView {
            peer_id: id.into(),
            public_key: None,
            addresses: vec![],
            capabilities: None,
            accepts_jobs: true,
            last_seen,
            connected: true,
            source: None,
            started_at: 0,
            reputation,
            credits,
            route: None,
            connections: vec![],
            links: vec![],
        }
    }

    fn with_jobs() -> App {
        let mut app = App::new("127.0.0.1:7070");
        app.data.jobs = vec![
            job("aaaa1111", JobStatus::Completed, "busybox"),
            job("bbbb2222", JobStatus::Running, "python"),
            job("cccc3333", JobStatus::Failed, "busybox"),
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
        let error = app.form.fields[3].error.clone().expect("k is marked");
        assert!(
            error.contains("consensus (k = 9)"),
            "the protocol's own message: {error}"
        );
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Char('2')));
        let Action::Submit(spec) = app.on_key(key(KeyCode::Enter)) else {
            panic!("expected a submission");
        };
        assert_eq!(spec.consensus, 2);
        assert_eq!(spec.command, vec!["sh", "-c", "seq 1 100000 | sha256sum"]);
        assert!(app.form.fields.iter().all(|f| f.error.is_none()));
    }

    #[test]
    fn the_form_takes_fractional_cpus_and_the_protocols_limits() {
        let mut form = Form::default();
        form.fields[4].value = "0.5".into();
        let spec = form.validate().expect("half a CPU is a valid job");
        assert_eq!(spec.resources.cpus, Cpus::from_millis(500));

        form.fields[4].value = "0.001".into();
        assert!(form.validate().is_none());
        let error = form.fields[4].error.clone().expect("cpus is marked");
        assert!(error.contains("resources.cpus"), "{error}");

        form.fields[4].value = "1".into();
        form.fields[5].value = "8".into();
        assert!(form.validate().is_none());
        let error = form.fields[5].error.clone().expect("memory is marked");
        assert!(error.contains("resources.memory_mb"), "{error}");

        form.fields[5].value = "64".into();
        form.fields[2].value = "300".into();
        assert!(form.validate().is_none());
        assert_eq!(
            form.fields[2].error.as_deref(),
            Some("not a whole number up to 255")
        );
    }

    #[test]
    fn peers_sort_cycles_and_help_closes_on_any_key() {
        let mut app = App::new("x");
        app.data.peers = vec![peer("b", 0.7, 70, 5), peer("a", 0.9, 10, 9)];
        app.on_key(key(KeyCode::Char('4')));
        assert_eq!(app.sorted_peers()[0].peer_id, "a");
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!(app.peer_sort, PeerSort::Credits);
        assert_eq!(app.sorted_peers()[0].peer_id, "b");
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
