//! The App: everything the screens show and every key's effect, as plain state and pure
//! updates. The run loop feeds it snapshots and actions; views render it. No terminal, no
//! clock, no channels in here.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::ClusterFacts;
use super::filter::Filter;
use crate::snapshot::{FlowRecord, Stats};
use crate::time::Timestamp;

/// The screens, in Tab order (Detail and Help are reached with Enter and `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Flows,
    Pods,
    Namespaces,
    Policies,
    Detail,
    Help,
}

impl Screen {
    pub const TABS: [Self; 4] = [Self::Flows, Self::Pods, Self::Namespaces, Self::Policies];

    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::Flows => "Flows",
            Self::Pods => "Pods",
            Self::Namespaces => "Namespaces",
            Self::Policies => "Policies",
            Self::Detail => "Detail",
            Self::Help => "Help",
        }
    }
}

/// What the flows table is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    /// Leaks, then violations, then direct-IP, then the rest.
    Verdict,
    Rate,
    Bytes,
    Packets,
    Age,
    Source,
    Destination,
}

impl SortColumn {
    const ORDER: [Self; 7] = [
        Self::Verdict,
        Self::Rate,
        Self::Bytes,
        Self::Packets,
        Self::Age,
        Self::Source,
        Self::Destination,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Verdict => "verdict",
            Self::Rate => "rate",
            Self::Bytes => "bytes",
            Self::Packets => "packets",
            Self::Age => "age",
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }

    fn next(self) -> Self {
        let at = Self::ORDER.iter().position(|c| *c == self).unwrap_or(0);
        Self::ORDER[(at + 1) % Self::ORDER.len()]
    }
}

/// A row's position under a numeric sort: the primary key (already in display direction), then
/// live before ended, then oldest first, then by id. Small and `Copy`, so selecting the visible
/// window among 100,000 rows touches only these, not the records.
pub type SortKey = (u64, bool, u64, u64);

/// Everything a key or the mouse can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Enter,
    Back,
    NextTab,
    PreviousTab,
    Show(Screen),
    StartFilter,
    FilterInput(char),
    FilterBackspace,
    FilterSubmit,
    FilterCancel,
    ToggleViolationsOnly,
    CycleSort,
    ToggleSortDirection,
    TogglePause,
    Faster,
    Slower,
    Step,
}

/// Replay pacing, shown in the header and changed with `+`, `-`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Times(f64),
    Max,
}

impl Speed {
    const STEPS: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0];

    #[must_use]
    pub fn faster(self) -> Self {
        match self {
            Self::Times(x) => {
                Self::STEPS.iter().find(|s| **s > x).map_or(Self::Max, |s| Self::Times(*s))
            }
            Self::Max => Self::Max,
        }
    }

    #[must_use]
    pub fn slower(self) -> Self {
        match self {
            Self::Times(x) => {
                Self::Times(Self::STEPS.iter().rev().find(|s| **s < x).copied().unwrap_or(x))
            }
            Self::Max => Self::Times(100.0),
        }
    }

    #[must_use]
    pub fn label(self) -> String {
        match self {
            Self::Times(x) => format!("×{x}"),
            Self::Max => "max".to_owned(),
        }
    }
}

/// Where the data comes from and how it is doing: the header's facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    pub host: String,
    /// Interfaces, or the file being replayed.
    pub captures: Vec<String>,
    /// "synced", "snapshot demo-cluster.yaml", "none", …
    pub cluster: String,
    pub recording: Option<String>,
    /// For replays: the packet time reached, the speed, whether the input ended.
    pub replay: Option<ReplayPosition>,
    pub drops: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayPosition {
    pub at: Timestamp,
    pub speed: Speed,
    pub finished: bool,
}

/// A NetworkPolicy row of the Policies screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub key: String,
    pub types: String,
    pub selected_pods: usize,
}

/// One tick's worth of news from the run loop.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    pub now: Timestamp,
    /// Every flow still in the table.
    pub live: Vec<FlowRecord>,
    /// Flows that ended since the last feed.
    pub ended: Vec<FlowRecord>,
    pub stats: Stats,
    pub source: Source,
    /// Policies, audit findings and pod labels, shared until the cluster view changes.
    pub cluster: Arc<ClusterFacts>,
    /// Packets per second over the last tick.
    pub packets_per_sec: f64,
}

/// One flows-table row: a record, and whether its flow has ended.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub record: &'a FlowRecord,
    pub ended: bool,
}

/// Ended flows stay listed (dimmed) this long in number, newest kept.
pub const ENDED_KEPT: usize = 5_000;
/// Rate samples kept for the detail sparkline.
pub const HISTORY: usize = 120;

