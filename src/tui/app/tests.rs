use super::*;
use crate::tui::fixtures::demo_app;

fn selected_label(app: &App) -> String {
    let row = app.selected_row().unwrap();
    format!("{} -> {}", row.record.src.label(), row.record.dst.label())
}

#[test]
fn moving_the_selection_follows_the_display_order_and_stops_at_the_ends() {
    let mut app = demo_app();
    let order = app.visible_flows();
    assert_eq!(app.selected, Some(app.records[order[0]].flow_id), "the first row starts selected");
    app.update(Action::Down);
    app.update(Action::Down);
    assert_eq!(app.selected, Some(app.records[order[2]].flow_id));
    app.update(Action::Top);
    app.update(Action::Up);
    assert_eq!(app.selected, Some(app.records[order[0]].flow_id));
    app.update(Action::Bottom);
    assert_eq!(app.selected, Some(app.records[*order.last().unwrap()].flow_id));
}

#[test]
fn the_selection_stays_on_its_flow_when_the_order_changes() {
    let mut app = demo_app();
    app.update(Action::Down);
    let before = selected_label(&app);
    let id = app.selected;
    app.update(Action::CycleSort);
    app.update(Action::ToggleSortDirection);
    assert_eq!(app.selected, id);
    assert_eq!(selected_label(&app), before);
}

#[test]
fn the_filter_line_edits_and_applies_a_filter_and_esc_clears_it() {
    let mut app = demo_app();
    let all = app.visible_flows().len();
    app.update(Action::StartFilter);
    for c in "port:9090".chars() {
        app.update(Action::FilterInput(c));
    }
    app.update(Action::Quit);
    assert!(app.quit, "q typed into the filter line is text, but the Quit action still quits");
    app.quit = false;
    app.update(Action::FilterSubmit);
    assert_eq!(app.filter_input, None);
    assert_eq!(app.visible_flows().len(), 4);
    app.update(Action::Back);
    assert_eq!(app.visible_flows().len(), all);
}

/// A list that shrinks under its selection (pods gone) keeps the selection on its last
/// row, so the row stays drawn and Enter works.
#[test]
fn a_list_that_shrinks_keeps_its_selection_in_range() {
    let mut app = demo_app();
    app.update(Action::Show(Screen::Pods));
    app.list_index = 29;
    let live = app.records.iter().take(2).cloned().collect();
    app.apply_feed(Feed { now: app.now, live, cluster: app.cluster.clone(), ..Feed::default() });
    let len = super::super::views::list_len(&app);
    assert!(len > 0);
    assert_eq!(app.list_index, len - 1);
}

/// A filter that hides the selected flow moves the selection onto a listed one: Enter
/// opens what the list shows.
#[test]
fn a_filter_that_hides_the_selection_moves_it_to_a_shown_flow() {
    let mut app = demo_app();
    let hidden = app.visible_flows().into_iter().find(|i| {
        app.records[*i].src.namespace.as_deref() != Some("payments")
            && app.records[*i].dst.namespace.as_deref() != Some("payments")
    });
    app.selected = hidden.map(|i| app.records[i].flow_id);
    app.update(Action::StartFilter);
    for c in "ns:payments".chars() {
        app.update(Action::FilterInput(c));
    }
    app.update(Action::FilterSubmit);
    let shown = app.visible_flows();
    assert!(!shown.is_empty());
    assert_eq!(app.selected, Some(app.records[shown[0]].flow_id));
    app.update(Action::Enter);
    assert_eq!(app.screen, Screen::Detail);
    let detail = app.selected_row().unwrap();
    assert!(app.filter.matches(detail.record));
}

#[test]
fn a_bad_filter_keeps_the_line_open_with_the_error() {
    let mut app = demo_app();
    app.update(Action::StartFilter);
    for c in "color:red".chars() {
        app.update(Action::FilterInput(c));
    }
    app.update(Action::FilterSubmit);
    assert!(app.filter_input.is_some());
    assert!(app.filter_error.as_deref().unwrap().contains("'color'"));
}

#[test]
fn violations_only_keeps_violations_and_direct_ip_egress() {
    let mut app = demo_app();
    app.update(Action::ToggleViolationsOnly);
    let order = app.visible_flows();
    assert!(!order.is_empty());
    assert!(order.iter().all(|i| {
        let record = &app.records[*i];
        record.violation.is_some() || record.direct_ip
    }));
}

#[test]
fn enter_opens_the_detail_and_esc_returns_to_the_tab() {
    let mut app = demo_app();
    app.update(Action::Show(Screen::Pods));
    app.update(Action::Show(Screen::Flows));
    app.update(Action::Enter);
    assert_eq!(app.screen, Screen::Detail);
    app.update(Action::Back);
    assert_eq!(app.screen, Screen::Flows);
    app.update(Action::NextTab);
    assert_eq!(app.screen, Screen::Pods);
    app.update(Action::PreviousTab);
    app.update(Action::PreviousTab);
    assert_eq!(app.screen, Screen::Policies);
}

#[test]
fn enter_on_a_namespace_filters_the_flows_to_it() {
    let mut app = demo_app();
    app.update(Action::Show(Screen::Namespaces));
    app.update(Action::Enter);
    assert_eq!(app.screen, Screen::Flows);
    let namespace = app.filter.text().strip_prefix("ns:").unwrap().to_owned();
    assert!(app.visible_flows().iter().all(|i| {
        let record = &app.records[*i];
        record.src.namespace.as_deref() == Some(namespace.as_str())
            || record.dst.namespace.as_deref() == Some(namespace.as_str())
    }));
}

/// A long pause on a busy node: the flows that end meanwhile are kept only as many as
/// will be listed.
#[test]
fn a_paused_view_keeps_no_more_ended_flows_than_it_lists() {
    let mut app = demo_app();
    app.is_replay = false;
    app.update(Action::TogglePause);
    let template = app.records[0].clone();
    for tick in 0..10u64 {
        let ended = (0..1_000u64)
            .map(|n| FlowRecord { flow_id: 1_000_000 + tick * 1_000 + n, ..template.clone() })
            .collect();
        app.apply_feed(Feed { ended, ..Feed::default() });
    }
    let held = app.held.as_ref().map(|feed| &feed.ended).expect("a held feed");
    assert_eq!(held.len(), ENDED_KEPT);
    assert_eq!(held.first().map(|r| r.flow_id), Some(1_005_000), "the oldest went first");
}

#[test]
fn a_live_pause_freezes_the_display_and_resuming_shows_the_newest_feed() {
    let mut app = demo_app();
    app.is_replay = false;
    app.update(Action::TogglePause);
    let shown = app.records.len();
    app.apply_feed(Feed { live: Vec::new(), ..Feed::default() });
    assert_eq!(app.records.len(), shown, "paused: nothing changes");
    app.update(Action::TogglePause);
    assert!(app.records.is_empty(), "resumed: the held feed is shown");
}

#[test]
fn replay_speed_steps_up_to_max_and_back() {
    let mut app = demo_app();
    for _ in 0..10 {
        app.update(Action::Faster);
    }
    assert_eq!(app.speed, Speed::Max);
    app.update(Action::Slower);
    assert_eq!(app.speed, Speed::Times(100.0));
}
