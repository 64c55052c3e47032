//! Drawing the [`App`]: a tab bar, the current view, and a footer with the view's keys.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Tabs, Wrap};

use distributeai_api::{DiscoverySource, NodeInfo, Reachability, Route};

use crate::app::{App, Connection, View};

fn short(text: &str) -> String {
    App::short(text)
}

/// The first 12 hex digits of a hash, or `-`.
fn hash12(hash: Option<&str>) -> String {
    hash.map(|h| h.chars().take(12).collect())
        .unwrap_or_else(|| "-".into())
}

fn ago(now_ms: u64, at: u64) -> String {
    let secs = now_ms.saturating_sub(at) / 1000;
    if secs < 120 {
        format!("{secs}s")
    } else if secs < 7200 {
        format!("{}m", secs / 60)
    } else {
        format!("{}h", secs / 3600)
    }
}

fn status_style(status: &str) -> Style {
    match status {
        "completed" | "revealed" | "accepted" => Style::default().fg(Color::Green),
        "failed" | "invalid" | "silent" | "refused" | "cancelled" => {
            Style::default().fg(Color::Red)
        }
        _ => Style::default().fg(Color::Yellow),
    }
}

/// Draws everything; `now_ms` makes "ago" columns testable.
pub fn draw(frame: &mut Frame, app: &App, now_ms: u64) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    match app.view {
        View::Overview => draw_overview(frame, app, body, now_ms),
        View::Jobs if app.detail.is_some() => draw_detail(frame, app, body),
        View::Jobs => draw_jobs(frame, app, body, now_ms),
        View::Submit => draw_submit(frame, app, body),
        View::Peers => draw_peers(frame, app, body, now_ms),
    }
    draw_footer(frame, app, footer);
    if app.help {
        draw_help(frame, frame.area());
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let selected = View::ALL.iter().position(|v| *v == app.view).unwrap_or(0);
    let [tabs_area, state_area] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(30)]).areas(area);
    let tabs = Tabs::new(View::ALL.iter().map(|v| v.title()))
        .select(selected)
        .highlight_style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    frame.render_widget(tabs, tabs_area);
    let state = match &app.connection {
        Connection::Connecting => Span::styled("connecting…", Style::default().fg(Color::Yellow)),
        Connection::Connected => {
            Span::styled(format!("● {}", app.api), Style::default().fg(Color::Green))
        }
        Connection::Unreachable(_) => Span::styled(
            "● node unreachable, retrying",
            Style::default().fg(Color::Red),
        ),
    };
    frame.render_widget(
        Paragraph::new(Line::from(state).right_aligned()),
        state_area,
    );
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let keys = if app.filtering {
        "type to filter · Enter/Esc done"
    } else {
        match app.view {
            View::Overview => "1-4/Tab views · r refresh · ? help · q quit",
            View::Jobs if app.detail.is_some() => {
                "↑↓/jk scroll · c cancel · Esc back · ? help · q quit"
            }
            View::Jobs => "↑↓/jk move · Enter open · / filter · c cancel · ? help · q quit",
            View::Submit => "Tab/↑↓ field · type to edit · Enter submit · Esc back · Ctrl-C quit",
            View::Peers => "↑↓/jk move · s sort · 1-4 views · ? help · q quit",
        }
    };
    let mut spans = vec![Span::styled(keys, Style::default().fg(Color::DarkGray))];
    if let Some(status) = &app.status {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            status.clone(),
            Style::default().fg(Color::Cyan),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_overview(frame: &mut Frame, app: &App, area: Rect, _now_ms: u64) {
    // The node box spans the width so a full PeerId and multiaddr fit on a line at 80 columns.
    let [node_area, middle, bottom] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Min(3),
    ])
    .areas(area);
    let [mesh_area, work_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);

    let mut lines = Vec::new();
    if let Connection::Unreachable(error) = &app.connection {
        lines.push(Line::styled(
            format!("cannot reach the node at {}: {error}", app.api),
            Style::default().fg(Color::Red),
        ));
        lines.push(Line::raw(
            "is `distributeai node` running? retrying every 2 s",
        ));
    }
    if let Some(node) = &app.data.node {
        let uptime = node.uptime_s;
        let own = app
            .data
            .ledger
            .as_ref()
            .and_then(|l| l.peers.iter().find(|p| p.peer_id == node.peer_id));
        let standing = match own {
            Some(p) => format!("reputation {} · credits {}", p.reputation, p.credits),
            None => "not in the ledger yet".to_string(),
        };
        lines.push(Line::raw(format!("peer id   {}", node.peer_id)));
        lines.push(Line::raw(format!(
            "role      {}{}   up {}h{:02}m{:02}s",
            node.role,
            if node.worker { " + worker" } else { "" },
            uptime / 3600,
            uptime / 60 % 60,
            uptime % 60
        )));
        lines.push(Line::raw(format!("standing  {standing}")));
        lines.push(Line::raw(format!("reach     {}", reachability_text(node))));
        for addr in node.listen_addrs.iter().take(1) {
            lines.push(Line::raw(format!("listen    {addr}")));
        }
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" This node ")),
        node_area,
    );

    let connected = app.data.peers.iter().filter(|p| p.connected).count();
    let relayed = app
        .data
        .peers
        .iter()
        .filter(|p| p.route == Some(Route::Relayed))
        .count();
    let mut by_source: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for p in &app.data.peers {
        *by_source
            .entry(p.source.map_or("-", DiscoverySource::as_str))
            .or_default() += 1;
    }
    let mut mesh = vec![Line::raw(format!(
        "{} peers known, {connected} connected{}",
        app.data.peers.len(),
        if relayed > 0 {
            format!(" ({relayed} relayed)")
        } else {
            String::new()
        }
    ))];
    for (source, count) in by_source {
        mesh.push(Line::raw(format!("  {count} via {source}")));
    }
    frame.render_widget(
        Paragraph::new(mesh)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" Mesh ")),
        mesh_area,
    );

    let mut statuses: Vec<(String, usize)> = app
        .data
        .stats
        .as_ref()
        .map(|st| st.jobs.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    statuses.sort();
    let mut work = Vec::new();
    if statuses.is_empty() {
        work.push(Line::raw("no jobs submitted yet"));
    }
    for (status, count) in statuses {
        work.push(Line::from(vec![
            Span::raw(format!("  {count} ")),
            Span::styled(status.clone(), status_style(&status)),
        ]));
    }
    if let Some(ledger) = &app.data.ledger {
        work.push(Line::raw(format!("ledger: {} entries", ledger.entries)));
    }
    frame.render_widget(
        Paragraph::new(work).wrap(Wrap { trim: true }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Jobs by status "),
        ),
        work_area,
    );

    let events: Vec<Line> = app.events.iter().map(|e| Line::raw(e.clone())).collect();
    frame.render_widget(
        Paragraph::new(events).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Recent events "),
        ),
        bottom,
    );
}

