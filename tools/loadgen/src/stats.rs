//! Latency summary: microsecond samples kept in a Vec, sorted once, read by nearest rank.
//! At 10k–100k samples a sorted Vec is smaller and simpler than a bucketed histogram.

use serde::Serialize;

/// Collected latencies in microseconds.
#[derive(Debug, Default)]
pub struct Latencies {
    samples_us: Vec<u64>,
}

/// Percentiles of a run, in microseconds; all zero when there were no samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: u64,
}

impl Latencies {
    pub fn record(&mut self, us: u64) {
        self.samples_us.push(us);
    }

    pub fn summary(mut self) -> Summary {
        self.samples_us.sort_unstable();
        let s = &self.samples_us;
        let Some(&max_us) = s.last() else {
            return Summary::default();
        };
        let sum: u128 = s.iter().map(|&v| u128::from(v)).sum();
        Summary {
            count: s.len(),
            p50_us: percentile(s, 50.0),
            p90_us: percentile(s, 90.0),
            p99_us: percentile(s, 99.0),
            max_us,
            mean_us: u64::try_from(sum / s.len() as u128).unwrap_or(u64::MAX),
        }
    }
}

/// Nearest-rank percentile of sorted `s`: the smallest value with at least `p`% of samples at or
/// below it. 0 for an empty slice.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 90.0), 90);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&s, 0.0), 1);
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
        // 10 samples: p99 is the 10th, p90 the 9th, p50 the 5th.
        let s: Vec<u64> = (1..=10).map(|v| v * 10).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 90.0), 90);
        assert_eq!(percentile(&s, 99.0), 100);
    }

    #[test]
    fn summary_sorts_unsorted_input() {
        let mut l = Latencies::default();
        for v in [500, 100, 300, 200, 400] {
            l.record(v);
        }
        let s = l.summary();
        assert_eq!(
            s,
            Summary {
                count: 5,
                p50_us: 300,
                p90_us: 500,
                p99_us: 500,
                max_us: 500,
                mean_us: 300
            }
        );
        assert_eq!(Latencies::default().summary(), Summary::default());
    }
}
