//! Keys and mouse to actions. Pure: a crossterm event in, an action (or none) out. The help
//! screen is generated from [`KEYS`], so the two cannot drift apart.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

use super::app::{Action, Screen};

/// Every key, for the help screen: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    ("↑/k ↓/j", "move the selection"),
    ("PgUp PgDn", "move a page"),
    ("g G", "first / last row"),
    ("Enter", "flow detail; on Pods/Namespaces: show its flows"),
    ("Esc", "back out; clear the filter"),
    ("Tab Shift-Tab", "next / previous screen"),
    ("1 2 3 4", "Flows, Pods, Namespaces, Policies"),
    ("/", "filter: words, ns: pod: svc: node: ip: port: proto: dns: kind: verdict:, ! negates"),
    ("v", "violations (and direct-IP egress) only"),
    ("s S", "next sort column / reverse the order"),
    ("p Space", "pause the display (live capture goes on; a replay stops)"),
    ("+ -", "replay faster / slower"),
    ("]", "replay: step one second while paused"),
    ("?", "this help"),
    ("q Ctrl-C", "quit"),
];

/// The action for a terminal event; `filtering` is whether the filter line has the keyboard.
#[must_use]
pub fn action_for(event: &Event, filtering: bool) -> Option<Action> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => key_action(key, filtering),
        Event::Mouse(mouse) => match mouse.kind {
            MouseEventKind::ScrollUp => Some(Action::Up),
            MouseEventKind::ScrollDown => Some(Action::Down),
            _ => None,
        },
        _ => None,
    }
}

fn key_action(key: &KeyEvent, filtering: bool) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if filtering {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterSubmit),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) => Some(Action::FilterInput(c)),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Enter => Action::Enter,
        KeyCode::Esc => Action::Back,
        KeyCode::Tab => Action::NextTab,
        KeyCode::BackTab => Action::PreviousTab,
        KeyCode::Char('1') => Action::Show(Screen::Flows),
        KeyCode::Char('2') => Action::Show(Screen::Pods),
        KeyCode::Char('3') => Action::Show(Screen::Namespaces),
        KeyCode::Char('4') => Action::Show(Screen::Policies),
        KeyCode::Char('?') => Action::Show(Screen::Help),
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('v') => Action::ToggleViolationsOnly,
        KeyCode::Char('s') => Action::CycleSort,
        KeyCode::Char('S') => Action::ToggleSortDirection,
        KeyCode::Char('p' | ' ') => Action::TogglePause,
        KeyCode::Char('+' | '=') => Action::Faster,
        KeyCode::Char('-') => Action::Slower,
        KeyCode::Char(']') => Action::Step,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventState;

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    #[test]
    fn letters_are_commands_until_the_filter_line_takes_them() {
        assert_eq!(action_for(&key(KeyCode::Char('q')), false), Some(Action::Quit));
        assert_eq!(action_for(&key(KeyCode::Char('q')), true), Some(Action::FilterInput('q')));
        assert_eq!(action_for(&key(KeyCode::Esc), true), Some(Action::FilterCancel));
    }

    #[test]
    fn ctrl_c_quits_even_while_filtering() {
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(action_for(&ctrl_c, true), Some(Action::Quit));
    }
}
