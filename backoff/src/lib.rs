//! The retry delay every mdo loop uses: exponential backoff from `start`,
//! multiplied by `factor` after each failure, never above `max`, with
//! optional jitter; [`Backoff::reset`] after a success. Pure: it computes
//! delays and never sleeps, so the caller decides how to wait (and tests
//! need no clock).
//!
//! ```
//! use std::time::Duration;
//! let mut b = backoff::Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
//! assert_eq!(b.next(), Duration::from_millis(100));
//! assert_eq!(b.next(), Duration::from_millis(200));
//! assert_eq!(b.next(), Duration::from_millis(350));
//! b.reset();
//! assert_eq!(b.next(), Duration::from_millis(100));
//! ```
//!
//! This crate depends on nothing so that the bottom crates (`registry`,
//! `marathon`) can use it; `daemon` re-exports it for the binaries.

use std::time::Duration;

/// Exponential backoff state. Delays are at least `start` and at most
/// `max` (when `start > max`, every delay is `start`).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    start: Duration,
    max: Duration,
    factor: f64,
    /// Fraction of each delay that may be taken off at random, and the
    /// generator's state.
    jitter: Option<(f64, u64)>,
    /// The delay [`Backoff::next`] returns next (before jitter).
    current: Duration,
}

impl Backoff {
    /// Starts at `start`, doubles per failure, capped at `max`, no jitter.
    pub fn new(start: Duration, max: Duration) -> Backoff {
        Backoff {
            start,
            max,
            factor: 2.0,
            jitter: None,
            current: start,
        }
    }

    /// Multiplies the delay by `factor` per failure instead of 2 (values
    /// below 1, and NaN, are taken as 1: the delay never shrinks).
    pub fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = if factor >= 1.0 { factor } else { 1.0 };
        self
    }

    /// Takes up to `fraction` (clamped to 0..=1) of each delay off at
    /// random, so that many clients failing together do not retry together.
    /// `seed` makes the sequence reproducible (e.g. the process id, or a
    /// constant in tests).
    pub fn with_jitter(mut self, fraction: f64, seed: u64) -> Backoff {
        let fraction = if fraction > 0.0 {
            fraction.min(1.0)
        } else {
            0.0
        };
        self.jitter = Some((fraction, seed));
        self
    }

    /// The delay to wait before the next attempt; the one after it grows.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.grow(delay);
        match &mut self.jitter {
            None => delay,
            Some((fraction, state)) => {
                let u = unit(splitmix64(state));
                delay.mul_f64(1.0 - *fraction * u)
            }
        }
    }

    /// Back to `start` (after a success).
    pub fn reset(&mut self) {
        self.current = self.start;
    }

    /// The first delay.
    pub fn start(&self) -> Duration {
        self.start
    }

    fn grow(&self, delay: Duration) -> Duration {
        let secs = delay.as_secs_f64() * self.factor;
        let grown = if secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        };
        grown.max(self.start)
    }
}

/// One step of SplitMix64: a small, well-mixed generator, enough for jitter.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in [0, 1) from 53 random bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn take(b: &mut Backoff, n: usize) -> Vec<Duration> {
        (0..n).map(|_| b.next()).collect()
    }

    #[test]
    fn sequences() {
        type Case = (&'static str, Backoff, Vec<Duration>);
        let cases: Vec<Case> = vec![
            (
                "doubles up to max",
                Backoff::new(ms(100), ms(1000)),
                vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)],
            ),
            (
                "max not a power-of-two multiple",
                Backoff::new(ms(50), ms(120)),
                vec![ms(50), ms(100), ms(120), ms(120), ms(120), ms(120)],
            ),
            (
                "factor 3",
                Backoff::new(ms(10), ms(1000)).with_factor(3.0),
                vec![ms(10), ms(30), ms(90), ms(270), ms(810), ms(1000)],
            ),
            (
                "factor below 1 is 1: constant",
                Backoff::new(ms(10), ms(1000)).with_factor(0.5),
                vec![ms(10); 6],
            ),
            (
                "NaN factor is 1",
                Backoff::new(ms(10), ms(1000)).with_factor(f64::NAN),
                vec![ms(10); 6],
            ),
            (
                "start above max: always start",
                Backoff::new(ms(500), ms(100)),
                vec![ms(500); 6],
            ),
            (
                "zero start stays zero",
                Backoff::new(ms(0), ms(100)),
                vec![ms(0); 6],
            ),
        ];
        for (name, mut b, want) in cases {
            assert_eq!(take(&mut b, want.len()), want, "{name}");
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(ms(100), Duration::from_secs(5));
        take(&mut b, 5);
        b.reset();
        assert_eq!(take(&mut b, 3), vec![ms(100), ms(200), ms(400)]);
        assert_eq!(b.start(), ms(100));
    }

    #[test]
    fn huge_values_saturate_at_max() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::MAX).with_factor(1e300);
        assert_eq!(b.next(), Duration::from_secs(1));
        assert_eq!(b.next(), Duration::MAX);
        assert_eq!(b.next(), Duration::MAX);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_is_reproducible() {
        let plain: Vec<Duration> = take(&mut Backoff::new(ms(100), ms(10_000)), 40);
        let mut a = Backoff::new(ms(100), ms(10_000)).with_jitter(0.5, 7);
        let mut b = Backoff::new(ms(100), ms(10_000)).with_jitter(0.5, 7);
        let ja = take(&mut a, 40);
        assert_eq!(ja, take(&mut b, 40), "same seed, same delays");
        for (j, p) in ja.iter().zip(&plain) {
            assert!(
                *j <= *p && *j >= p.mul_f64(0.5),
                "{j:?} within [{p:?}/2, {p:?}]"
            );
        }
        assert!(
            ja.iter().zip(&plain).any(|(j, p)| j != p),
            "jitter changes something"
        );
        let other = take(
            &mut Backoff::new(ms(100), ms(10_000)).with_jitter(0.5, 8),
            40,
        );
        assert_ne!(ja, other, "another seed, other delays");
        // Out-of-range fractions are clamped.
        let none = take(
            &mut Backoff::new(ms(100), ms(10_000)).with_jitter(-1.0, 1),
            10,
        );
        assert_eq!(none, plain[..10]);
        let full = take(
            &mut Backoff::new(ms(100), ms(10_000)).with_jitter(5.0, 1),
            10,
        );
        assert!(full.iter().zip(&plain).all(|(j, p)| j <= p));
    }
}
