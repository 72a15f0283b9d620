//! Wall-clock text shared by the log lines and the audit records: RFC 3339 UTC with
//! exactly six fractional digits, so lines and records sort and align as text.

/// `at` as `2026-11-27T22:02:53.123456Z`.
pub fn timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// Now, as `timestamp` writes it.
pub fn rfc3339_now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}
