//! UTC timestamps in microseconds.
//!
//! Warden needs only instants (not calendars or time zones), so this module
//! carries its own small RFC 3339 codec instead of a date-time crate. Dates use
//! the proleptic Gregorian calendar; leap seconds are not modelled.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
const MICROS_PER_DAY: i64 = SECONDS_PER_DAY * MICROS_PER_SECOND;
/// Days from 0000-01-01 to 1970-01-01.
const DAYS_0000_TO_EPOCH: i64 = 719_528;
/// Days from 1970-01-01 to 10000-01-01.
const DAYS_EPOCH_TO_10000: i64 = 2_932_897;

/// Errors parsing a timestamp.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// The input does not follow the RFC 3339 `date-time` grammar.
    #[error("invalid RFC 3339 timestamp: expected {expected} at byte {at}")]
    Syntax {
        /// Byte offset into the input where parsing failed.
        at: usize,
        /// What the grammar required there.
        expected: &'static str,
    },
    /// A field is syntactically fine but outside its valid range (e.g. month 13, February 30).
    #[error("invalid RFC 3339 timestamp: {field} {value} is out of range")]
    FieldOutOfRange {
        /// Which field: `month`, `day`, `hour`, `minute`, `second`, `offset hour` or `offset minute`.
        field: &'static str,
        /// The value found.
        value: u32,
    },
    /// Second 60 (a leap second), which is rejected rather than clamped.
    #[error("invalid RFC 3339 timestamp: leap second 60 is not supported")]
    LeapSecond,
    /// The fraction of a second has more than nine digits.
    #[error("invalid RFC 3339 timestamp: fraction of a second has more than 9 digits")]
    FractionTooLong,
    /// The instant, once converted to UTC, falls outside years 0000–9999.
    #[error("RFC 3339 timestamp is outside years 0000-9999 once converted to UTC")]
    OutOfRange,
}