fn draw_jobs(frame: &mut Frame, app: &App, area: Rect, now_ms: u64) {
    let jobs = app.visible_jobs();
    let rows = jobs.iter().enumerate().map(|(i, j)| {
        let status = j.status.as_str();
        let style = if i == app.job_selected {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(short(&j.id)),
            Cell::from(status).style(status_style(status)),
            Cell::from(j.spec.image.clone()),
            Cell::from(format!("{}/{}", j.spec.redundancy, j.spec.consensus)),
            Cell::from(ago(now_ms, j.submitted_at)),
        ])
        .style(style)
    });
    let title = if app.filter.is_empty() && !app.filtering {
        format!(" Jobs ({}) ", jobs.len())
    } else {
        format!(
            " Jobs ({}) filter: {}{} ",
            jobs.len(),
            app.filter,
            if app.filtering { "▏" } else { "" }
        )
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(13),
            Constraint::Length(10),
            Constraint::Min(16),
            Constraint::Length(5),
            Constraint::Length(5),
        ],
    )
    .header(
        Row::new(vec!["ID", "STATUS", "IMAGE", "N/K", "AGE"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(table, area);
    if jobs.is_empty() {
        let inner = Rect::new(area.x + 2, area.y + 2, area.width.saturating_sub(4), 1);
        frame.render_widget(Paragraph::new("no jobs: press 3 to submit one"), inner);
    }
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
    let Some(detail) = &app.detail else { return };
    let Some(job) = &detail.job else {
        frame.render_widget(
            Paragraph::new(format!("job {}: loading…", short(&detail.id)))
                .block(Block::default().borders(Borders::ALL)),
            area,
        );
        return;
    };
    let executions = &job.executions;
    let [head, table_area, lower] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(executions.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(area);
    let status = job.status.as_str();
    let mut head_lines = vec![Line::from(vec![
        Span::raw(format!("job {}  ", short(&detail.id))),
        Span::styled(status, status_style(status).add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  n={} k={}  bids {}",
            job.spec.image,
            job.spec.redundancy,
            job.spec.consensus,
            job.bids.len()
        )),
    ])];
    if let Some(verdict) = &job.verdict {
        head_lines.push(Line::raw(format!(
            "verdict {} {} · agree {} · disagree {} · failed {} · silent {}",
            verdict.outcome,
            verdict
                .result_hash
                .as_deref()
                .map(|h| hash12(Some(h)))
                .unwrap_or_default(),
            verdict.agreeing.len(),
            verdict.disagreeing.len(),
            verdict.failed.len(),
            verdict.silent.len(),
        )));
    }
    if let Some(reason) = &job.failure_reason {
        head_lines.push(Line::styled(
            format!("failed: {reason}"),
            Style::default().fg(Color::Red),
        ));
    }
    frame.render_widget(
        Paragraph::new(head_lines)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL)),
        head,
    );

    let rows = executions.iter().map(|e| {
        let status = e.status.as_str();
        Row::new(vec![
            Cell::from(short(&e.peer_id)),
            Cell::from(status).style(status_style(status)),
            Cell::from(hash12(e.result_hash.as_deref())),
            Cell::from(
                e.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::from(
                e.duration_ms
                    .map(|d| format!("{d}ms"))
                    .unwrap_or_else(|| "-".into()),
            ),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(13),
                Constraint::Length(9),
                Constraint::Length(13),
                Constraint::Length(5),
                Constraint::Min(7),
            ],
        )
        .header(
            Row::new(vec!["WORKER", "STATUS", "HASH", "EXIT", "TIME"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Executions and votes "),
        ),
        table_area,
    );

    // The verified output first (what the user came for), then the timeline, following its
    // newest line unless the user scrolled back.
    let lower = match &detail.output {
        Some(output) => {
            let shown = output.lines().count().clamp(1, 6) as u16 + 2;
            let [out_area, rest] =
                Layout::vertical([Constraint::Length(shown), Constraint::Min(3)]).areas(lower);
            let lines: Vec<Line> = output.lines().map(|l| Line::raw(l.to_string())).collect();
            frame.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" Verified output "),
                ),
                out_area,
            );
            rest
        }
        None => lower,
    };
    let lines: Vec<Line> = detail
        .logs
        .iter()
        .map(|l| Line::raw(l.message.clone()))
        .collect();
    let visible = lower.height.saturating_sub(2);
    let bottom = (lines.len() as u16).saturating_sub(visible);
    let scroll = bottom.saturating_sub(detail.scroll);
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .block(Block::default().borders(Borders::ALL).title(" Timeline ")),
        lower,
    );
}

