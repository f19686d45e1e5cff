//! Colours and emphasis. With `NO_COLOR` set (https://no-color.org) only modifiers are used:
//! violations stay visible as bold and reversed text.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// The theme for an environment: `no_color` is whether `NO_COLOR` is set and non-empty
    /// (read by the caller: rendering reads no environment).
    #[must_use]
    pub fn new(no_color: bool) -> Self {
        Self { color: !no_color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color { Style::new().fg(color) } else { Style::new() }
    }

    #[must_use]
    pub fn leak(self) -> Style {
        if self.color {
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        }
    }

    #[must_use]
    pub fn egress_violation(self) -> Style {
        self.fg(Color::LightRed).add_modifier(Modifier::BOLD)
    }

    #[must_use]
    pub fn ingress_violation(self) -> Style {
        self.fg(Color::LightMagenta).add_modifier(if self.color {
            Modifier::empty()
        } else {
            Modifier::UNDERLINED
        })
    }

    #[must_use]
    pub fn direct_ip(self) -> Style {
        self.fg(Color::Yellow)
    }

    #[must_use]
    pub fn allowed(self) -> Style {
        self.fg(Color::Green)
    }

    #[must_use]
    pub fn ended(self) -> Style {
        self.fg(Color::DarkGray).add_modifier(if self.color {
            Modifier::empty()
        } else {
            Modifier::DIM
        })
    }

    #[must_use]
    pub fn header(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    #[must_use]
    pub fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    #[must_use]
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    #[must_use]
    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    #[must_use]
    pub fn warning(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
}