/// A UTC instant with microsecond precision, stored as microseconds since the Unix epoch.
///
/// Any `i64` is a valid `Timestamp`, but only instants between
/// [`Timestamp::MIN_RFC3339`] and [`Timestamp::MAX_RFC3339`] have an RFC 3339
/// form; see [`Timestamp::to_rfc3339`] for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self(0);
    /// The earliest instant RFC 3339 can express: 0000-01-01T00:00:00.000000Z.
    pub const MIN_RFC3339: Self = Self(-DAYS_0000_TO_EPOCH * MICROS_PER_DAY);
    /// The latest instant RFC 3339 can express: 9999-12-31T23:59:59.999999Z.
    pub const MAX_RFC3339: Self = Self(DAYS_EPOCH_TO_10000 * MICROS_PER_DAY - 1);

    /// The instant `us` microseconds after (or, if negative, before) the Unix epoch.
    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }

    /// Microseconds since the Unix epoch (negative before 1970).
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Now, from the system clock.
    pub fn now() -> Self {
        // A clock set before 1970 is unusual but not an error; saturation only
        // matters ~292,000 years out.
        let us = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |us| -us),
        };
        Self(us)
    }

    /// Parse RFC 3339 (any offset, 'T' or 't' separator, 'Z'/'z', fraction of 0–9 digits; digits beyond microseconds are truncated) into UTC.
    ///
    /// Stricter than RFC 3339 in three documented ways: second `60` is
    /// rejected ([`TimeError::LeapSecond`]) because the epoch-based
    /// representation has no slot for it; fractions longer than nine digits
    /// are rejected; and the UTC result must lie in years 0000–9999, so
    /// everything parsed can be formatted back.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        let mut p = Parser {
            s: s.as_bytes(),
            pos: 0,
        };

        let year = p.digits(4, "4-digit year")?;
        p.expect(b'-', "'-'")?;
        let month = p.digits(2, "2-digit month")?;
        p.expect(b'-', "'-'")?;
        let day = p.digits(2, "2-digit day")?;
        if !p.eat(b'T') && !p.eat(b't') {
            return Err(p.error("'T'"));
        }
        let hour = p.digits(2, "2-digit hour")?;
        p.expect(b':', "':'")?;
        let minute = p.digits(2, "2-digit minute")?;
        p.expect(b':', "':'")?;
        let second = p.digits(2, "2-digit second")?;

        let mut micros = 0;
        if p.eat(b'.') {
            let start = p.pos;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.pos += 1;
            }
            let frac = &p.s[start..p.pos];
            if frac.is_empty() {
                return Err(p.error("fraction digit"));
            }
            if frac.len() > 9 {
                return Err(TimeError::FractionTooLong);
            }
            // Truncate rather than round: rounding could carry into the next
            // second (or day, or year) and make 9999-12-31T23:59:59.9999999Z
            // unrepresentable.
            for i in 0..6 {
                micros = micros * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
            }
        }

        let offset_seconds = if p.eat(b'Z') || p.eat(b'z') {
            0
        } else {
            let sign = if p.eat(b'+') {
                1
            } else if p.eat(b'-') {
                -1
            } else {
                return Err(p.error("'Z' or a numeric offset"));
            };
            let off_hour = p.digits(2, "2-digit offset hour")?;
            p.expect(b':', "':'")?;
            let off_minute = p.digits(2, "2-digit offset minute")?;
            check_range("offset hour", off_hour, 0, 23)?;
            check_range("offset minute", off_minute, 0, 59)?;
            sign * (i64::from(off_hour) * 3600 + i64::from(off_minute) * 60)
        };
        if p.pos != p.s.len() {
            return Err(p.error("end of input"));
        }

        check_range("month", month, 1, 12)?;
        check_range("day", day, 1, days_in_month(year, month))?;
        check_range("hour", hour, 0, 23)?;
        check_range("minute", minute, 0, 59)?;
        if second == 60 {
            return Err(TimeError::LeapSecond);
        }
        check_range("second", second, 0, 59)?;

        let days = days_from_civil(i64::from(year), month, day);
        let local_seconds = days * SECONDS_PER_DAY
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second);
        // RFC 3339: local time = UTC + offset.
        let utc = Self((local_seconds - offset_seconds) * MICROS_PER_SECOND + micros);
        if !utc.is_rfc3339_representable() {
            return Err(TimeError::OutOfRange);
        }
        Ok(utc)
    }

    /// Format as RFC 3339 UTC with exactly six fractional digits and `Z`, e.g. `2026-11-22T18:30:03.000123Z`.
    ///
    /// Instants outside [`Self::MIN_RFC3339`]..=[`Self::MAX_RFC3339`] have no
    /// RFC 3339 form; they are written with an ISO 8601 expanded year (`-0001-…`,
    /// `+10000-…`) so that `Display` stays total, and will not parse back.
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let micros_of_day = self.0.rem_euclid(MICROS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs = micros_of_day / MICROS_PER_SECOND;
        let micros = micros_of_day % MICROS_PER_SECOND;
        let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
        let year = match year {
            0..=9999 => format!("{year:04}"),
            ..0 => format!("-{:04}", year.unsigned_abs()),
            _ => format!("+{year}"),
        };
        format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
    }

    /// `self` moved by `us` microseconds, saturating at the bounds of `i64`.
    pub fn saturating_add_micros(self, us: i64) -> Self {
        Self(self.0.saturating_add(us))
    }

    fn is_rfc3339_representable(self) -> bool {
        (Self::MIN_RFC3339..=Self::MAX_RFC3339).contains(&self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Refuse to write what `Deserialize` would refuse to read back.
        if !self.is_rfc3339_representable() {
            return Err(serde::ser::Error::custom(format_args!(
                "timestamp {} µs is outside years 0000-9999 and has no RFC 3339 form",
                self.0
            )));
        }
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(s).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

/// A source of the current time, injectable so tests control it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant according to this clock.
    fn now(&self) -> Timestamp;
}

/// The real clock: [`Timestamp::now`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock tests move by hand.
///
/// It starts wherever it is set ([`Default`] is the Unix epoch) and changes
/// only through [`ManualClock::set`] and [`ManualClock::advance_micros`].
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self {
            micros: AtomicI64::new(at.0),
        }
    }

    /// Jump to `at` (backwards is allowed, to test clock skew).
    pub fn set(&self, at: Timestamp) {
        // SeqCst because tests reason about "set, then observe" across threads
        // and the cost is irrelevant here.
        self.micros.store(at.0, Ordering::SeqCst);
    }

    /// Move the clock by `us` microseconds (negative moves it back), saturating at the bounds of `i64`.
    pub fn advance_micros(&self, us: i64) {
        // `fetch_add` would wrap on overflow; the closure never returns `None`.
        let _ = self
            .micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(us))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.micros.load(Ordering::SeqCst))
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), TimeError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize, what: &'static str) -> Result<u32, TimeError> {
        let mut value = 0;
        for _ in 0..n {
            match self.peek() {
                Some(d @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(d - b'0');
                    self.pos += 1;
                }
                _ => return Err(self.error(what)),
            }
        }
        Ok(value)
    }

    fn error(&self, expected: &'static str) -> TimeError {
        TimeError::Syntax {
            at: self.pos,
            expected,
        }
    }
}

fn check_range(field: &'static str, value: u32, min: u32, max: u32) -> Result<(), TimeError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(TimeError::FieldOutOfRange { field, value })
    }
}