fn draw_submit(frame: &mut Frame, app: &App, area: Rect) {
    let lines: Vec<Line> = app
        .form
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let focused = i == app.form.focus;
            let value_style = if focused {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            let mut spans = vec![
                Span::raw(format!("{:>13}  ", f.label)),
                Span::styled(
                    format!("{}{}", f.value, if focused { "▏" } else { "" }),
                    value_style,
                ),
            ];
            if let Some(error) = &f.error {
                spans.push(Span::styled(
                    format!("  ✗ {error}"),
                    Style::default().fg(Color::Red),
                ));
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Submit a job (Enter to submit) "),
        ),
        area,
    );
}

/// This node's reachability in a few words: `public`, `behind NAT · 2 relays`, `unknown`.
fn reachability_text(node: &NodeInfo) -> String {
    let relays = node.relays.iter().filter(|r| r.reserved).count();
    let base = match node.reachability {
        Reachability::Public => "public",
        Reachability::Private => "behind NAT",
        Reachability::Unknown => "unknown",
    };
    match relays {
        0 => base.to_string(),
        1 => format!("{base} · reachable through 1 relay"),
        n => format!("{base} · reachable through {n} relays"),
    }
}

fn draw_peers(frame: &mut Frame, app: &App, area: Rect, now_ms: u64) {
    let peers = app.sorted_peers();
    let rows = peers.iter().enumerate().map(|(i, p)| {
        let caps = p.capabilities.as_ref();
        let style = if i == app.peer_selected {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        Row::new(vec![
            short(&p.peer_id),
            match (p.connected, p.route) {
                (true, Some(Route::Direct)) => "direct".into(),
                (true, Some(Route::Relayed)) => "relayed".into(),
                (true, None) => "yes".into(),
                (false, _) => "no".into(),
            },
            p.source.map_or("-", DiscoverySource::as_str).to_string(),
            caps.map(|c| c.cpus.to_string())
                .unwrap_or_else(|| "-".into()),
            caps.map(|c| format!("{}M", c.memory_mb))
                .unwrap_or_else(|| "-".into()),
            caps.map(|c| c.region.as_str())
                .filter(|r| !r.is_empty())
                .unwrap_or("-")
                .to_string(),
            format!("{:.2}", p.reputation),
            p.credits.to_string(),
            ago(now_ms, p.last_seen),
        ])
        .style(style)
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(13),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Min(4),
        ],
    )
    .header(
        Row::new(vec![
            "PEER", "CONN", "FOUND BY", "CPUS", "MEMORY", "REGION", "REP", "CREDITS", "SEEN",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(format!(
        " Peers ({}) sorted by {} ",
        peers.len(),
        app.peer_sort.name()
    )));
    frame.render_widget(table, area);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = 56.min(area.width);
    let height = 14.min(area.height);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    let text = vec![
        Line::raw("1 2 3 4 / Tab   overview, jobs, submit, peers"),
        Line::raw("↑ ↓ / j k       move, scroll"),
        Line::raw("Enter           open the selected job"),
        Line::raw("Esc             back"),
        Line::raw("/               filter jobs"),
        Line::raw("c               cancel a job"),
        Line::raw("s               sort peers"),
        Line::raw("r               refresh now"),
        Line::raw("?               this help"),
        Line::raw("q / Ctrl-C      quit"),
        Line::raw(""),
        Line::raw("any key closes this help"),
    ];
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" Keys ")),
        popup,
    );
}
