//! Sync windows: when an AppProject lets its Applications sync (`spec.syncWindows`).
//!
//! Start with [`WindowSet::new`], which checks a project's windows once (cron schedule,
//! Go duration, time zone, globs) and turns them into [`Window`]s; then ask
//! [`WindowSet::can_sync`] before starting a sync, [`WindowSet::can_continue`] while one
//! runs, and [`WindowSet::next_change`] for when to look again. Everything here is pure: the
//! caller passes the current time, so tests use fixed instants.
//!
//! # A window
//!
//! A window has a kind (`allow` or `deny`), a `schedule` (a 5-field cron expression,
//! `minute hour day-of-month month day-of-week`, read in the window's `timeZone`, UTC when
//! unset) and a `duration` (a Go duration such as `1h` or `1h30m`). Each time the schedule
//! fires, at wall-clock time `s`, the window is **open** (active) from `s` inclusive to
//! `s + duration` exclusive; an opening that starts before the previous one closes keeps it
//! open, so a window may span midnight or stay open for days.
//!
//! The cron dialect is Argo CD's (robfig/cron's standard parser): `*`, `?` (day fields),
//! lists, ranges, steps (`*/15`, `5/20` = `5-59/20`), month and weekday names; when both
//! day-of-month and day-of-week are restricted a day matches either, as in Vixie cron.
//!
//! Time zones follow the tz database; around daylight-saving changes the wall clock decides:
//! a time skipped when clocks go forward opens the window at the end of the gap (02:30 on
//! the spring-forward day opens at 03:00), and a time repeated when clocks go back opens it
//! once, at its first occurrence.
//!
//! # Which windows apply to an Application
//!
//! `applications` globs match the Application's name, `namespaces` its destination
//! namespace, and `clusters` its destination cluster's name or server URL (an unset one is
//! never matched). By default a window applies when any of its non-empty lists matches;
//! with `andOperator: true` every non-empty list must match. A window with no lists applies
//! to nothing. Globs are Argo CD's (`*`, `?`, `[a-z]`, `{a,b}`).
//!
//! # The rules (Argo CD's)
//!
//! Only windows that apply to the Application count:
//!
//! 1. No windows: every sync is allowed.
//! 2. An open `deny` window blocks every sync, whatever `allow` windows say (deny wins, also
//!    over an open allow window). A **manual** sync still runs if every open deny window has
//!    `manualSync: true`.
//! 3. Otherwise, if there are `allow` windows, a sync runs only while one of them is open.
//!    While all are closed, a **manual** sync still runs if every allow window has
//!    `manualSync: true`.
//! 4. Otherwise every sync is allowed.
//!
//! Automated syncs (auto-sync, self-heal) are blocked whenever the windows block;
//! `manualSync` never lets them through.
//!
//! A sync that is already running may outlive its window with `syncOverrun: true`
//! ([`WindowSet::can_continue`]): it keeps running past an open deny window if every open
//! deny window has `syncOverrun`, and after its allow windows close if every allow window
//! has `syncOverrun` (or, for a manual sync, `manualSync`).
//!
//! Where Capstan differs from Argo CD on purpose: a window is open at the very instant its
//! schedule fires (Argo CD opens it just after), and the schedule is read on the zone's wall
//! clock, where Argo CD shifts it by the zone's UTC offset of the moment; the two differ
//! only for openings on the other side of a daylight-saving change from the moment asked
//! about, which Capstan opens at the wall-clock time written.
//!
//! When [`WindowSet::new`] fails the windows cannot be judged; the controller treats the
//! project as blocking every sync (as Argo CD does) and reports the error.

use std::fmt;

use capstan_model::application::Application;
use capstan_model::project::{SyncWindow, SyncWindowKind};
use capstan_model::validate::cron::check_cron;
use capstan_model::validate::duration::{DurationError, parse_go_duration};
use capstan_model::validate::glob::{check_glob, glob_match};
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};

/// How far back or ahead the schedule search looks: long enough for `0 0 29 2 *` across a
/// century year that is not a leap year (2096 → 2104).
const SEARCH_YEARS: i64 = 9;

/// Wall-clock times this far past the current one may still have happened already (they
/// fall in a repeated hour after clocks go back); no zone shifts its clock by more.
const FOLD_SLACK: SignedDuration = SignedDuration::from_hours(3);

/// How many back-to-back openings [`Window::open_until`] follows before it settles for an
/// earlier bound (a window that never closes, e.g. every minute for an hour).
const MAX_CHAINED_OPENINGS: usize = 64;

/// Why a project's sync windows cannot be used. Each names the window by its position in
/// `spec.syncWindows`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// `kind` is not set.
    #[error("spec.syncWindows[{index}].kind: required; set allow or deny")]
    MissingKind {
        /// Position of the window in `spec.syncWindows`.
        index: usize,
    },
    /// `schedule` is not a 5-field cron expression.
    #[error("spec.syncWindows[{index}].schedule: {message}")]
    Schedule {
        /// Position of the window in `spec.syncWindows`.
        index: usize,
        /// What is wrong with it and how to write it.
        message: String,
    },
    /// `duration` is not a Go duration.
    #[error(
        "spec.syncWindows[{index}].duration: {text:?} is not a duration; write a Go duration such as 1h, 30m or 1h30m"
    )]
    Duration {
        /// Position of the window in `spec.syncWindows`.
        index: usize,
        /// The duration as written.
        text: String,
        /// What the parser found.
        #[source]
        source: DurationError,
    },
    /// `duration` is zero, so the window would never open.
    #[error(
        "spec.syncWindows[{index}].duration: is zero, so the window never opens; set a positive duration such as 1h"
    )]
    ZeroDuration {
        /// Position of the window in `spec.syncWindows`.
        index: usize,
    },
    /// `timeZone` is not in the time zone database.
    #[error(
        "spec.syncWindows[{index}].timeZone: unknown time zone {name:?}; write an IANA name such as UTC or Europe/Berlin"
    )]
    TimeZone {
        /// Position of the window in `spec.syncWindows`.
        index: usize,
        /// The time zone as written.
        name: String,
        /// What the time zone database said.
        #[source]
        source: jiff::Error,
    },
    /// A glob in `applications`, `namespaces` or `clusters` is malformed.
    #[error("spec.syncWindows[{index}].{field}[{item}]: {message}")]
    Pattern {
        /// Position of the window in `spec.syncWindows`.
        index: usize,
        /// `applications`, `namespaces` or `clusters`.
        field: &'static str,
        /// Position of the glob in that list.
        item: usize,
        /// What is wrong with the glob.
        message: String,
    },
}