#[allow(
    clippy::manual_is_multiple_of,
    reason = "`is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.85"
)]
fn is_leap_year(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1–12) of `year`.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d`.
///
/// Howard Hinnant's `days_from_civil`
/// (<https://howardhinnant.github.io/date_algorithms.html>): shifting the year
/// to start in March puts the leap day last, so day-of-year is a closed form.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - DAYS_0000_TO_EPOCH + 60
}

/// The proleptic Gregorian `(year, month, day)` that is `z` days after 1970-01-01.
///
/// Inverse of [`days_from_civil`], also after Hinnant.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + DAYS_0000_TO_EPOCH - 60; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Timestamp, TimeError> {
        Timestamp::parse_rfc3339(s)
    }

    fn ts(s: &str) -> Timestamp {
        parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn known_values() {
        let cases: &[(&str, i64)] = &[
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.000001Z", 1),
            ("1969-12-31T23:59:59.999999Z", -1),
            ("2000-02-29T00:00:00Z", 951_782_400_000_000),
            ("2000-03-01T00:00:00Z", 951_868_800_000_000),
            ("1900-01-01T00:00:00Z", -2_208_988_800_000_000),
            ("1969-07-20T20:17:40Z", -14_182_940_000_000),
            ("2038-01-19T03:14:07Z", 2_147_483_647_000_000),
            ("2026-11-22T18:30:03.000123Z", 1_795_372_203_000_123),
            ("0000-01-01T00:00:00Z", Timestamp::MIN_RFC3339.0),
            ("9999-12-31T23:59:59.999999Z", Timestamp::MAX_RFC3339.0),
            ("0000-01-01T00:00:00Z", -62_167_219_200_000_000),
            ("9999-12-31T23:59:59Z", 253_402_300_799_000_000),
        ];
        for &(s, us) in cases {
            assert_eq!(ts(s).as_micros(), us, "{s}");
            assert_eq!(
                parse(&Timestamp::from_micros(us).to_rfc3339()),
                Ok(Timestamp(us))
            );
        }
    }

    #[test]
    fn accepted_variants() {
        let t = ts("2026-11-22T18:30:03.000123Z");
        for s in [
            "2026-11-22t18:30:03.000123z",
            "2026-11-22T18:30:03.000123+00:00",
            "2026-11-22T18:30:03.000123-00:00",
            "2026-11-23T00:00:03.000123+05:30",
            "2026-11-22T13:00:03.000123-05:30",
            "2026-11-22T18:30:03.000123999Z",
            "2026-11-22T18:30:03.0001239Z",
            "2026-11-23T18:29:03.000123+23:59",
            "2026-11-21T18:31:03.000123-23:59",
        ] {
            assert_eq!(parse(s), Ok(t), "{s}");
        }
        assert_eq!(ts("2026-11-22T18:30:03Z").as_micros() % 1_000_000, 0);
        assert_eq!(
            ts("2026-11-22T18:30:03.5Z").as_micros() % 1_000_000,
            500_000
        );
        assert_eq!(
            ts("2026-11-22T18:30:03.123456789Z").as_micros() % 1_000_000,
            123_456
        );
    }

    #[test]
    fn offsets_cross_day_and_year_boundaries() {
        assert_eq!(ts("2000-01-01T05:29:59+05:30"), ts("1999-12-31T23:59:59Z"));
        assert_eq!(ts("1969-12-31T19:00:00-05:00"), Timestamp::UNIX_EPOCH);
        assert_eq!(ts("0000-01-01T00:00:00-01:00"), ts("0000-01-01T01:00:00Z"));
        assert_eq!(
            parse("0000-01-01T00:59:59+01:00"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            parse("9999-12-31T23:59:59-00:01"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(ts("9999-12-31T23:59:59+00:01"), ts("9999-12-31T23:58:59Z"));
    }

    #[test]
    fn rejections() {
        use TimeError::*;
        let range = |field, value| FieldOutOfRange { field, value };
        let syntax = |at, expected| Syntax { at, expected };
        let cases: &[(&str, TimeError)] = &[
            ("2026-13-01T00:00:00Z", range("month", 13)),
            ("2026-00-01T00:00:00Z", range("month", 0)),
            ("2026-02-30T00:00:00Z", range("day", 30)),
            ("2026-02-29T00:00:00Z", range("day", 29)),
            ("1900-02-29T00:00:00Z", range("day", 29)),
            ("2026-04-31T00:00:00Z", range("day", 31)),
            ("2026-01-00T00:00:00Z", range("day", 0)),
            ("2026-01-01T24:00:00Z", range("hour", 24)),
            ("2026-01-01T00:60:00Z", range("minute", 60)),
            ("2026-01-01T00:00:61Z", range("second", 61)),
            ("2016-12-31T23:59:60Z", LeapSecond),
            ("2026-01-01T00:00:00+24:00", range("offset hour", 24)),
            ("2026-01-01T00:00:00+05:60", range("offset minute", 60)),
            ("2026-01-01T00:00:00.1234567890Z", FractionTooLong),
            ("2026-01-01T00:00:00", syntax(19, "'Z' or a numeric offset")),
            (
                "2026-01-01T00:00:00.123",
                syntax(23, "'Z' or a numeric offset"),
            ),
            ("2026-01-01T00:00:00.Z", syntax(20, "fraction digit")),
            ("2026-01-01 00:00:00Z", syntax(10, "'T'")),
            ("2026-01-01T00:00:00ZZ", syntax(20, "end of input")),
            ("2026-01-01T00:00:00Z ", syntax(20, "end of input")),
            (" 2026-01-01T00:00:00Z", syntax(0, "4-digit year")),
            ("2026-1-01T00:00:00Z", syntax(6, "2-digit month")),
            ("20260101T000000Z", syntax(4, "'-'")),
            ("2026-01-01T00:00:00+0530", syntax(22, "':'")),
            (
                "2026-01-01T00:00:00+5:30",
                syntax(21, "2-digit offset hour"),
            ),
            ("+2026-01-01T00:00:00Z", syntax(0, "4-digit year")),
            ("2026-01-01", syntax(10, "'T'")),
            ("", syntax(0, "4-digit year")),
            ("garbage", syntax(0, "4-digit year")),
            ("2026-01-01T00:00:0٣Z", syntax(18, "2-digit second")),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s).as_ref(), Err(want), "{s:?}");
        }
    }

    #[test]
    fn out_of_range_instants_still_format() {
        assert_eq!(
            Timestamp::MIN_RFC3339
                .saturating_add_micros(-1)
                .to_rfc3339(),
            "-0001-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            Timestamp::MAX_RFC3339.saturating_add_micros(1).to_rfc3339(),
            "+10000-01-01T00:00:00.000000Z"
        );
        // Neither extreme panics.
        let _ = Timestamp::from_micros(i64::MIN).to_rfc3339();
        let _ = Timestamp::from_micros(i64::MAX).to_rfc3339();
    }

    #[test]
    fn saturating_add() {
        let t = Timestamp::from_micros(10);
        assert_eq!(t.saturating_add_micros(-25), Timestamp::from_micros(-15));
        assert_eq!(
            Timestamp::from_micros(i64::MAX - 1)
                .saturating_add_micros(5)
                .0,
            i64::MAX
        );
        assert_eq!(
            Timestamp::from_micros(i64::MIN + 1)
                .saturating_add_micros(-5)
                .0,
            i64::MIN
        );
    }

    #[test]
    fn now_is_after_this_code_was_written() {
        assert!(Timestamp::now() > ts("2026-01-01T00:00:00Z"));
        assert!(SystemClock.now() > ts("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn calendar_constants_match_the_algorithm() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(0, 1, 1), -DAYS_0000_TO_EPOCH);
        assert_eq!(days_from_civil(10000, 1, 1), DAYS_EPOCH_TO_10000);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(-DAYS_0000_TO_EPOCH - 1), (-1, 12, 31));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            us in Timestamp::MIN_RFC3339.0..=Timestamp::MAX_RFC3339.0
        ) {
            let t = Timestamp::from_micros(us);
            let s = t.to_rfc3339();
            prop_assert_eq!(s.len(), 27);
            prop_assert_eq!(parse(&s), Ok(t));
        }

        #[test]
        fn civil_round_trips(days in -DAYS_0000_TO_EPOCH - 1_000_000..DAYS_EPOCH_TO_10000 + 1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m));
            prop_assert!((1..=31).contains(&d));
            prop_assert_eq!(days_from_civil(y, m, d), days);
            let (y2, m2, d2) = civil_from_days(days + 1);
            // The next day is the next calendar date.
            let advanced = if d < 28 { (y, m, d + 1) } else { (y2, m2, d2) };
            prop_assert_eq!((y2, m2, d2), advanced);
        }

        #[test]
        fn any_offset_denotes_the_same_instant(
            us in Timestamp::MIN_RFC3339.0..=Timestamp::MAX_RFC3339.0,
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59_i64),
        ) {
            let local = Timestamp::from_micros(us + offset_minutes * 60 * MICROS_PER_SECOND);
            prop_assume!(local.is_rfc3339_representable());
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let abs = offset_minutes.abs();
            let s = format!(
                "{}{sign}{:02}:{:02}",
                local.to_rfc3339().trim_end_matches('Z'),
                abs / 60,
                abs % 60
            );
            prop_assert_eq!(parse(&s), Ok(Timestamp::from_micros(us)), "{}", s);
        }
    }
}
