//! Schedules: standard five-field cron expressions evaluated in a time zone.
//!
//! # Syntax
//! `minute hour day-of-month month day-of-week`, each field a comma-separated list of
//! `*`, `N`, `N-M`, optionally followed by `/STEP` (`N/STEP` means `N-max/STEP`). Months
//! and weekdays also take English three-letter names (`jan`, `mon`); weekday 0 and 7 are
//! both Sunday. The macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight` and `@hourly` are accepted; `@reboot` is not (it has no fire time).
//! As in Vixie cron, when both day fields are restricted (neither starts with `*`) a day
//! matches if *either* matches; otherwise both must.
//!
//! # Time zones and daylight saving
//! Fire times are civil (wall-clock) times in the schedule's zone (UTC by default), and
//! each civil time fires at most once:
//! - a civil time that does not exist (the hour skipped when clocks go forward) does not
//!   fire;
//! - a civil time that occurs twice (the hour repeated when clocks go back) fires once,
//!   at its first occurrence.
//!
//! The zone database is the IANA database compiled into the binary (`jiff`'s bundled
//! copy), so evaluation does no I/O and gives the same answer on every node, air-gapped.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::names::{JobType, QueueName, ScheduleId};
use crate::time::Timestamp;

/// A stored schedule: a cron calendar and the job each fire time produces.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// The cron expression.
    pub cron: String,
    /// IANA zone name; `None` is UTC.
    pub timezone: Option<String>,
    /// The queue each run is enqueued on.
    pub queue: QueueName,
    /// The job type of each run.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The payload of each run.
    pub payload: serde_json::Value,
    /// The priority of each run.
    pub priority: i32,
    /// Attempts before dead letter, per run.
    pub max_attempts: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// The next fire time the scheduler will produce; `None` if it never fires again.
    pub next_fire_at: Option<Timestamp>,
    /// The latest fire time produced by the scheduler (not by backfill).
    pub last_fire_at: Option<Timestamp>,
    /// When an operator paused it (no runs until resumed; backfill still works).
    pub paused_at: Option<Timestamp>,
}

impl Schedule {
    /// The schedule's calendar. Stored schedules were validated, so this only fails on a
    /// row written by something else.
    pub fn calendar(&self) -> Result<Calendar, ScheduleError> {
        Ok(Calendar::new(
            Cron::parse(&self.cron)?,
            zone(self.timezone.as_deref())?,
        ))
    }
}

/// One run of a schedule: a fire time and the job it produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    /// The fire time.
    pub fire_time: Timestamp,
    /// The job produced for it.
    pub job_id: crate::names::JobId,
    /// Whether this call created it (false: it existed already).
    pub created: bool,
}

/// How far ahead [`Calendar::next_after`] looks before deciding an expression never fires
/// (covers every leap-day and weekday combination).
const SEARCH_DAYS: i64 = 366 * 29;

/// Why a cron expression or a time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl ScheduleError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// One field's definition: name, smallest and largest value, value names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Field {
    fn value(&self, s: &str) -> Result<u32, ScheduleError> {
        let lower = s.to_ascii_lowercase();
        let v = if let Some(i) = self.names.iter().position(|n| *n == lower) {
            i as u32 + self.min
        } else {
            s.parse::<u32>()
                .map_err(|_| ScheduleError::new(format!("{}: `{s}` is not a number", self.name)))?
        };
        if v < self.min || v > self.max {
            return Err(ScheduleError::new(format!(
                "{}: {v} is out of range {}–{}",
                self.name, self.min, self.max
            )));
        }
        Ok(v)
    }

    /// The set of values a field's text selects, as a bit mask, and whether it starts with `*`.
    fn parse(&self, text: &str) -> Result<(u64, bool), ScheduleError> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step = s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                        ScheduleError::new(format!(
                            "{}: step `{s}` must be a positive number",
                            self.name
                        ))
                    })?;
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(ScheduleError::new(format!(
                        "{}: range {a}-{b} is reversed",
                        self.name
                    )));
                }
                (a, b)
            } else if range.is_empty() {
                return Err(ScheduleError::new(format!(
                    "{}: empty list item",
                    self.name
                )));
            } else {
                let a = self.value(range)?;
                (a, if step.is_some() { self.max } else { a })
            };
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step.unwrap_or(1);
            }
        }
        Ok((bits, text.starts_with('*')))
    }
}

/// A parsed five-field cron expression.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    day_star: bool,
    weekday_star: bool,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    /// Parse an expression; the error names the field and the problem.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => {
                return Err(ScheduleError::new(format!(
                    "unknown macro `{trimmed}` (@reboot has no fire time)"
                )));
            }
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, d, mo, w] = fields.as_slice() else {
            return Err(ScheduleError::new(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        };
        let (minutes, _) = MINUTE.parse(mi)?;
        let (hours, _) = HOUR.parse(h)?;
        let (days, day_star) = DAY.parse(d)?;
        let (months, _) = MONTH.parse(mo)?;
        let (weekdays, weekday_star) = WEEKDAY.parse(w)?;
        // Weekday 7 is Sunday.
        let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
        Ok(Self {
            text: trimmed.to_owned(),
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            day_star,
            weekday_star,
        })
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn matches_date(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star || self.weekday_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// Look a zone up by its IANA name (`Europe/Paris`); `None` is UTC.
pub fn zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| {
            ScheduleError::new(format!(
                "unknown time zone `{n}` (expected an IANA name such as Europe/Paris)"
            ))
        }),
    }
}