impl WindowError {
    /// Position in `spec.syncWindows` of the window at fault.
    pub fn index(&self) -> usize {
        match self {
            WindowError::MissingKind { index }
            | WindowError::Schedule { index, .. }
            | WindowError::Duration { index, .. }
            | WindowError::ZeroDuration { index }
            | WindowError::TimeZone { index, .. }
            | WindowError::Pattern { index, .. } => *index,
        }
    }
}

/// What a window is matched against: an Application's name and destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncTarget<'a> {
    /// The Application's name (`metadata.name`), matched by `applications`.
    pub app_name: &'a str,
    /// The destination namespace (`spec.destination.namespace`), matched by `namespaces`.
    pub namespace: &'a str,
    /// The destination server URL, matched by `clusters`; empty when unknown.
    pub cluster_server: &'a str,
    /// The destination cluster name, matched by `clusters`; empty when unknown.
    pub cluster_name: &'a str,
}

impl<'a> SyncTarget<'a> {
    /// The target as the Application's spec writes it. An Application usually sets only one
    /// of destination server and name; fill in the other from the cluster registry so that
    /// `clusters` globs written either way apply.
    pub fn from_application(app: &'a Application) -> Self {
        let dest = &app.spec.destination;
        SyncTarget {
            app_name: &app.metadata.name,
            namespace: &dest.namespace,
            cluster_server: &dest.server,
            cluster_name: &dest.name,
        }
    }
}

/// Whether a sync may run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncPermission {
    /// The windows let the sync run.
    Allowed,
    /// The windows block the sync.
    Blocked {
        /// Which windows block it, and until when.
        reason: BlockReason,
    },
}

impl SyncPermission {
    /// Whether the sync may run.
    pub fn is_allowed(&self) -> bool {
        matches!(self, SyncPermission::Allowed)
    }
}

/// Why the windows block a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockReason {
    /// Deny windows are open.
    DenyWindowOpen {
        /// Positions in `spec.syncWindows` of the open deny windows that block this sync
        /// (for a manual sync, those without `manualSync`).
        windows: Vec<usize>,
        /// When the last of them closes, if within reach.
        until: Option<Timestamp>,
    },
    /// The Application has allow windows and none of them is open.
    OutsideAllowWindows {
        /// Positions in `spec.syncWindows` of the allow windows (for a manual sync, those
        /// without `manualSync`).
        windows: Vec<usize>,
        /// When the next allow window opens, if within reach.
        next_open: Option<Timestamp>,
    },
}

impl BlockReason {
    /// A stable, low-cardinality label for metrics and conditions.
    pub fn label(&self) -> &'static str {
        match self {
            BlockReason::DenyWindowOpen { .. } => "deny_window",
            BlockReason::OutsideAllowWindows { .. } => "outside_allow_window",
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::DenyWindowOpen { windows, until } => {
                let plural = if windows.len() == 1 { "" } else { "s" };
                write!(f, "blocked by open deny window{plural} ")?;
                write_indexes(f, windows)?;
                match until {
                    Some(t) => write!(f, " until {t}"),
                    None => Ok(()),
                }
            }
            BlockReason::OutsideAllowWindows { windows, next_open } => {
                let plural = if windows.len() == 1 { "" } else { "s" };
                write!(f, "outside allow window{plural} ")?;
                write_indexes(f, windows)?;
                match next_open {
                    Some(t) => write!(f, "; next opens at {t}"),
                    None => write!(f, "; none opens in the next {SEARCH_YEARS} years"),
                }
            }
        }
    }
}

fn write_indexes(f: &mut fmt::Formatter<'_>, windows: &[usize]) -> fmt::Result {
    for (n, i) in windows.iter().enumerate() {
        if n > 0 {
            f.write_str(", ")?;
        }
        write!(f, "spec.syncWindows[{i}]")?;
    }
    Ok(())
}

/// A project's sync windows, checked and ready to evaluate.
#[derive(Debug, Clone, Default)]
pub struct WindowSet {
    windows: Vec<Window>,
}

impl WindowSet {
    /// Checks and prepares `spec.syncWindows`; fails on the first window that cannot be
    /// evaluated (missing kind, bad cron, bad or zero duration, unknown time zone,
    /// malformed glob).
    pub fn new(windows: &[SyncWindow]) -> Result<Self, WindowError> {
        let windows = windows
            .iter()
            .enumerate()
            .map(|(index, w)| Window::new(index, w))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WindowSet { windows })
    }

    /// Whether the project has no windows.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Every window, in `spec.syncWindows` order.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The windows that apply to `target`, in `spec.syncWindows` order.
    pub fn matching(&self, target: &SyncTarget<'_>) -> Vec<&Window> {
        self.windows.iter().filter(|w| w.matches(target)).collect()
    }

    /// The windows open at `now`, whichever Applications they apply to.
    pub fn active(&self, now: Timestamp) -> Vec<&Window> {
        self.windows.iter().filter(|w| w.is_active(now)).collect()
    }

    /// Whether a sync of `target` may start at `now`; `manual` for one a user asked for,
    /// false for automated ones (auto-sync, self-heal). See the module docs for the rules.
    pub fn can_sync(
        &self,
        target: &SyncTarget<'_>,
        manual: bool,
        now: Timestamp,
    ) -> SyncPermission {
        self.judge(target, now, |w| manual && w.manual_sync)
    }

    /// Whether a sync of `target` that is already running may go on at `now`: as
    /// [`can_sync`](Self::can_sync), except that windows with `syncOverrun` let it finish.
    pub fn can_continue(
        &self,
        target: &SyncTarget<'_>,
        manual: bool,
        now: Timestamp,
    ) -> SyncPermission {
        self.judge(target, now, |w| w.sync_overrun || (manual && w.manual_sync))
    }

    /// The first instant after `now` at which a window that applies to `target` opens or
    /// closes: the permission cannot change before it, so the controller can look again
    /// then (it may find nothing changed, e.g. when another window is still open). `None`
    /// when no window applies or none changes within the search horizon.
    pub fn next_change(&self, target: &SyncTarget<'_>, now: Timestamp) -> Option<Timestamp> {
        self.windows
            .iter()
            .filter(|w| w.matches(target))
            .filter_map(|w| w.open_until(now).or_else(|| w.next_open(now)))
            .min()
    }

    /// The rules, with `lets_through` saying which blocking windows let this sync through
    /// anyway (`manualSync` for manual syncs, `syncOverrun` for running ones).
    fn judge(
        &self,
        target: &SyncTarget<'_>,
        now: Timestamp,
        lets_through: impl Fn(&Window) -> bool,
    ) -> SyncPermission {
        let matching = self.matching(target);

        let open_denies: Vec<&Window> = matching
            .iter()
            .copied()
            .filter(|w| w.kind == SyncWindowKind::Deny && w.is_active(now))
            .collect();
        let blocking: Vec<&Window> = open_denies
            .iter()
            .copied()
            .filter(|w| !lets_through(w))
            .collect();
        if !blocking.is_empty() {
            let until = blocking.iter().filter_map(|w| w.open_until(now)).max();
            return SyncPermission::Blocked {
                reason: BlockReason::DenyWindowOpen {
                    windows: blocking.iter().map(|w| w.index).collect(),
                    until,
                },
            };
        }

        let allows: Vec<&Window> = matching
            .iter()
            .copied()
            .filter(|w| w.kind == SyncWindowKind::Allow)
            .collect();
        if allows.is_empty() || allows.iter().any(|w| w.is_active(now)) {
            return SyncPermission::Allowed;
        }
        let blocking: Vec<&Window> = allows
            .iter()
            .copied()
            .filter(|w| !lets_through(w))
            .collect();
        if blocking.is_empty() {
            return SyncPermission::Allowed;
        }
        SyncPermission::Blocked {
            reason: BlockReason::OutsideAllowWindows {
                windows: blocking.iter().map(|w| w.index).collect(),
                next_open: allows.iter().filter_map(|w| w.next_open(now)).min(),
            },
        }
    }
}

