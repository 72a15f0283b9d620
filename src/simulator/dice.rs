//! Seeded draws keyed by what they are about, never by the order requests arrive.
//!
//! A daemon sends its requests in an order that timing decides (which poll lands first,
//! which backoff ends first). If the simulator drew every fault from one random stream,
//! the same seed would hand a 429 to a different action on each run and tell a different
//! story. Here each draw gets its own small generator, seeded from the seed, the subject
//! (an attempt's `Idempotency-Key`, a payload, a token's rank) and which request of that
//! subject it is: one seed, one story, however the requests interleave.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Multiplier spreading the seed over all 64 bits before it is mixed in (2^64 / phi).
const SEED_SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a offset basis (64-bit).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a prime (64-bit).
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// What a draw decides; part of its key, so two kinds of draw about one subject differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The faults of the n-th submit of an attempt.
    Submit,
    /// The faults of the n-th poll answering a finished attempt.
    Poll,
    /// Whether the n-th token issued expires early.
    Token,
}

impl Topic {
    fn tag(self) -> u64 {
        match self {
            Topic::Submit => 1,
            Topic::Poll => 2,
            Topic::Token => 3,
        }
    }
}

/// The generator of one request's draws.
pub struct Dice(SmallRng);

impl Dice {
    /// Draws about `subject` (a `subject_hash`), of `topic`, for its `nth` request.
    pub fn new(seed: u64, subject: u64, topic: Topic, nth: u64) -> Dice {
        let key = [topic.tag(), nth]
            .iter()
            .fold(subject, |hash, word| fnv1a_continue(hash, &word.to_le_bytes()));
        Dice(SmallRng::seed_from_u64(mix(seed, key)))
    }

    /// True with probability `rate` (never for 0, always for 1 or more).
    pub fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.0.random_bool(rate.min(1.0))
    }
}

/// The key of a subject given as text (an `Idempotency-Key`, a canonical payload).
pub fn subject_hash(text: &str) -> u64 {
    fnv1a(text.as_bytes())
}

/// The key of the `attempt`-th attempt of a subject that names no attempt itself (a
/// submit without an `Idempotency-Key`).
pub fn attempt_hash(subject: u64, attempt: u32) -> u64 {
    fnv1a_continue(subject, &attempt.to_le_bytes())
}

/// A generator seed from the run's seed and a draw's key: stable across runs, platforms
/// and Rust versions.
pub fn mix(seed: u64, key: u64) -> u64 {
    key ^ seed.wrapping_mul(SEED_SPREAD)
}

/// 64-bit FNV-1a, chosen over `DefaultHasher` because its output never changes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_continue(FNV_OFFSET, bytes)
}

/// FNV-1a over `bytes`, continuing from `hash`.
fn fnv1a_continue(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The faults a run of `requests` (subject, nth) would see, at a 30% rate.
    fn faults(seed: u64, requests: &[(&str, u64)]) -> Vec<(String, u64, bool)> {
        let mut seen: Vec<(String, u64, bool)> = requests
            .iter()
            .map(|(subject, nth)| {
                let mut dice = Dice::new(seed, subject_hash(subject), Topic::Submit, *nth);
                (subject.to_string(), *nth, dice.chance(0.3))
            })
            .collect();
        seen.sort();
        seen
    }

    #[test]
    fn the_same_subject_and_request_draw_the_same_whatever_the_order() {
        let forward: Vec<(&str, u64)> = vec![("key-a", 1), ("key-b", 1), ("key-a", 2), ("key-c", 1), ("key-b", 2)];
        let mut backward = forward.clone();
        backward.reverse();
        assert_eq!(faults(42, &forward), faults(42, &backward));
    }

    #[test]
    fn seeds_subjects_topics_and_ranks_all_change_the_draw() {
        let draws = |seed, subject: &str, topic, nth| -> Vec<bool> {
            let mut dice = Dice::new(seed, subject_hash(subject), topic, nth);
            (0..64).map(|_| dice.chance(0.5)).collect()
        };
        let base = draws(42, "k", Topic::Submit, 1);
        assert_eq!(base, draws(42, "k", Topic::Submit, 1));
        assert_ne!(base, draws(43, "k", Topic::Submit, 1));
        assert_ne!(base, draws(42, "j", Topic::Submit, 1));
        assert_ne!(base, draws(42, "k", Topic::Poll, 1));
        assert_ne!(base, draws(42, "k", Topic::Submit, 2));
    }

    #[test]
    fn chance_keeps_its_rate() {
        let hits = (0..20_000u64)
            .filter(|n| Dice::new(7, subject_hash("s"), Topic::Poll, *n).chance(0.1))
            .count();
        assert!((1_700..2_300).contains(&hits), "{hits}");
        assert!(!Dice::new(7, 1, Topic::Poll, 1).chance(0.0));
        assert!(Dice::new(7, 1, Topic::Poll, 1).chance(1.0));
    }

    #[test]
    fn attempts_of_one_subject_differ() {
        let subject = subject_hash("{\"n\":1}");
        assert_ne!(attempt_hash(subject, 1), attempt_hash(subject, 2));
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