#[derive(Debug, Clone)]
pub struct App {
    pub screen: Screen,
    /// The tab to return to from Detail or Help.
    pub tab: Screen,
    /// The rows' records: the live flows' (the first `live_rows`), then the ended ones still
    /// listed. The live ones are the list the engine filled, taken as they are: moving 100,000
    /// records into a list of rows cost a third of a tick.
    pub records: Vec<FlowRecord>,
    pub live_rows: usize,
    pub ended: VecDeque<FlowRecord>,
    pub now: Timestamp,
    pub stats: Stats,
    pub source: Source,
    pub cluster: Arc<ClusterFacts>,
    pub packets_per_sec: f64,
    pub filter: Filter,
    /// Text being typed after `/`, when the filter line is open.
    pub filter_input: Option<String>,
    pub filter_error: Option<String>,
    pub violations_only: bool,
    pub sort: SortColumn,
    pub descending: bool,
    /// The selected flow, by id: it stays selected as rows reorder.
    pub selected: Option<u64>,
    /// Selected row in the Pods/Namespaces/Policies tables.
    pub list_index: usize,
    /// Rows per page, as last rendered (PgUp/PgDn move this much).
    pub page: usize,
    pub paused: bool,
    pub is_replay: bool,
    pub speed: Speed,
    pub quit: bool,
    /// A message for the status line (a background error, a bad filter).
    pub status: Option<String>,
    /// tx+rx bytes/s of flows, newest last, for the detail sparkline.
    pub history: FxHashMap<u64, VecDeque<u64>>,
    /// The latest feed while paused: shown when the pause ends.
    held: Option<Box<Feed>>,
    /// One key per row for numeric sorts (empty for the text sorts, compared directly).
    pub sort_keys: Vec<SortKey>,
    /// The last feed's list of live records, emptied: handed back to be filled next tick.
    spare_live: Vec<FlowRecord>,
    /// The live flows' ids, kept with their room from tick to tick.
    live_ids: rustc_hash::FxHashSet<u64>,
}

impl App {
    #[must_use]
    pub fn new(is_replay: bool) -> Self {
        Self {
            screen: Screen::Flows,
            tab: Screen::Flows,
            records: Vec::new(),
            live_rows: 0,
            ended: VecDeque::new(),
            now: Timestamp::default(),
            stats: Stats::default(),
            source: Source::default(),
            cluster: Arc::default(),
            packets_per_sec: 0.0,
            filter: Filter::default(),
            filter_input: None,
            filter_error: None,
            violations_only: false,
            sort: SortColumn::Verdict,
            descending: true,
            selected: None,
            list_index: 0,
            page: 10,
            paused: false,
            is_replay,
            speed: Speed::Times(1.0),
            quit: false,
            status: None,
            history: FxHashMap::default(),
            held: None,
            sort_keys: Vec::new(),
            spare_live: Vec::new(),
            live_ids: rustc_hash::FxHashSet::default(),
        }
    }

    /// An empty list with the room of the last feed's live records, for the next feed's: with
    /// many flows, allocating it anew each tick cost more than filling it.
    pub fn take_spare_live(&mut self) -> Vec<FlowRecord> {
        std::mem::take(&mut self.spare_live)
    }

    /// Takes a tick's news. While paused the display stays as it is; the newest feed is kept
    /// (ended flows accumulate) and shown on resume.
    pub fn apply_feed(&mut self, mut feed: Feed) {
        if self.paused && !self.is_replay {
            if let Some(held) = self.held.take() {
                let mut ended = held.ended;
                ended.append(&mut feed.ended);
                // Only the newest are listed once shown: a long pause keeps no more than that.
                let surplus = ended.len().saturating_sub(ENDED_KEPT);
                ended.drain(..surplus);
                feed.ended = ended;
            }
            self.held = Some(Box::new(feed));
            return;
        }
        self.show(feed);
    }

    fn show(&mut self, feed: Feed) {
        for record in feed.ended {
            self.ended.push_back(record);
        }
        while self.ended.len() > ENDED_KEPT {
            self.ended.pop_front();
        }
        let live = feed.live;
        for record in &live {
            let samples = self.history.entry(record.flow_id).or_default();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rates are ≥ 0
            samples.push_back((record.rates.0 + record.rates.1) as u64);
            if samples.len() > HISTORY {
                samples.pop_front();
            }
        }
        let mut live_ids = std::mem::take(&mut self.live_ids);
        live_ids.clear();
        live_ids.extend(live.iter().map(|r| r.flow_id));
        self.history.retain(|id, _| live_ids.contains(id) || Some(*id) == self.selected);
        // The live records become the rows; last tick's, emptied, are kept for the next feed.
        let mut spare = std::mem::replace(&mut self.records, live);
        spare.clear();
        self.spare_live = spare;
        self.live_rows = self.records.len();
        let still_listed = self.ended.iter().filter(|r| !live_ids.contains(&r.flow_id));
        self.records.extend(still_listed.cloned());
        self.live_ids = live_ids;
        self.rekey();
        self.reselect();
        self.now = feed.now;
        self.stats = feed.stats;
        self.source = feed.source;
        self.cluster = feed.cluster;
        self.packets_per_sec = feed.packets_per_sec;
        // A list that shrank (pods gone) keeps its selection on its last row.
        if matches!(self.screen, Screen::Pods | Screen::Namespaces | Screen::Policies) {
            self.list_index = self.list_index.min(super::views::list_len(self).saturating_sub(1));
        }
    }