/// One checked sync window.
#[derive(Debug, Clone)]
pub struct Window {
    index: usize,
    kind: SyncWindowKind,
    schedule_text: String,
    schedule: Schedule,
    duration_text: String,
    duration: SignedDuration,
    time_zone_name: String,
    time_zone: TimeZone,
    applications: Vec<String>,
    namespaces: Vec<String>,
    clusters: Vec<String>,
    and_operator: bool,
    manual_sync: bool,
    sync_overrun: bool,
}

impl Window {
    fn new(index: usize, w: &SyncWindow) -> Result<Self, WindowError> {
        let kind = w.kind.ok_or(WindowError::MissingKind { index })?;
        let schedule = if w.schedule.is_empty() {
            Err("required; set a 5-field cron expression, e.g. \"0 22 * * *\"".to_owned())
        } else {
            Schedule::parse(&w.schedule)
        }
        .map_err(|message| WindowError::Schedule { index, message })?;
        let duration = parse_go_duration(&w.duration).map_err(|source| WindowError::Duration {
            index,
            text: w.duration.clone(),
            source,
        })?;
        if duration.is_zero() {
            return Err(WindowError::ZeroDuration { index });
        }
        // Go durations fit in an i64 of nanoseconds, so this never saturates.
        let duration = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
        let (time_zone_name, time_zone) = if w.time_zone.is_empty() {
            ("UTC".to_owned(), TimeZone::UTC)
        } else {
            let tz = TimeZone::get(&w.time_zone).map_err(|source| WindowError::TimeZone {
                index,
                name: w.time_zone.clone(),
                source,
            })?;
            (w.time_zone.clone(), tz)
        };
        for (field, list) in [
            ("applications", &w.applications),
            ("namespaces", &w.namespaces),
            ("clusters", &w.clusters),
        ] {
            for (item, pattern) in list.iter().enumerate() {
                check_glob(pattern).map_err(|message| WindowError::Pattern {
                    index,
                    field,
                    item,
                    message,
                })?;
            }
        }
        Ok(Window {
            index,
            kind,
            schedule_text: w.schedule.clone(),
            schedule,
            duration_text: w.duration.clone(),
            duration,
            time_zone_name,
            time_zone,
            applications: w.applications.clone(),
            namespaces: w.namespaces.clone(),
            clusters: w.clusters.clone(),
            and_operator: w.use_and_operator,
            manual_sync: w.manual_sync,
            sync_overrun: w.sync_overrun,
        })
    }

    /// Position in `spec.syncWindows`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `allow` or `deny`.
    pub fn kind(&self) -> SyncWindowKind {
        self.kind
    }

    /// The cron schedule as written.
    pub fn schedule(&self) -> &str {
        &self.schedule_text
    }

    /// How long each opening lasts.
    pub fn duration(&self) -> SignedDuration {
        self.duration
    }

    /// The time zone the schedule is read in (`UTC` when unset).
    pub fn time_zone(&self) -> &str {
        &self.time_zone_name
    }

    /// Whether manual syncs may run while this window blocks.
    pub fn manual_sync(&self) -> bool {
        self.manual_sync
    }

    /// Whether running syncs may finish after this window starts blocking.
    pub fn sync_overrun(&self) -> bool {
        self.sync_overrun
    }

    /// Whether the window applies to `target` (see the module docs).
    pub fn matches(&self, target: &SyncTarget<'_>) -> bool {
        let any = |patterns: &[String], text: &str| patterns.iter().any(|p| glob_match(p, text));
        let app = (!self.applications.is_empty()).then(|| any(&self.applications, target.app_name));
        let namespace =
            (!self.namespaces.is_empty()).then(|| any(&self.namespaces, target.namespace));
        let cluster = (!self.clusters.is_empty()).then(|| {
            [target.cluster_name, target.cluster_server]
                .into_iter()
                .filter(|c| !c.is_empty())
                .any(|c| any(&self.clusters, c))
        });
        let mut selectors = [app, namespace, cluster].into_iter().flatten().peekable();
        if self.and_operator {
            selectors.peek().is_some() && selectors.all(|m| m)
        } else {
            selectors.any(|m| m)
        }
    }

