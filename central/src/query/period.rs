//! Periods (today, 7d, 30d, month, 12mo, custom) resolved to half-open UTC ranges in an IANA
//! time zone, the period before them, and the buckets of a timeseries over them.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::error::ApiError;
use crate::sql::stats::Bucket;

/// Most buckets one timeseries may have.
pub const MAX_BUCKETS: usize = 5000;
/// Longest custom range, in days.
pub const MAX_CUSTOM_DAYS: u64 = 3660;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Today,
    Days7,
    Days30,
    Month,
    Months12,
    Custom,
}

impl PeriodKind {
    pub const NAMES: &'static str = "today, 7d, 30d, month, 12mo or custom";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "today" | "day" => Self::Today,
            "7d" => Self::Days7,
            "30d" => Self::Days30,
            "month" => Self::Month,
            "12mo" => Self::Months12,
            "custom" => Self::Custom,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Today => "today",
            Self::Days7 => "7d",
            Self::Days30 => "30d",
            Self::Month => "month",
            Self::Months12 => "12mo",
            Self::Custom => "custom",
        }
    }
}

/// Local calendar days `[first, end)` in `tz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DayRange {
    pub first: NaiveDate,
    pub end: NaiveDate,
}

impl DayRange {
    /// The days `first..=last`, unless `last` is before `first` or they span more than
    /// [`MAX_CUSTOM_DAYS`] (a custom period, a custom comparison).
    pub fn custom(first: NaiveDate, last: NaiveDate) -> Result<DayRange, CustomRangeError> {
        if last < first {
            return Err(CustomRangeError::Reversed);
        }
        let r = DayRange {
            first,
            end: last + Days::new(1),
        };
        if r.days() > MAX_CUSTOM_DAYS {
            return Err(CustomRangeError::TooLong);
        }
        Ok(r)
    }

    pub fn days(&self) -> u64 {
        (self.end - self.first).num_days().max(0) as u64
    }

    /// The UTC instants `[from, to)` of these days in `tz`.
    pub fn instants(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (start_of_day(tz, self.first), start_of_day(tz, self.end))
    }

    /// The range just before this one: the previous calendar month(s) for month periods,
    /// otherwise the same number of days.
    pub fn previous(&self, kind: PeriodKind) -> DayRange {
        match kind {
            PeriodKind::Month | PeriodKind::Months12 => {
                let months = if kind == PeriodKind::Month { 1 } else { 12 };
                DayRange {
                    first: self.first - Months::new(months),
                    end: self.first,
                }
            }
            _ => DayRange {
                first: self.first - Days::new(self.days()),
                end: self.first,
            },
        }
    }
}

/// Why [`DayRange::custom`] refused two dates; each caller names its own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomRangeError {
    Reversed,
    TooLong,
}

/// What a period is compared with (`compare=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareMode {
    /// The range just before ([`DayRange::previous`]).
    PreviousPeriod,
    /// The same dates a year earlier.
    YearOverYear,
    /// `compare_from`..=`compare_to`.
    Custom,
}

impl CompareMode {
    pub const NAMES: &'static str = "previous_period, year_over_year or custom";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "previous_period" => Self::PreviousPeriod,
            "year_over_year" => Self::YearOverYear,
            "custom" => Self::Custom,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::PreviousPeriod => "previous_period",
            Self::YearOverYear => "year_over_year",
            Self::Custom => "custom",
        }
    }
}

impl DayRange {
    /// The range `self` is compared with under `mode` (not `Custom`, which gives its own
    /// days). With `match_weekday`, as many days starting on the same weekday as `self`:
    /// for the previous period the latest such start that ends before `self` begins (back
    /// by the period's length rounded up to whole weeks), for the year before 52 weeks
    /// (364 days) back.
    pub fn compared(&self, kind: PeriodKind, mode: CompareMode, match_weekday: bool) -> DayRange {
        let back = |days: u64| DayRange {
            first: self.first - Days::new(days),
            end: self.end - Days::new(days),
        };
        match (mode, match_weekday) {
            (CompareMode::PreviousPeriod, false) => self.previous(kind),
            (CompareMode::PreviousPeriod, true) => back(self.days().div_ceil(7).max(1) * 7),
            (CompareMode::YearOverYear, false) => DayRange {
                first: self.first - Months::new(12),
                end: self.end - Months::new(12),
            },
            (CompareMode::YearOverYear, true) => back(364),
            (CompareMode::Custom, _) => unreachable!("a custom comparison has its own days"),
        }
    }
}