    /// Keeps the selection on its flow while that flow is listed and shown (passes the filter
    /// and the violations toggle); else the first row shown is selected. Enter must never open
    /// a flow the list does not show.
    fn reselect(&mut self) {
        let shown = self
            .selected
            .is_some_and(|id| self.records.iter().any(|r| r.flow_id == id && self.shows(r)));
        if !shown {
            // The first row shown: the least under the sort, without sorting them all.
            let first = (0..self.records.len())
                .filter(|i| self.shows(&self.records[*i]))
                .min_by(|a, b| self.compare(*a, *b));
            self.selected = first.map(|i| self.records[i].flow_id);
        }
    }

    /// Whether a record passes the filter and the violations toggle.
    fn shows(&self, record: &FlowRecord) -> bool {
        (!self.violations_only || record.violation.is_some() || record.direct_ip)
            && self.filter.matches(record)
    }

    /// Applies one action.
    pub fn update(&mut self, action: Action) {
        self.apply_action(action);
        self.reselect();
    }

    fn apply_action(&mut self, action: Action) {
        if self.filter_input.is_some() {
            self.update_filter_line(action);
            return;
        }
        match action {
            Action::Quit => self.quit = true,
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-isize::try_from(self.page).unwrap_or(10)),
            Action::PageDown => self.move_by(isize::try_from(self.page).unwrap_or(10)),
            Action::Top => self.move_by(isize::MIN / 2),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::Enter => self.enter(),
            Action::Back => {
                if matches!(self.screen, Screen::Detail | Screen::Help) {
                    self.screen = self.tab;
                } else if !self.filter.is_empty() || self.violations_only {
                    self.filter = Filter::default();
                    self.violations_only = false;
                }
            }
            Action::NextTab | Action::PreviousTab => {
                let at = Screen::TABS.iter().position(|s| *s == self.tab).unwrap_or(0);
                let n = Screen::TABS.len();
                let next = if action == Action::NextTab { (at + 1) % n } else { (at + n - 1) % n };
                self.switch_to(Screen::TABS[next]);
            }
            Action::Show(screen) => self.switch_to(screen),
            Action::StartFilter => self.filter_input = Some(self.filter.text().to_owned()),
            Action::ToggleViolationsOnly => self.violations_only = !self.violations_only,
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.rekey();
            }
            Action::ToggleSortDirection => {
                self.descending = !self.descending;
                self.rekey();
            }
            Action::TogglePause => {
                self.paused = !self.paused;
                if !self.paused
                    && let Some(feed) = self.held.take()
                {
                    self.show(*feed);
                }
            }
            Action::Faster => self.speed = self.speed.faster(),
            Action::Slower => self.speed = self.speed.slower(),
            // Stepping is the run loop's: it moves the replay clock.
            Action::Step => {}
            Action::FilterInput(_)
            | Action::FilterBackspace
            | Action::FilterSubmit
            | Action::FilterCancel => {}
        }
    }

    fn switch_to(&mut self, screen: Screen) {
        if Screen::TABS.contains(&screen) {
            self.tab = screen;
            self.list_index = 0;
        }
        self.screen = screen;
    }

    fn update_filter_line(&mut self, action: Action) {
        let Some(text) = self.filter_input.as_mut() else { return };
        match action {
            Action::FilterInput(c) if !c.is_control() => text.push(c),
            Action::FilterBackspace => {
                text.pop();
            }
            Action::FilterSubmit => {
                match Filter::parse(text) {
                    Ok(filter) => {
                        self.filter = filter;
                        self.filter_error = None;
                        self.screen = Screen::Flows;
                        self.tab = Screen::Flows;
                    }
                    Err(error) => self.filter_error = Some(error.to_string()),
                }
                if self.filter_error.is_none() {
                    self.filter_input = None;
                }
            }
            Action::FilterCancel => {
                self.filter_input = None;
                self.filter_error = None;
            }
            Action::Quit => self.quit = true,
            _ => {}
        }
    }

    fn enter(&mut self) {
        match self.screen {
            Screen::Flows if self.selected.is_some() => self.screen = Screen::Detail,
            Screen::Pods | Screen::Namespaces => {
                let filter = super::views::aggregate_filter(self, self.list_index);
                if let Some(text) = filter
                    && let Ok(filter) = Filter::parse(&text)
                {
                    self.filter = filter;
                    self.switch_to(Screen::Flows);
                }
            }
            _ => {}
        }
    }

    /// Moves the selection by `delta` rows in the current list, clamped.
    fn move_by(&mut self, delta: isize) {
        match self.screen {
            Screen::Flows | Screen::Detail => {
                let order = self.visible_flows();
                if order.is_empty() {
                    self.selected = None;
                    return;
                }
                let at = self
                    .selected
                    .and_then(|id| order.iter().position(|i| self.records[*i].flow_id == id));
                let at = at.map_or(0, |at| clamp_add(at, delta, order.len()));
                self.selected = Some(self.records[order[at]].flow_id);
            }
            Screen::Pods | Screen::Namespaces | Screen::Policies => {
                let len = super::views::list_len(self);
                self.list_index = if len == 0 { 0 } else { clamp_add(self.list_index, delta, len) };
            }
            Screen::Help => {}
        }
    }

    /// Indices into `rows` that pass the filter, in display order (fully sorted: for moves and
    /// tests; rendering selects only the visible window, see `views::flows`).
    #[must_use]
    pub fn visible_flows(&self) -> Vec<usize> {
        let mut order = self.filtered();
        order.sort_unstable_by(|a, b| self.compare(*a, *b));
        order
    }

    /// Indices of rows passing the filter and the violations toggle, unordered.
    #[must_use]
    pub fn filtered(&self) -> Vec<usize> {
        if self.filter.is_empty() && !self.violations_only {
            return (0..self.records.len()).collect();
        }
        (0..self.records.len()).filter(|i| self.shows(&self.records[*i])).collect()
    }

    /// The display order of two rows under the current sort.
    #[must_use]
    pub fn compare(&self, a: usize, b: usize) -> std::cmp::Ordering {
        let (ra, rb) = (self.row(a), self.row(b));
        let primary = super::views::sort_key_cmp(self.sort, ra, rb);
        let primary = if self.descending { primary.reverse() } else { primary };
        // Live before ended, then oldest first: a stable order for equal keys.
        primary
            .then(ra.ended.cmp(&rb.ended))
            .then(ra.record.first_seen.cmp(&rb.record.first_seen))
            .then(ra.record.flow_id.cmp(&rb.record.flow_id))
    }

    /// Remakes the sort keys after the rows or the sort changed.
    fn rekey(&mut self) {
        // Into last tick's list: with many flows a new one each tick was pages to clear.
        let mut keys = std::mem::take(&mut self.sort_keys);
        keys.clear();
        keys.extend((0..self.records.len()).map_while(|i| self.numeric_key(i)));
        self.sort_keys = keys;
    }

    /// A row's key under a numeric sort; `None` for the text sorts.
    fn numeric_key(&self, index: usize) -> Option<SortKey> {
        let record = self.records.get(index)?;
        let row = Row { record, ended: index >= self.live_rows };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // rates are ≥ 0; milli-B/s resolution is plenty
        let primary = match self.sort {
            SortColumn::Verdict => {
                (u64::from(super::views::severity(row)) << 56)
                    | ((record.bytes.tx + record.bytes.rx) & ((1 << 56) - 1))
            }
            SortColumn::Rate => ((record.rates.0 + record.rates.1) * 1000.0) as u64,
            SortColumn::Bytes => record.bytes.tx + record.bytes.rx,
            SortColumn::Packets => record.packets.tx + record.packets.rx,
            SortColumn::Age => u64::MAX - record.first_seen.0,
            SortColumn::Source | SortColumn::Destination => return None,
        };
        let primary = if self.descending { u64::MAX - primary } else { primary };
        Some((primary, row.ended, record.first_seen.0, record.flow_id))
    }

    /// The selected row, if it is still listed.
    #[must_use]
    pub fn selected_row(&self) -> Option<Row<'_>> {
        let id = self.selected?;
        self.rows().find(|row| row.record.flow_id == id)
    }

    /// Row `index` (of `records`).
    ///
    /// # Panics
    /// When `index` is out of range, as indexing does.
    #[must_use]
    pub fn row(&self, index: usize) -> Row<'_> {
        Row { record: &self.records[index], ended: index >= self.live_rows }
    }

    /// Every row, live flows first.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        let live_rows = self.live_rows;
        self.records
            .iter()
            .enumerate()
            .map(move |(i, record)| Row { record, ended: i >= live_rows })
    }
}

fn clamp_add(at: usize, delta: isize, len: usize) -> usize {
    let target = isize::try_from(at).unwrap_or(0).saturating_add(delta);
    usize::try_from(target.max(0)).unwrap_or(0).min(len.saturating_sub(1))
}

#[cfg(test)]
mod tests;