    /// Whether the window is open at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.last_open(now)
            .is_some_and(|start| now < self.close(start))
    }

    /// When the window, open at `now`, closes; `None` if it is closed. Openings that start
    /// before the previous one closes are followed (up to a bound, past which an earlier
    /// instant is returned, at which the window is still open).
    pub fn open_until(&self, now: Timestamp) -> Option<Timestamp> {
        let mut start = self.last_open(now)?;
        let mut end = self.close(start);
        if now >= end {
            return None;
        }
        for _ in 0..MAX_CHAINED_OPENINGS {
            match self.next_open(start) {
                Some(next) if next <= end => {
                    end = end.max(self.close(next));
                    start = next;
                }
                _ => return Some(end),
            }
        }
        Some(end)
    }

    /// When the schedule next fires after `now` (whether or not the window is open then);
    /// `None` if it does not within the search horizon.
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        let local = self.time_zone.to_datetime(now);
        let horizon = local.checked_add(FOLD_SLACK).unwrap_or(DateTime::MAX);
        let mut cursor = local;
        loop {
            let next = self.schedule.next_after(cursor)?;
            let at = to_instant(&self.time_zone, next)?;
            // In an hour repeated when clocks go back, wall-clock times after `local` may
            // have opened already; skip them.
            if at > now || next > horizon {
                return Some(at);
            }
            cursor = next;
        }
    }

    /// When the schedule last fired at or before `now`.
    fn last_open(&self, now: Timestamp) -> Option<Timestamp> {
        let local = self.time_zone.to_datetime(now);
        let mut best = self
            .schedule
            .at_or_before(local)
            .and_then(|dt| to_instant(&self.time_zone, dt));
        // In an hour repeated when clocks go back, wall-clock times after `local` may have
        // opened earlier (their first occurrence); take the latest of those.
        let horizon = local.checked_add(FOLD_SLACK).unwrap_or(DateTime::MAX);
        let mut cursor = local;
        while let Some(next) = self.schedule.next_after(cursor) {
            if next > horizon {
                break;
            }
            match to_instant(&self.time_zone, next) {
                Some(at) if at <= now => best = Some(at),
                _ => break,
            }
            cursor = next;
        }
        best
    }

    fn close(&self, start: Timestamp) -> Timestamp {
        start.checked_add(self.duration).unwrap_or(Timestamp::MAX)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} window spec.syncWindows[{}] ({:?} for {} in {})",
            self.kind, self.index, self.schedule_text, self.duration_text, self.time_zone_name
        )
    }
}

/// The instant a wall-clock time in `tz` stands for, as a window opening: the end of the gap
/// for a skipped time, the first occurrence for a repeated one. Never decreases as `dt`
/// grows, which the searches above rely on.
fn to_instant(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, `dt` lands before the transition that opened the
            // gap; the transition itself is the first instant after the gap.
            let probe = after.to_timestamp(dt).ok()?;
            tz.following(probe).next().map(|t| t.timestamp())
        }
    }
}

