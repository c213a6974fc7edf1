//! When a certificate expires: its `notAfter`, read from the DER by hand.
//!
//! rustls checks certificates but does not say when one ends, and a whole
//! X.509 parser as a dependency for one date is more than it is worth. The
//! walk below follows RFC 5280's shape only as far as that date:
//! `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
//! OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE
//! { notBefore, notAfter }, … } … }`.

use std::time::{Duration, SystemTime};

/// The end of a certificate's validity, or `None` if the DER is not shaped
/// like a certificate.
pub fn not_after(certificate: &[u8]) -> Option<SystemTime> {
    let (_, certificate, _) = element(certificate)?;
    let (_, mut tbs, _) = element(certificate)?;
    let (tag, _, rest) = element(tbs)?;
    if tag == 0xa0 {
        tbs = rest; // the explicit version
    }
    let (_, _, rest) = element(tbs)?; // serialNumber
    let (_, _, rest) = element(rest)?; // signature
    let (_, _, rest) = element(rest)?; // issuer
    let (_, validity, _) = element(rest)?;
    let (_, _, rest) = element(validity)?; // notBefore
    let (tag, time, _) = element(rest)?;
    let text = std::str::from_utf8(time).ok()?;
    match tag {
        0x17 => utc_time(text),
        0x18 => generalized_time(text),
        _ => None,
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let (length, after) = rest.split_at(bytes);
        rest = after;
        length
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < length {
        return None;
    }
    let (contents, after) = rest.split_at(length);
    Some((tag, contents, after))
}

/// `YYMMDDHHMMSSZ`; years 50 to 99 are 19xx (RFC 5280).
fn utc_time(text: &str) -> Option<SystemTime> {
    let year: i64 = text.get(0..2)?.parse().ok()?;
    let year = if year >= 50 { 1900 + year } else { 2000 + year };
    moment(year, text.get(2..)?)
}

/// `YYYYMMDDHHMMSSZ`.
fn generalized_time(text: &str) -> Option<SystemTime> {
    moment(text.get(0..4)?.parse().ok()?, text.get(4..)?)
}

/// `MMDDHHMMSSZ` of `year`, as a point in time.
fn moment(year: i64, text: &str) -> Option<SystemTime> {
    if text.len() != 11 || !text.ends_with('Z') {
        return None;
    }
    let field = |at: usize| -> Option<i64> { text.get(at..at + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let seconds = u64::try_from(seconds).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(time: SystemTime) -> u64 {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn both_time_forms_of_x509_are_read_as_utc() {
        assert_eq!(secs(utc_time("700101000000Z").unwrap()), 0);
        assert_eq!(secs(utc_time("250301120000Z").unwrap()), 1_740_830_400);
        assert_eq!(
            secs(generalized_time("20500101000000Z").unwrap()),
            2_524_608_000
        );
        assert!(utc_time("2503011200Z").is_none());
    }
}