/// A cron expression in a time zone: the fire times of a schedule.
#[derive(Debug, Clone)]
pub struct Calendar {
    cron: Cron,
    tz: TimeZone,
}

/// More fire times than allowed in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the range yields more than {max} runs")]
pub struct TooManyRuns {
    /// The limit.
    pub max: usize,
}

impl Calendar {
    /// The calendar of `cron` in `tz`.
    pub fn new(cron: Cron, tz: TimeZone) -> Self {
        Self { cron, tz }
    }

    /// Parse both parts, refusing an expression that never fires (`0 0 31 2 *`).
    pub fn parse(cron: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let cal = Self::new(Cron::parse(cron)?, zone(timezone)?);
        if cal.next_after(Timestamp::from_micros(0)).is_none() {
            return Err(ScheduleError::new(format!("`{cron}` never fires")));
        }
        Ok(cal)
    }

    /// The cron expression.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// The first fire time strictly after `t`, or `None` if there is none within the
    /// searchable future (or the calendar's range ends).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let after = jiff::Timestamp::from_microsecond(t.as_micros()).ok()?;
        // The civil minute after `t`'s, then the first matching civil minute from there.
        let civil = after.to_zoned(self.tz.clone()).datetime();
        let start = civil
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(jiff::SignedDuration::from_mins(1))
            .ok()?;
        let mut date = start.date();
        for day in 0..SEARCH_DAYS {
            if day > 0 {
                date = date.tomorrow().ok()?;
            }
            if !self.cron.matches_date(date) {
                continue;
            }
            let first_day = day == 0;
            for hour in 0..24u32 {
                if self.cron.hours & (1 << hour) == 0 || (first_day && hour < start.hour() as u32) {
                    continue;
                }
                for minute in 0..60u32 {
                    if self.cron.minutes & (1 << minute) == 0
                        || (first_day
                            && hour == start.hour() as u32
                            && minute < start.minute() as u32)
                    {
                        continue;
                    }
                    let civil = DateTime::from_parts(
                        date,
                        jiff::civil::time(hour as i8, minute as i8, 0, 0),
                    );
                    let ambiguous = self.tz.to_ambiguous_timestamp(civil);
                    if matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
                        continue; // skipped by a clock change
                    }
                    let Ok(at) = ambiguous.earlier() else {
                        continue;
                    };
                    let at = Timestamp::from_micros(at.as_microsecond());
                    // In a repeated hour, the first occurrence may precede `t`.
                    if at > t {
                        return Some(at);
                    }
                }
            }
        }
        None
    }

    /// The fire times in `[from, to)`, in order; more than `max` is an error.
    pub fn fires_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        max: usize,
    ) -> Result<Vec<Timestamp>, TooManyRuns> {
        let mut out = Vec::new();
        let mut cursor = from.saturating_add_micros(-1);
        while let Some(at) = self.next_after(cursor) {
            if at >= to {
                break;
            }
            if out.len() == max {
                return Err(TooManyRuns { max });
            }
            out.push(at);
            cursor = at;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn next(cron: &str, tz: Option<&str>, after: &str) -> String {
        Calendar::parse(cron, tz)
            .unwrap()
            .next_after(ts(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn every_minute_fires_on_the_next_whole_minute() {
        assert_eq!(
            next("* * * * *", None, "2026-01-01T00:00:30Z"),
            "2026-01-01T00:01:00.000000Z"
        );
        // Strictly after: a fire time equal to `t` is not returned.
        assert_eq!(
            next("* * * * *", None, "2026-01-01T00:01:00Z"),
            "2026-01-01T00:02:00.000000Z"
        );
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            next("*/15 9-17 * * mon-fri", None, "2026-11-21T10:00:00Z"), // a Saturday
            "2026-11-23T09:00:00.000000Z"
        );
        assert_eq!(
            next("5,35 */6 * * *", None, "2026-01-01T06:06:00Z"),
            "2026-01-01T06:35:00.000000Z"
        );
        assert_eq!(
            next("0 0 1 jan,JUL *", None, "2026-02-01T00:00:00Z"),
            "2026-07-01T00:00:00.000000Z"
        );
        assert_eq!(
            next("30/10 * * * *", None, "2026-01-01T00:55:00Z"),
            "2026-01-01T01:30:00.000000Z"
        );
    }

    #[test]
    fn weekday_seven_is_sunday() {
        assert_eq!(
            next("0 12 * * 7", None, "2026-11-22T13:00:00Z"), // a Sunday, after noon
            "2026-11-29T12:00:00.000000Z"
        );
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th, or any Friday.
        let cal = Calendar::parse("0 0 13 * 5", None).unwrap();
        let fires = cal
            .fires_between(ts("2026-11-01T00:00:00Z"), ts("2026-12-01T00:00:00Z"), 100)
            .unwrap();
        let days: Vec<String> = fires
            .iter()
            .map(|t| t.to_rfc3339()[8..10].to_owned())
            .collect();
        assert_eq!(days, ["06", "13", "20", "27"]);
    }

    #[test]
    fn leap_day_is_found_years_ahead() {
        assert_eq!(
            next("0 0 29 2 *", None, "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn bad_expressions_name_the_problem() {
        for (expr, needle) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute: 60 is out of range"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "reversed"),
            ("a * * * *", "not a number"),
            ("1,,2 * * * *", "empty"),
            ("@reboot", "@reboot"),
            ("0 0 31 2 *", "never fires"),
            ("0 0 30 feb *", "never fires"),
        ] {
            let err = Calendar::parse(expr, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{expr}: {err}");
        }
        assert!(Calendar::parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn macros_expand() {
        assert_eq!(
            next("@hourly", None, "2026-01-01T00:00:00Z"),
            "2026-01-01T01:00:00.000000Z"
        );
        assert_eq!(
            next("@weekly", None, "2026-11-22T00:00:00Z"),
            "2026-11-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn time_zone_shifts_the_fire_time() {
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            next("0 9 * * *", Some("Europe/Paris"), "2026-01-10T12:00:00Z"),
            "2026-01-11T08:00:00.000000Z"
        );
        assert_eq!(
            next("0 9 * * *", Some("Europe/Paris"), "2026-07-10T12:00:00Z"),
            "2026-07-11T07:00:00.000000Z"
        );
    }

    #[test]
    fn a_civil_time_skipped_by_spring_forward_does_not_fire() {
        // New York, 2026-03-08: 02:00 -> 03:00. The 02:30 run of that day does not exist.
        let cal = Calendar::parse("30 2 * * *", Some("America/New_York")).unwrap();
        let fires = cal
            .fires_between(ts("2026-03-07T00:00:00Z"), ts("2026-03-10T00:00:00Z"), 10)
            .unwrap();
        let got: Vec<String> = fires.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            got,
            ["2026-03-07T07:30:00.000000Z", "2026-03-09T06:30:00.000000Z"]
        );
    }

    #[test]
    fn a_civil_time_repeated_by_fall_back_fires_once() {
        // New York, 2026-11-01: 02:00 -> 01:00. 01:30 happens twice; it fires once, first.
        let cal = Calendar::parse("30 1 * * *", Some("America/New_York")).unwrap();
        let fires = cal
            .fires_between(ts("2026-11-01T00:00:00Z"), ts("2026-11-02T00:00:00Z"), 10)
            .unwrap();
        let got: Vec<String> = fires.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(got, ["2026-11-01T05:30:00.000000Z"]);
        // Asking after the first occurrence (during the repeated hour) moves to the next day.
        assert_eq!(
            cal.next_after(ts("2026-11-01T06:15:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-11-02T06:30:00.000000Z"
        );
    }

    #[test]
    fn fires_between_is_half_open_and_bounded() {
        let cal = Calendar::parse("0 * * * *", None).unwrap();
        let fires = cal
            .fires_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-01T03:00:00Z"), 10)
            .unwrap();
        assert_eq!(fires.len(), 3, "from is inclusive, to exclusive");
        assert_eq!(fires[0], ts("2026-01-01T00:00:00Z"));
        assert_eq!(
            cal.fires_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-02T00:00:00Z"), 23),
            Err(TooManyRuns { max: 23 })
        );
        assert!(
            cal.fires_between(ts("2026-01-01T00:00:00Z"), ts("2026-01-02T00:00:00Z"), 24)
                .is_ok()
        );
    }

    proptest::proptest! {
        /// Successive fire times strictly increase, each matches the expression, and no
        /// matching minute is skipped between them (UTC, where every civil minute exists).
        #[test]
        fn next_after_is_the_first_matching_minute(
            start in 0i64..4_000_000_000,
            m in 0u32..60, step in 1u32..30, h in 0u32..24,
        ) {
            let expr = format!("{m}/{step} {h},{} * * *", (h + 7) % 24);
            let cal = Calendar::parse(&expr, None).unwrap();
            let mut t = Timestamp::from_micros(start * 1_000_000);
            for _ in 0..5 {
                let n = cal.next_after(t).unwrap();
                proptest::prop_assert!(n > t);
                // Brute force: the first whole minute after t that matches.
                let mut probe = (t.as_micros() / 60_000_000 + 1) * 60_000_000;
                loop {
                    let c = jiff::Timestamp::from_microsecond(probe).unwrap().to_zoned(TimeZone::UTC);
                    let ok = cal.cron.minutes & (1 << c.minute()) != 0
                        && cal.cron.hours & (1 << c.hour()) != 0;
                    if ok { break; }
                    probe += 60_000_000;
                }
                proptest::prop_assert_eq!(n.as_micros(), probe);
                t = n;
            }
        }
    }
}
