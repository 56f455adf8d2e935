//! The date formats of the AWS protocols, through the `time` crate (already in the build via
//! `aws-sigv4`): SigV4's `X-Amz-Date`, and the ISO 8601 dates of policy conditions and of the
//! `aws:CurrentTime` context key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

const AMZ: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
const ISO_SECONDS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
const DAY: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]");

fn utc(t: SystemTime) -> OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `YYYYMMDD'T'HHMMSS'Z'`, the format of `X-Amz-Date` (whole seconds, UTC).
pub fn amz_format(t: SystemTime) -> String {
    utc(t).format(AMZ).unwrap_or_default()
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'`; `None` for anything else.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let at = PrimitiveDateTime::parse(s, AMZ).ok()?.assume_utc();
    system_time(at)
}

/// `2026-11-22T10:11:12Z` (whole seconds, UTC), as `aws:CurrentTime` is given to policies.
pub fn iso8601(t: SystemTime) -> String {
    utc(t).format(ISO_SECONDS).unwrap_or_default()
}

/// An ISO 8601 date (`2026-11-22`) or date-time (`2026-11-22T10:11:12.5+01:00`; no offset
/// means UTC) as possibly fractional seconds since the epoch.
pub fn parse_iso8601(s: &str) -> Option<f64> {
    let at = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .or_else(|_| PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(|p| p.assume_utc()))
        .or_else(|_| Date::parse(s, DAY).map(|d| d.midnight().assume_utc()))
        .ok()?;
    Some(at.unix_timestamp_nanos() as f64 / 1e9)
}

fn system_time(at: OffsetDateTime) -> Option<SystemTime> {
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_342_272);
        assert_eq!(amz_format(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(amz_format(t0), "20261122T101112Z");
        assert_eq!(parse_amz_date("20261122T101112Z"), Some(t0));
        assert_eq!(
            parse_amz_date("20240229T235959Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_251_199))
        );
        for bad in [
            "",
            "20261122",
            "20261322T000000Z",
            "2026112xT000000Z",
            "20261122T000000",
            "20230229T000000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso8601_formats_whole_seconds_in_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_342_272_900);
        assert_eq!(iso8601(t), "2026-11-22T10:11:12Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn iso8601_dates_and_date_times_parse() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_iso8601("1970-01-02"), Some(86_400.0));
        assert_eq!(parse_iso8601("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(parse_iso8601("2024-02-29T23:59:59Z"), Some(1_709_251_199.0));
        assert_eq!(parse_iso8601("1969-12-31T23:59:59Z"), Some(-1.0));
        assert_eq!(
            parse_iso8601("2026-01-01T01:00:00+01:00"),
            parse_iso8601("2026-01-01")
        );
        assert_eq!(parse_iso8601("1970-01-01T00:00:00.25Z"), Some(0.25));
        assert_eq!(parse_iso8601("1970-01-01T00:00Z"), Some(0.0));
        assert_eq!(parse_iso8601("1970-01-01T00:00:10"), Some(10.0));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "2026-01-01T24:00:01Z",
            "2026-01-01T00:00:00X",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T",
            "tomorrow",
            "",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
