//! Key ids (`kid`, RFC 7517 §4.5) for keys this crate generates: the creation time in UTC and
//! 32 random bits, e.g. `20260512T103000Z-1a2b3c4d`. The time part lets the key directory order
//! keys and decide when one may be retired without any metadata beside the key file; the random
//! part keeps two keys made in the same second apart. Only URL-safe characters, so a `kid` can be
//! a file name and sits in a JWS header without escaping.

/// Longest `kid` accepted from a file name or configuration.
const MAX_KID_LEN: usize = 64;

/// A fresh `kid` for a key created at `now` (Unix seconds).
pub(crate) fn new_kid(now: u64) -> String {
    let mut random = [0u8; 4];
    rand::fill(&mut random);
    let (y, mo, d, h, mi, s) = utc_fields(now);
    format!(
        "{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z-{:02x}{:02x}{:02x}{:02x}",
        random[0], random[1], random[2], random[3]
    )
}

/// The creation time encoded in a `kid` made by [`new_kid`], or `None` for any other `kid`
/// (an operator-chosen name).
pub(crate) fn created_from_kid(kid: &str) -> Option<u64> {
    let b = kid.as_bytes();
    if b.len() != 25 || b[8] != b'T' || b[15] != b'Z' || b[16] != b'-' {
        return None;
    }
    if !b[17..]
        .iter()
        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        let s = kid.get(from..to)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (h, mi, s) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// Whether `kid` is acceptable as a key id and a file stem: 1 to 64 characters of
/// `A-Z a-z 0-9 - _ .`, not starting with a dot.
pub(crate) fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && !kid.starts_with('.')
        && kid
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// (year, month, day, hour, minute, second) of Unix time `t` in UTC.
fn utc_fields(t: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = t / 86_400;
    let rem = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`,
/// restricted to dates on or after the epoch, so all arithmetic is unsigned).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Inverse of [`civil_from_days`] for years >= 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_encodes_its_creation_time_to_the_second() {
        for t in [0, 951_782_400, 1_700_000_000, 1_778_581_800, 4_102_444_799] {
            let kid = new_kid(t);
            assert!(is_valid_kid(&kid), "{kid}");
            assert_eq!(created_from_kid(&kid), Some(t), "{kid}");
        }
        assert!(new_kid(1_778_581_800).starts_with("20260512T103000Z-"));
    }

    #[test]
    fn two_kids_in_the_same_second_differ() {
        assert_ne!(new_kid(1_700_000_000), new_kid(1_700_000_000));
    }

    #[test]
    fn operator_names_have_no_creation_time() {
        for kid in [
            "prod-2024",
            "20260512T103000Z-zzzzzzzz",
            "20261312T103000Z-00000000",
            "",
        ] {
            assert_eq!(created_from_kid(kid), None, "{kid}");
        }
    }

    #[test]
    fn kid_charset_is_url_and_file_safe() {
        assert!(is_valid_kid("a-b_c.d"));
        for bad in ["", ".hidden", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(!is_valid_kid(bad), "{bad}");
        }
    }
}