/// The first instant of local date `d` (midnight, or the first time after a DST gap).
pub fn start_of_day(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    first_instant_at_or_after(tz, midnight)
}

fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    // A local time inside a DST gap does not exist; the next one that does starts the day.
    for _ in 0..(24 * 4) {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(15);
    }
    local.and_utc()
}

/// Resolve a period to local days. `date` anchors presets (default: today in `tz`);
/// `custom` takes `from`..=`to` dates.
pub fn resolve(
    kind: PeriodKind,
    date: Option<NaiveDate>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<DayRange, ApiError> {
    let today = now.with_timezone(&tz).date_naive();
    let anchor = date.unwrap_or(today);
    let next = |d: NaiveDate| d + Days::new(1);
    Ok(match kind {
        PeriodKind::Today => DayRange {
            first: anchor,
            end: next(anchor),
        },
        PeriodKind::Days7 => DayRange {
            first: anchor - Days::new(6),
            end: next(anchor),
        },
        PeriodKind::Days30 => DayRange {
            first: anchor - Days::new(29),
            end: next(anchor),
        },
        PeriodKind::Month => {
            let first = anchor.with_day(1).expect("day 1 exists");
            DayRange {
                first,
                end: first + Months::new(1),
            }
        }
        PeriodKind::Months12 => {
            let end = anchor.with_day(1).expect("day 1 exists") + Months::new(1);
            DayRange {
                first: end - Months::new(12),
                end,
            }
        }
        PeriodKind::Custom => {
            let from = from.ok_or_else(|| {
                ApiError::bad_param("from", "is required with period=custom (YYYY-MM-DD)")
            })?;
            let to = to.ok_or_else(|| {
                ApiError::bad_param("to", "is required with period=custom (YYYY-MM-DD)")
            })?;
            DayRange::custom(from, to).map_err(|e| match e {
                CustomRangeError::Reversed => ApiError::bad_param("from", "must not be after `to`"),
                CustomRangeError::TooLong => {
                    ApiError::bad_param("to", "a custom range may cover at most 3660 days")
                }
            })?
        }
    })
}

/// The interval a period's timeseries uses when none is asked for.
pub fn default_interval(kind: PeriodKind, days: u64) -> Bucket {
    match kind {
        PeriodKind::Today => Bucket::Hour,
        PeriodKind::Months12 => Bucket::Month,
        _ if days > 93 => Bucket::Month,
        _ => Bucket::Day,
    }
}

pub fn parse_interval(s: &str) -> Option<Bucket> {
    Some(match s {
        "minute" => Bucket::Minute,
        "hour" => Bucket::Hour,
        "day" | "date" => Bucket::Day,
        "week" => Bucket::Week,
        "month" => Bucket::Month,
        _ => return None,
    })
}

pub fn interval_name(b: Bucket) -> &'static str {
    match b {
        Bucket::Minute => "minute",
        Bucket::Hour => "hour",
        Bucket::Day => "day",
        Bucket::Week => "week",
        Bucket::Month => "month",
    }
}

/// One bucket of a timeseries: the key ClickHouse groups by (see [`Bucket`]) and the label
/// the API shows (local RFC 3339 for minutes and hours, `YYYY-MM-DD` otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSlot {
    pub key: String,
    pub label: String,
}