/// A parsed 5-field cron expression: one bit per allowed value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month was `*` or `?`: days then match on weekday alone (and vice versa).
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Parses an expression the model's validator accepts, with robfig/cron's meaning.
    fn parse(expr: &str) -> Result<Self, String> {
        check_cron(expr)?;
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields.as_slice() else {
            return Err(format!("{expr:?} does not have 5 fields"));
        };
        let (minutes, _) = parse_field(minute, 0, 59, &[])?;
        let (hours, _) = parse_field(hour, 0, 23, &[])?;
        let (days, any_day) = parse_field(day, 1, 31, &[])?;
        let (months, _) = parse_field(month, 1, 12, MONTHS)?;
        let (weekdays, any_weekday) = parse_field(weekday, 0, 6, WEEKDAYS)?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day,
            any_weekday,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = self.days & bit(date.day()) != 0;
        let weekday = self.weekdays & bit(date.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day || self.any_weekday {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The latest firing at or before `dt`.
    fn at_or_before(&self, dt: DateTime) -> Option<DateTime> {
        let stop = dt.date().saturating_sub(Span::new().years(SEARCH_YEARS));
        let mut date = dt.date();
        let mut bound = (dt.hour(), dt.minute());
        while date >= stop {
            if self.months & bit(date.month()) == 0 {
                date = date.first_of_month().yesterday().ok()?;
            } else {
                if self.day_matches(date)
                    && let Some((h, m)) = self.latest_time(bound)
                {
                    return at(date, h, m);
                }
                date = date.yesterday().ok()?;
            }
            bound = (23, 59);
        }
        None
    }

    /// The earliest firing strictly after `dt`.
    fn next_after(&self, dt: DateTime) -> Option<DateTime> {
        let from = at(dt.date(), dt.hour(), dt.minute())?
            .checked_add(SignedDuration::from_mins(1))
            .ok()?;
        let stop = from.date().saturating_add(Span::new().years(SEARCH_YEARS));
        let mut date = from.date();
        let mut bound = (from.hour(), from.minute());
        while date <= stop {
            if self.months & bit(date.month()) == 0 {
                date = date.last_of_month().tomorrow().ok()?;
            } else {
                if self.day_matches(date)
                    && let Some((h, m)) = self.earliest_time(bound)
                {
                    return at(date, h, m);
                }
                date = date.tomorrow().ok()?;
            }
            bound = (0, 0);
        }
        None
    }

    /// The latest allowed (hour, minute) at or before `bound` in a day.
    fn latest_time(&self, (bound_h, bound_m): (i8, i8)) -> Option<(i8, i8)> {
        for h in (0..=bound_h).rev() {
            if self.hours & bit(h) == 0 {
                continue;
            }
            let limit = if h == bound_h { bound_m } else { 59 };
            // Bits 0..=limit (limit <= 59, so the shift cannot overflow).
            let mask = self.minutes & ((bit(limit) << 1) - 1);
            if mask != 0 {
                return Some((h, to_i8(63 - mask.leading_zeros())?));
            }
        }
        None
    }

    /// The earliest allowed (hour, minute) at or after `bound` in a day.
    fn earliest_time(&self, (bound_h, bound_m): (i8, i8)) -> Option<(i8, i8)> {
        for h in bound_h..=23 {
            if self.hours & bit(h) == 0 {
                continue;
            }
            let from = if h == bound_h { bound_m } else { 0 };
            let mask = self.minutes & !(bit(from) - 1);
            if mask != 0 {
                return Some((h, to_i8(mask.trailing_zeros())?));
            }
        }
        None
    }
}

/// Parses one cron field into a bit set, and whether it was `*`/`?` without a step (which
/// matters for the two day fields). Follows robfig/cron: `N/step` means `N-max/step`.
fn parse_field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let value = |v: &str| -> Result<u32, String> {
        let n = match v.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let lower = v.to_ascii_lowercase();
                let i = names
                    .iter()
                    .position(|n| *n == lower)
                    .ok_or_else(|| format!("{v:?} is not a number"))?;
                min + u32::try_from(i).map_err(|_| format!("{v:?} is out of range"))?
            }
        };
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is out of range {min}-{max}"))
        }
    };
    let mut bits = 0u64;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step {step:?} must be a positive number"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if step.is_none_or(|s| s == 1) {
                star = true;
            }
            (min, max)
        } else if let Some((lo, hi)) = range.split_once('-') {
            (value(lo)?, value(hi)?)
        } else {
            let v = value(range)?;
            (v, if step.is_some() { max } else { v })
        };
        if lo > hi {
            return Err(format!("range {range:?} starts after it ends"));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1u64 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

fn bit(v: i8) -> u64 {
    1u64.checked_shl(u32::from(v.unsigned_abs())).unwrap_or(0)
}

fn to_i8(v: u32) -> Option<i8> {
    i8::try_from(v).ok()
}

fn at(date: Date, hour: i8, minute: i8) -> Option<DateTime> {
    Time::new(hour, minute, 0, 0)
        .ok()
        .map(|t| date.to_datetime(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("test timestamps are valid")
    }

    fn window(kind: SyncWindowKind, schedule: &str, duration: &str) -> SyncWindow {
        SyncWindow {
            kind: Some(kind),
            schedule: schedule.to_owned(),
            duration: duration.to_owned(),
            applications: vec!["*".to_owned()],
            ..SyncWindow::default()
        }
    }

    fn allow(schedule: &str, duration: &str) -> SyncWindow {
        window(SyncWindowKind::Allow, schedule, duration)
    }

    fn deny(schedule: &str, duration: &str) -> SyncWindow {
        window(SyncWindowKind::Deny, schedule, duration)
    }

    fn set(windows: &[SyncWindow]) -> WindowSet {
        WindowSet::new(windows).expect("test windows are valid")
    }

    const APP: SyncTarget<'static> = SyncTarget {
        app_name: "guestbook",
        namespace: "default",
        cluster_server: "https://kubernetes.default.svc",
        cluster_name: "in-cluster",
    };

    fn allowed(set: &WindowSet, manual: bool, now: &str) -> bool {
        set.can_sync(&APP, manual, ts(now)).is_allowed()
    }

    #[test]
    fn no_windows_allow_everything() {
        let set = set(&[]);
        assert!(allowed(&set, false, "2025-01-15T12:00:00Z"));
        assert_eq!(set.next_change(&APP, ts("2025-01-15T12:00:00Z")), None);
    }

    #[test]
    fn allow_window_open_and_closed() {
        let set = set(&[allow("0 22 * * *", "1h")]);
        assert!(
            allowed(&set, false, "2025-01-15T22:00:00Z"),
            "opens at its start"
        );
        assert!(allowed(&set, false, "2025-01-15T22:59:59Z"));
        assert!(
            !allowed(&set, false, "2025-01-15T23:00:00Z"),
            "closes at start + duration"
        );
        assert_eq!(
            set.can_sync(&APP, false, ts("2025-01-15T21:59:00Z")),
            SyncPermission::Blocked {
                reason: BlockReason::OutsideAllowWindows {
                    windows: vec![0],
                    next_open: Some(ts("2025-01-15T22:00:00Z")),
                }
            }
        );
        assert!(
            !allowed(&set, true, "2025-01-15T12:00:00Z"),
            "no manualSync"
        );
    }

    #[test]
    fn deny_window_blocks_and_deny_wins_over_allow() {
        let set = set(&[allow("0 0 * * *", "24h"), deny("0 22 * * *", "1h")]);
        assert!(allowed(&set, false, "2025-01-15T12:00:00Z"));
        let blocked = set.can_sync(&APP, false, ts("2025-01-15T22:30:00Z"));
        assert_eq!(
            blocked,
            SyncPermission::Blocked {
                reason: BlockReason::DenyWindowOpen {
                    windows: vec![1],
                    until: Some(ts("2025-01-15T23:00:00Z")),
                }
            }
        );
        let SyncPermission::Blocked { reason } = blocked else {
            unreachable!()
        };
        assert_eq!(reason.label(), "deny_window");
        assert_eq!(
            reason.to_string(),
            "blocked by open deny window spec.syncWindows[1] until 2025-01-15T23:00:00Z"
        );
        // An active deny also beats a closed allow window.
        let set2 = self::set(&[allow("0 6 * * *", "1h"), deny("0 22 * * *", "1h")]);
        assert!(matches!(
            set2.can_sync(&APP, false, ts("2025-01-15T22:30:00Z")),
            SyncPermission::Blocked {
                reason: BlockReason::DenyWindowOpen { .. }
            }
        ));
        // A deny window alone allows syncs while closed.
        let only_deny = self::set(&[deny("0 22 * * *", "1h")]);
        assert!(allowed(&only_deny, false, "2025-01-15T21:00:00Z"));
    }

    #[test]
    fn manual_sync_overrides_only_when_every_blocking_window_allows_it() {
        let mut d = deny("0 22 * * *", "1h");
        d.manual_sync = true;
        let set1 = set(&[d.clone()]);
        assert!(allowed(&set1, true, "2025-01-15T22:30:00Z"));
        assert!(
            !allowed(&set1, false, "2025-01-15T22:30:00Z"),
            "automated stays blocked"
        );

        // A second open deny window without manualSync blocks manual syncs too, and is
        // the one named.
        let set2 = set(&[d.clone(), deny("30 22 * * *", "1h")]);
        assert_eq!(
            set2.can_sync(&APP, true, ts("2025-01-15T22:45:00Z")),
            SyncPermission::Blocked {
                reason: BlockReason::DenyWindowOpen {
                    windows: vec![1],
                    until: Some(ts("2025-01-15T23:30:00Z")),
                }
            }
        );
        assert!(
            allowed(&set2, true, "2025-01-15T22:15:00Z"),
            "only the first is open"
        );

        // Closed allow windows: manual syncs need manualSync on every allow window.
        let mut a = allow("0 6 * * *", "1h");
        a.manual_sync = true;
        let set3 = set(&[a.clone()]);
        assert!(allowed(&set3, true, "2025-01-15T12:00:00Z"));
        assert!(!allowed(&set3, false, "2025-01-15T12:00:00Z"));
        let set4 = set(&[a.clone(), allow("0 7 * * *", "1h")]);
        assert_eq!(
            set4.can_sync(&APP, true, ts("2025-01-15T12:00:00Z")),
            SyncPermission::Blocked {
                reason: BlockReason::OutsideAllowWindows {
                    windows: vec![1],
                    next_open: Some(ts("2025-01-16T06:00:00Z")),
                }
            }
        );

        // manualSync on an allow window does not help against an open deny window.
        let set5 = set(&[a, deny("0 12 * * *", "1h")]);
        assert!(!allowed(&set5, true, "2025-01-15T12:30:00Z"));
    }

    #[test]
    fn time_zone_shifts_the_schedule() {
        let mut w = allow("0 9 * * *", "1h");
        w.time_zone = "Europe/Berlin".to_owned();
        let set = set(&[w]);
        // Winter: CET, UTC+1, so 09:00 Berlin is 08:00 UTC.
        assert!(allowed(&set, false, "2025-01-15T08:30:00Z"));
        assert!(!allowed(&set, false, "2025-01-15T09:30:00Z"));
        // Summer: CEST, UTC+2, so 09:00 Berlin is 07:00 UTC.
        assert!(allowed(&set, false, "2025-07-15T07:30:00Z"));
        assert!(!allowed(&set, false, "2025-07-15T08:30:00Z"));
        assert_eq!(set.windows()[0].time_zone(), "Europe/Berlin");
        assert_eq!(
            set.windows()[0].to_string(),
            "allow window spec.syncWindows[0] (\"0 9 * * *\" for 1h in Europe/Berlin)"
        );

        let mut ny = deny("0 17 * * MON-FRI", "15h");
        ny.time_zone = "America/New_York".to_owned();
        let set = self::set(&[ny]);
        // Friday 17:00 EST = 22:00 UTC; open until Saturday 08:00 EST = 13:00 UTC.
        assert!(!allowed(&set, false, "2025-01-17T22:00:00Z"));
        assert!(!allowed(&set, false, "2025-01-18T12:59:00Z"));
        assert!(allowed(&set, false, "2025-01-18T13:00:00Z"));
        // Saturday 17:00 is not a firing.
        assert!(allowed(&set, false, "2025-01-18T23:00:00Z"));
    }

    #[test]
    fn daylight_saving_changes_follow_the_wall_clock() {
        let mut w = allow("30 2 * * *", "1h");
        w.time_zone = "Europe/Berlin".to_owned();
        let set = set(&[w]);
        let win = &set.windows()[0];
        // 2025-03-30: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist, so
        // the window opens at the end of the gap.
        assert_eq!(
            win.next_open(ts("2025-03-29T12:00:00Z")),
            Some(ts("2025-03-30T01:00:00Z"))
        );
        assert!(win.is_active(ts("2025-03-30T01:30:00Z")));
        assert!(!win.is_active(ts("2025-03-30T02:00:00Z")));
        // 2025-10-26: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:30 happens twice
        // and opens the window the first time (00:30 UTC) only.
        assert_eq!(
            win.next_open(ts("2025-10-25T12:00:00Z")),
            Some(ts("2025-10-26T00:30:00Z"))
        );
        assert!(
            win.is_active(ts("2025-10-26T01:10:00Z")),
            "02:10 CET, second pass"
        );
        assert!(
            !win.is_active(ts("2025-10-26T01:30:00Z")),
            "02:30 CET is no second opening"
        );
        assert_eq!(
            win.next_open(ts("2025-10-26T01:10:00Z")),
            Some(ts("2025-10-27T01:30:00Z"))
        );
        // Normal days either side.
        assert!(win.is_active(ts("2025-03-29T01:45:00Z")), "02:45 CET");
        assert!(win.is_active(ts("2025-10-27T01:45:00Z")), "02:45 CET");
    }

    #[test]
    fn windows_select_by_application_namespace_and_cluster() {
        let mut by_app = allow("0 22 * * *", "1h");
        by_app.applications = vec!["web-*".to_owned(), "{api,worker}".to_owned()];
        let mut by_ns = allow("0 22 * * *", "1h");
        by_ns.applications.clear();
        by_ns.namespaces = vec!["prod-*".to_owned()];
        let mut by_cluster = allow("0 22 * * *", "1h");
        by_cluster.applications.clear();
        by_cluster.clusters = vec!["prod-eu".to_owned(), "https://*.example.com".to_owned()];
        let set = set(&[by_app, by_ns, by_cluster]);
        let idx = |t: &SyncTarget<'_>| -> Vec<usize> {
            set.matching(t).iter().map(|w| w.index()).collect()
        };
        let t = |app, ns, server, name| SyncTarget {
            app_name: app,
            namespace: ns,
            cluster_server: server,
            cluster_name: name,
        };
        assert_eq!(idx(&t("web-1", "dev", "", "")), vec![0]);
        assert_eq!(idx(&t("worker", "prod-a", "", "")), vec![0, 1]);
        assert_eq!(idx(&t("db", "dev", "", "prod-eu")), vec![2]);
        assert_eq!(idx(&t("db", "dev", "https://k8s.example.com", "")), vec![2]);
        assert_eq!(
            idx(&t("db", "dev", "https://other", "staging")),
            Vec::<usize>::new()
        );
        // Unset destination parts are never matched, not even by "*".
        let mut any_cluster = allow("0 22 * * *", "1h");
        any_cluster.applications.clear();
        any_cluster.clusters = vec!["*".to_owned()];
        let set2 = self::set(&[any_cluster]);
        assert!(set2.matching(&t("db", "dev", "", "")).is_empty());
        assert_eq!(set2.matching(&t("db", "dev", "", "x")).len(), 1);
        // An app no window selects is not limited by them.
        let other = t("db", "dev", "https://other", "staging");
        assert!(
            set.can_sync(&other, false, ts("2025-01-15T12:00:00Z"))
                .is_allowed()
        );
        assert!(
            !set.can_sync(
                &t("web-1", "dev", "", ""),
                false,
                ts("2025-01-15T12:00:00Z")
            )
            .is_allowed()
        );
    }

    #[test]
    fn and_operator_requires_every_listed_selector() {
        let mut w = deny("0 22 * * *", "1h");
        w.applications = vec!["web-*".to_owned()];
        w.namespaces = vec!["prod".to_owned()];
        w.use_and_operator = true;
        let set = set(&[w.clone()]);
        let t = |app, ns| SyncTarget {
            app_name: app,
            namespace: ns,
            ..SyncTarget::default()
        };
        assert_eq!(set.matching(&t("web-1", "prod")).len(), 1);
        assert!(set.matching(&t("web-1", "dev")).is_empty());
        assert!(set.matching(&t("api", "prod")).is_empty());
        w.use_and_operator = false;
        let or = self::set(&[w]);
        assert_eq!(or.matching(&t("web-1", "dev")).len(), 1);
        assert_eq!(or.matching(&t("api", "prod")).len(), 1);
        // No selectors: applies to nothing, with either operator.
        let mut empty = deny("0 22 * * *", "1h");
        empty.applications.clear();
        let set = self::set(&[empty.clone()]);
        assert!(set.matching(&APP).is_empty());
        empty.use_and_operator = true;
        let set = self::set(&[empty]);
        assert!(set.matching(&APP).is_empty());
    }

    #[test]
    fn windows_span_midnight_month_and_year_ends() {
        let set = set(&[allow("0 23 * * *", "2h")]);
        assert!(allowed(&set, false, "2025-01-15T23:30:00Z"));
        assert!(allowed(&set, false, "2025-01-16T00:30:00Z"));
        assert!(!allowed(&set, false, "2025-01-16T01:00:00Z"));
        assert!(
            allowed(&set, false, "2025-01-01T00:59:00Z"),
            "opened 2024-12-31"
        );

        let fri = set_of(allow("0 23 * * FRI", "3h"));
        assert!(
            allowed(&fri, false, "2025-01-18T01:30:00Z"),
            "Saturday, opened Friday"
        );
        assert!(!allowed(&fri, false, "2025-01-18T02:00:00Z"));
        assert!(!allowed(&fri, false, "2025-01-19T01:30:00Z"), "Sunday");
        assert_eq!(
            fri.windows()[0].next_open(ts("2025-01-18T02:00:00Z")),
            Some(ts("2025-01-24T23:00:00Z"))
        );
    }

    fn set_of(w: SyncWindow) -> WindowSet {
        set(&[w])
    }

    #[test]
    fn overlapping_openings_keep_the_window_open() {
        let set = set(&[deny("0 9,10 * * *", "90m")]);
        let win = &set.windows()[0];
        assert_eq!(
            win.open_until(ts("2025-01-15T09:30:00Z")),
            Some(ts("2025-01-15T11:30:00Z"))
        );
        assert_eq!(
            set.next_change(&APP, ts("2025-01-15T09:30:00Z")),
            Some(ts("2025-01-15T11:30:00Z"))
        );
        assert_eq!(
            set.next_change(&APP, ts("2025-01-15T12:00:00Z")),
            Some(ts("2025-01-16T09:00:00Z"))
        );
        assert_eq!(win.open_until(ts("2025-01-15T12:00:00Z")), None);
        // A window that never closes still gives a bound to look again at.
        let always = set_of(allow("* * * * *", "1h"));
        let now = ts("2025-01-15T12:00:00Z");
        let until = always.windows()[0].open_until(now).expect("open");
        assert!(until > now);
        assert!(always.windows()[0].is_active(until));
    }

    #[test]
    fn next_change_takes_the_earliest_matching_window() {
        let mut other = deny("0 1 * * *", "1h");
        other.applications = vec!["someone-else".to_owned()];
        let set = set(&[allow("0 22 * * *", "1h"), deny("0 20 * * *", "30m"), other]);
        let now = ts("2025-01-15T12:00:00Z");
        assert_eq!(set.next_change(&APP, now), Some(ts("2025-01-15T20:00:00Z")));
        assert_eq!(
            set.next_change(&APP, ts("2025-01-15T20:10:00Z")),
            Some(ts("2025-01-15T20:30:00Z"))
        );
        assert_eq!(set.active(ts("2025-01-15T01:30:00Z")).len(), 1);
        assert_eq!(set.active(ts("2025-01-15T01:30:00Z"))[0].index(), 2);
    }

    #[test]
    fn sync_overrun_lets_running_syncs_finish() {
        let mut d = deny("0 22 * * *", "1h");
        d.sync_overrun = true;
        let mut a = allow("0 9 * * *", "8h");
        a.sync_overrun = true;
        let set1 = set(&[a.clone(), d.clone()]);
        let night = ts("2025-01-15T22:30:00Z");
        assert!(
            !set1.can_sync(&APP, false, night).is_allowed(),
            "no new syncs"
        );
        assert!(set1.can_continue(&APP, false, night).is_allowed());
        // Every open deny window must allow overrun.
        let set2 = set(&[a.clone(), d.clone(), deny("0 22 * * *", "1h")]);
        assert_eq!(
            set2.can_continue(&APP, false, night),
            SyncPermission::Blocked {
                reason: BlockReason::DenyWindowOpen {
                    windows: vec![2],
                    until: Some(ts("2025-01-15T23:00:00Z")),
                }
            }
        );
        // After allow windows close, every allow window must allow overrun.
        let evening = ts("2025-01-15T18:00:00Z");
        assert!(set1.can_continue(&APP, false, evening).is_allowed());
        let set3 = set(&[a, allow("0 10 * * *", "1h")]);
        assert!(!set3.can_continue(&APP, false, evening).is_allowed());
        // Without overrun, running syncs get the same answer as new ones.
        let set4 = set(&[deny("0 22 * * *", "1h")]);
        assert!(!set4.can_continue(&APP, false, night).is_allowed());
    }

    #[test]
    fn cron_dialect() {
        let win = |s: &str| set_of(allow(s, "1m")).windows()[0].clone();
        let next = |s: &str, now: &str| win(s).next_open(ts(now));
        // Both day fields restricted: either matches (the 13th, or any Friday).
        assert_eq!(
            next("0 0 13 * FRI", "2025-06-01T00:00:00Z"),
            Some(ts("2025-06-06T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 13 * FRI", "2025-06-07T00:00:00Z"),
            Some(ts("2025-06-13T00:00:00Z"))
        );
        // One of them `*` or `?`: the other decides.
        assert_eq!(
            next("0 0 ? * FRI", "2025-06-07T00:00:00Z"),
            Some(ts("2025-06-13T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 13 * ?", "2025-06-01T00:00:00Z"),
            Some(ts("2025-06-13T00:00:00Z"))
        );
        // `*/n` restricts, so it does not count as `*`.
        assert_eq!(
            next("0 0 */10 * MON", "2025-06-01T00:00:00Z"),
            Some(ts("2025-06-02T00:00:00Z"))
        );
        // Steps, `N/step`, lists, names, ranges.
        assert_eq!(
            next("5/20 * * * *", "2025-06-01T00:26:00Z"),
            Some(ts("2025-06-01T00:45:00Z"))
        );
        assert_eq!(
            next("*/15 9-17 * * *", "2025-06-01T17:50:00Z"),
            Some(ts("2025-06-02T09:00:00Z"))
        );
        assert_eq!(
            next("0 12 1 jan,JUL *", "2025-02-01T00:00:00Z"),
            Some(ts("2025-07-01T12:00:00Z"))
        );
        // Leap days, searched across years both ways.
        assert_eq!(
            next("0 0 29 2 *", "2025-03-01T00:00:00Z"),
            Some(ts("2028-02-29T00:00:00Z"))
        );
        assert!(win("0 0 29 2 *").is_active(ts("2024-02-29T00:00:30Z")));
        let leap = set_of(allow("0 0 29 2 *", "10000h"));
        assert!(
            leap.windows()[0].is_active(ts("2025-03-01T00:00:00Z")),
            "opened 2024-02-29"
        );
        // A schedule that never fires: never open, never opens.
        let never = set_of(allow("0 0 30 2 *", "1h"));
        assert!(!never.windows()[0].is_active(ts("2025-02-28T00:30:00Z")));
        assert_eq!(
            never.windows()[0].next_open(ts("2025-01-01T00:00:00Z")),
            None
        );
        let SyncPermission::Blocked { reason } =
            never.can_sync(&APP, false, ts("2025-01-01T00:00:00Z"))
        else {
            panic!("a never-open allow window blocks");
        };
        assert_eq!(
            reason.to_string(),
            "outside allow window spec.syncWindows[0]; none opens in the next 9 years"
        );
    }

    /// The searches agree with checking every minute.
    #[test]
    fn searches_match_a_minute_by_minute_scan() {
        let exprs = [
            "* * * * *",
            "*/7 * * * *",
            "0 */5 * * *",
            "15,45 9-17 * * MON-FRI",
            "0 0 * * *",
            "59 23 * * SUN",
            "30 2 1,15 * *",
            "0 12 13 * FRI",
            "5/20 3-4 * * *",
        ];
        let mut seed: u64 = 0x5eed;
        let mut random = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let base = ts("2025-01-01T00:00:00Z").as_second();
        for expr in exprs {
            let schedule = Schedule::parse(expr).expect("valid");
            let fires = |dt: DateTime| {
                schedule.months & bit(dt.month()) != 0
                    && schedule.day_matches(dt.date())
                    && schedule.hours & bit(dt.hour()) != 0
                    && schedule.minutes & bit(dt.minute()) != 0
            };
            for _ in 0..20 {
                let offset = i64::try_from(random() % (366 * 86_400)).expect("small");
                let now = Timestamp::from_second(base + offset).expect("in range");
                let local = TimeZone::UTC.to_datetime(now);
                let minute = at(local.date(), local.hour(), local.minute()).expect("valid");
                let step = SignedDuration::from_mins(1);
                let mut back = minute;
                while !fires(back) {
                    back = back.checked_sub(step).expect("in range");
                }
                let mut ahead = minute.checked_add(step).expect("in range");
                while !fires(ahead) {
                    ahead = ahead.checked_add(step).expect("in range");
                }
                assert_eq!(schedule.at_or_before(local), Some(back), "{expr} at {now}");
                assert_eq!(
                    schedule.next_after(local),
                    Some(ahead),
                    "{expr} after {now}"
                );
            }
        }
    }

    #[test]
    fn invalid_windows_are_rejected_with_their_place() {
        let err =
            |w: SyncWindow| WindowSet::new(&[allow("0 22 * * *", "1h"), w]).expect_err("invalid");
        let e = err(allow("0 25 * * *", "1h"));
        assert_eq!(e.index(), 1);
        assert!(
            e.to_string().starts_with("spec.syncWindows[1].schedule: ")
                && e.to_string().contains("hour 25 is out of range 0-23"),
            "{e}"
        );
        let e = err(allow("@daily", "1h"));
        assert!(e.to_string().contains("has 1 fields"), "{e}");
        let e = err(allow("", "1h"));
        assert!(e.to_string().contains("schedule: required"), "{e}");

        let e = err(allow("0 22 * * *", "1d"));
        assert!(matches!(e, WindowError::Duration { index: 1, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("spec.syncWindows[1].duration: \"1d\" is not a duration"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
        let e = err(allow("0 22 * * *", ""));
        assert!(matches!(e, WindowError::Duration { .. }), "{e}");
        let e = err(allow("0 22 * * *", "0s"));
        assert!(matches!(e, WindowError::ZeroDuration { index: 1 }), "{e}");

        let mut w = allow("0 22 * * *", "1h");
        w.time_zone = "Mars/Olympus_Mons".to_owned();
        let e = err(w);
        assert!(
            e.to_string().starts_with(
                "spec.syncWindows[1].timeZone: unknown time zone \"Mars/Olympus_Mons\""
            ),
            "{e}"
        );

        let mut w = allow("0 22 * * *", "1h");
        w.kind = None;
        assert!(matches!(err(w), WindowError::MissingKind { index: 1 }));

        let mut w = allow("0 22 * * *", "1h");
        w.clusters = vec!["ok".to_owned(), "prod-[".to_owned()];
        let e = err(w);
        assert!(
            e.to_string()
                .starts_with("spec.syncWindows[1].clusters[1]: "),
            "{e}"
        );
    }

    #[test]
    fn go_durations_are_accepted() {
        let set = set(&[allow("0 22 * * *", "1h30m")]);
        assert_eq!(set.windows()[0].duration(), SignedDuration::from_mins(90));
        assert!(allowed(&set, false, "2025-01-15T23:29:00Z"));
        assert!(!allowed(&set, false, "2025-01-15T23:30:00Z"));
    }

    #[test]
    fn target_from_application() {
        let mut app = Application::default();
        app.metadata.name = "guestbook".to_owned();
        app.spec.destination.namespace = "default".to_owned();
        app.spec.destination.name = "in-cluster".to_owned();
        let t = SyncTarget::from_application(&app);
        assert_eq!(
            t,
            SyncTarget {
                app_name: "guestbook",
                namespace: "default",
                cluster_server: "",
                cluster_name: "in-cluster",
            }
        );
    }
}
