//! Wall-clock time shared by the log lines, the audit records and the journal: RFC 3339
//! UTC text with exactly six fractional digits (lines and records sort and align as
//! text), and Unix milliseconds.

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

/// Now as Unix milliseconds (the journal's times).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Now, as `timestamp` writes it.
pub fn rfc3339_now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}
