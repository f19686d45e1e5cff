//! Every screen of the TUI, rendered from the demo data on ratatui's TestBackend, at 80×24 and
//! 160×48, compared with the stored snapshots.

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use netwatch::tui::app::{Action, App, Screen};
use netwatch::tui::fixtures::demo_app;
use netwatch::tui::theme::Theme;
use netwatch::tui::views;

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| views::render(app, Theme::new(true), frame)).unwrap();
    terminal.backend().to_string()
}

fn app_after(actions: &[Action]) -> App {
    let mut app = demo_app();
    for action in actions {
        app.update(action.clone());
    }
    app
}

macro_rules! both_sizes {
    ($name:ident, $actions:expr) => {
        #[test]
        fn $name() {
            let app = app_after(&$actions);
            insta::assert_snapshot!(concat!(stringify!($name), "_80x24"), screen(&app, 80, 24));
            insta::assert_snapshot!(concat!(stringify!($name), "_160x48"), screen(&app, 160, 48));
        }
    };
}

both_sizes!(flows_screen, []);
both_sizes!(detail_screen, [Action::Enter]);
both_sizes!(pods_screen, [Action::Show(Screen::Pods)]);
both_sizes!(namespaces_screen, [Action::Show(Screen::Namespaces)]);
both_sizes!(policies_screen, [Action::Show(Screen::Policies)]);
both_sizes!(help_screen, [Action::Show(Screen::Help)]);
both_sizes!(
    filtered_flows_screen,
    [
        Action::StartFilter,
        Action::FilterInput('n'),
        Action::FilterInput('s'),
        Action::FilterInput(':'),
        Action::FilterInput('p'),
        Action::FilterInput('a'),
        Action::FilterInput('y'),
        Action::FilterInput('m'),
        Action::FilterInput('e'),
        Action::FilterInput('n'),
        Action::FilterInput('t'),
        Action::FilterInput('s'),
        Action::FilterSubmit
    ]
);

#[test]
fn the_leak_of_web_a_to_stripe_is_on_the_first_screen_and_marked() {
    let text = screen(&demo_app(), 160, 48);
    let line = text
        .lines()
        .find(|l| l.contains("shop/web-a") && l.contains("api.stripe.example"))
        .unwrap();
    assert!(line.contains("LEAK"), "{line}");
}

#[test]
fn a_too_small_terminal_says_so() {
    let text = screen(&demo_app(), 40, 10);
    assert!(text.contains("terminal too small"), "{text}");
}

#[test]
fn control_characters_from_the_wire_never_reach_the_terminal() {
    let mut app = demo_app();
    app.records[0].dst.sni = Some("evil\u{1b}[2J.example".into());
    app.records[0].dst.dns = Some("evil\u{1b}]0;pwned\u{7}.example".into());
    app.selected = Some(app.records[0].flow_id);
    app.update(Action::Enter);
    let text = screen(&app, 160, 48);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text}");
    assert!(text.contains("evil?[2J.example") || text.contains("evil?]0;pwned?.example"), "{text}");
}

/// Ended flows stay listed, dimmed; live ones are not, and the selection shows on either.
#[test]
fn ended_flows_are_drawn_dimmed() {
    use netwatch::tui::app::Feed;
    let demo = demo_app();
    let mut live = demo.records[0].clone();
    live.flow_id = 1;
    let mut ended = demo.records[1].clone();
    ended.flow_id = 2;
    let mut app = App::new(false);
    app.apply_feed(Feed {
        now: demo.now,
        live: vec![live],
        ended: vec![ended.clone()],
        ..Feed::default()
    });
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    terminal.draw(|frame| views::render(&app, Theme::new(false), frame)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let line_of = |flow: usize| {
        let record = &app.records[flow];
        let label = record.src.label();
        let text = terminal.backend().to_string();
        text.lines()
            .position(|l| l.contains("ended") == (flow == 1) && l.contains(label.as_str()))
            .unwrap()
    };
    let (live_line, ended_line) = (line_of(0), line_of(1));
    // Column 20 is inside the SOURCE column on both lines.
    let fg = |line: usize| buffer[(20, u16::try_from(line).unwrap())].fg;
    assert_eq!(fg(ended_line), ratatui::style::Color::DarkGray);
    assert_ne!(fg(live_line), ratatui::style::Color::DarkGray);
}

/// PgDn moves by the rows the terminal shows: as many as the flows table draws.
#[test]
fn a_page_is_what_the_flows_table_shows() {
    use netwatch::tui::app::Feed;
    let demo = demo_app();
    let live: Vec<_> = (0..300u64)
        .map(|n| {
            let mut record = demo.records[n as usize % demo.records.len()].clone();
            record.flow_id = n + 1;
            record
        })
        .collect();
    let mut app = App::new(false);
    app.apply_feed(Feed { now: demo.now, live, ..Feed::default() });
    let text = screen(&app, 160, 48);
    let drawn = text
        .lines()
        .filter(|l| ["TCP/", "UDP/", "ICMP"].iter().any(|proto| l.contains(proto)))
        .count();
    assert_eq!(views::page_rows(48), drawn, "{text}");
    app.page = views::page_rows(48);
    let order = app.visible_flows();
    app.update(Action::PageDown);
    assert_eq!(app.selected, Some(app.records[order[drawn]].flow_id));
}