/// Every bucket overlapping `[from, to)`, in order, so empty ones can be filled with zeros.
pub fn buckets(
    interval: Bucket,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<BucketSlot>, ApiError> {
    let too_many = || {
        ApiError::bad_param(
            "interval",
            format!(
                "gives more than {MAX_BUCKETS} buckets for this period; choose a longer interval"
            ),
        )
    };
    let mut out: Vec<BucketSlot> = Vec::new();
    match interval {
        Bucket::Minute | Bucket::Hour => {
            let (len, step) = if interval == Bucket::Minute {
                (60, 60)
            } else {
                (3600, 900)
            };
            if (to - from).num_seconds() / len > MAX_BUCKETS as i64 {
                return Err(too_many());
            }
            let mut t = from.timestamp();
            while t < to.timestamp() {
                let at = Utc.timestamp_opt(t, 0).single().expect("in range");
                let offset = i64::from(
                    tz.offset_from_utc_datetime(&at.naive_utc())
                        .fix()
                        .local_minus_utc(),
                );
                let start = t - (t + offset).rem_euclid(len);
                if out.last().is_none_or(|b| b.key != start.to_string()) {
                    let local = Utc
                        .timestamp_opt(start, 0)
                        .single()
                        .expect("in range")
                        .with_timezone(&tz);
                    out.push(BucketSlot {
                        key: start.to_string(),
                        label: local.to_rfc3339(),
                    });
                }
                t += step;
            }
        }
        Bucket::Day | Bucket::Week | Bucket::Month => {
            let first = from.with_timezone(&tz).date_naive();
            let last = (to - chrono::Duration::seconds(1))
                .with_timezone(&tz)
                .date_naive();
            if (last - first).num_days() > 3700 {
                return Err(too_many());
            }
            let mut d = first;
            while d <= last {
                let key = match interval {
                    Bucket::Day => d,
                    Bucket::Week => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
                    _ => d.with_day(1).expect("day 1 exists"),
                };
                let key = key.format("%Y-%m-%d").to_string();
                if out.last().is_none_or(|b| b.key != key) {
                    out.push(BucketSlot {
                        label: key.clone(),
                        key,
                    });
                }
                d = d + Days::new(1);
            }
        }
    }
    if out.len() > MAX_BUCKETS {
        return Err(too_many());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-11-30T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn presets_are_local_calendar_days_ending_with_the_anchor() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 23:30 UTC is already Dec 1 in Berlin.
        let today = resolve(PeriodKind::Today, None, None, None, berlin, now()).unwrap();
        assert_eq!(today.first, date("2025-12-01"));
        let d7 = resolve(
            PeriodKind::Days7,
            Some(date("2025-11-30")),
            None,
            None,
            berlin,
            now(),
        )
        .unwrap();
        assert_eq!(
            (d7.first, d7.end, d7.days()),
            (date("2025-11-24"), date("2025-12-01"), 7)
        );
        let m = resolve(
            PeriodKind::Month,
            Some(date("2025-02-14")),
            None,
            None,
            Tz::UTC,
            now(),
        )
        .unwrap();
        assert_eq!((m.first, m.end), (date("2025-02-01"), date("2025-03-01")));
        assert_eq!(m.previous(PeriodKind::Month).first, date("2025-01-01"));
        let y = resolve(
            PeriodKind::Months12,
            Some(date("2025-02-14")),
            None,
            None,
            Tz::UTC,
            now(),
        )
        .unwrap();
        assert_eq!((y.first, y.end), (date("2024-03-01"), date("2025-03-01")));
        assert_eq!(
            d7.previous(PeriodKind::Days7),
            DayRange {
                first: date("2025-11-17"),
                end: date("2025-11-24")
            }
        );
    }

    #[test]
    fn comparisons_pick_the_days_before_a_year_before_or_the_same_weekdays() {
        use CompareMode::*;
        let range = |a: &str, b: &str| DayRange {
            first: date(a),
            end: date(b),
        };
        // Thu 2025-11-20 ..= Wed 2025-11-26 (7 days), a 30-day range, a calendar month.
        let week = range("2025-11-20", "2025-11-27");
        let d30 = range("2025-10-28", "2025-11-27");
        let month = range("2025-02-01", "2025-03-01");
        let leap = range("2024-02-29", "2024-03-01");
        for (r, kind, mode, matched, expected) in [
            (
                week,
                PeriodKind::Days7,
                PreviousPeriod,
                false,
                range("2025-11-13", "2025-11-20"),
            ),
            (
                week,
                PeriodKind::Days7,
                PreviousPeriod,
                true,
                range("2025-11-13", "2025-11-20"),
            ),
            // 30 days back would start on a Sunday; 35 days back is the latest Tuesday start
            // that ends before the range.
            (
                d30,
                PeriodKind::Days30,
                PreviousPeriod,
                false,
                range("2025-09-28", "2025-10-28"),
            ),
            (
                d30,
                PeriodKind::Days30,
                PreviousPeriod,
                true,
                range("2025-09-23", "2025-10-23"),
            ),
            (
                month,
                PeriodKind::Month,
                PreviousPeriod,
                false,
                range("2025-01-01", "2025-02-01"),
            ),
            (
                month,
                PeriodKind::Month,
                PreviousPeriod,
                true,
                range("2025-01-04", "2025-02-01"),
            ),
            (
                week,
                PeriodKind::Days7,
                YearOverYear,
                false,
                range("2024-11-20", "2024-11-27"),
            ),
            // 364 days back: Thursday 2024-11-21.
            (
                week,
                PeriodKind::Days7,
                YearOverYear,
                true,
                range("2024-11-21", "2024-11-28"),
            ),
            // 29 February a year back is the 28th.
            (
                leap,
                PeriodKind::Today,
                YearOverYear,
                false,
                range("2023-02-28", "2023-03-01"),
            ),
        ] {
            let got = r.compared(kind, mode, matched);
            assert_eq!(got, expected, "{r:?} {mode:?} {matched}");
            if matched {
                assert_eq!(got.first.weekday(), r.first.weekday(), "{r:?} {mode:?}");
                assert_eq!(got.days(), r.days());
                assert!(got.end <= r.first);
            }
        }
    }

    #[test]
    fn a_dst_day_has_23_or_25_hourly_buckets() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        for (day, hours) in [("2025-03-30", 23), ("2025-10-26", 25), ("2025-11-30", 24)] {
            let r = DayRange {
                first: date(day),
                end: date(day) + Days::new(1),
            };
            let (from, to) = r.instants(berlin);
            assert_eq!(
                buckets(Bucket::Hour, berlin, from, to).unwrap().len(),
                hours,
                "{day}"
            );
            assert_eq!(
                buckets(Bucket::Day, berlin, from, to).unwrap().len(),
                1,
                "{day}"
            );
        }
    }

    #[test]
    fn half_hour_zones_start_hours_at_local_hours() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let r = DayRange {
            first: date("2023-11-14"),
            end: date("2023-11-15"),
        };
        let (from, to) = r.instants(kolkata);
        let b = buckets(Bucket::Hour, kolkata, from, to).unwrap();
        assert_eq!(b.len(), 24);
        assert_eq!(b[0].label, "2023-11-14T00:00:00+05:30");
        assert_eq!(b[0].key, from.timestamp().to_string());
    }

    #[test]
    fn weeks_start_on_monday_and_too_many_buckets_are_refused() {
        let r = DayRange {
            first: date("2025-11-01"),
            end: date("2025-12-01"),
        };
        let (from, to) = r.instants(Tz::UTC);
        let w = buckets(Bucket::Week, Tz::UTC, from, to).unwrap();
        assert_eq!(w[0].key, "2025-10-27");
        assert_eq!(w.len(), 5);
        let long = DayRange {
            first: date("2020-01-01"),
            end: date("2025-01-01"),
        };
        let (from, to) = long.instants(Tz::UTC);
        assert!(buckets(Bucket::Minute, Tz::UTC, from, to).is_err());
    }
}
