//! The seeded holdout split. Trainer and evaluator both call it, so they agree on which rows were
//! held out without passing row lists around. The shuffle is written out here (ChaCha8 +
//! Fisher-Yates) rather than borrowed from `rand`, whose algorithms may change between versions and
//! would silently change every artifact.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Splits `0..rows` into (train, holdout) indices, `holdout` being the share held out.
/// The same `rows`, `holdout` and `seed` always give the same split.
pub fn holdout_split(rows: usize, holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx = shuffled(rows, seed);
    let n_holdout = ((rows as f64) * holdout).round() as usize;
    let n_holdout = n_holdout.clamp(usize::from(rows > 1), rows.saturating_sub(1));
    let mut holdout_idx = idx.split_off(rows - n_holdout);
    idx.sort_unstable();
    holdout_idx.sort_unstable();
    (idx, holdout_idx)
}

/// `0..rows` in a seeded random order (Fisher–Yates on ChaCha8).
pub fn shuffled(rows: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rows).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..rows).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let (a, b) = holdout_split(1000, 0.2, 7);
        assert_eq!((a.len(), b.len()), (800, 200));
        let (a2, b2) = holdout_split(1000, 0.2, 7);
        assert_eq!((&a, &b), (&a2, &b2));
        let (_, b3) = holdout_split(1000, 0.2, 8);
        assert_ne!(b, b3);
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn tiny_inputs_keep_both_sides_non_empty() {
        assert_eq!(holdout_split(2, 0.01, 1).1.len(), 1);
        assert_eq!(holdout_split(2, 0.99, 1).0.len(), 1);
        assert_eq!(holdout_split(0, 0.2, 1), (vec![], vec![]));
    }
}
