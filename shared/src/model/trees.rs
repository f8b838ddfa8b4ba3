//! Regression trees over the preprocessed feature vector, as gradient boosting fits them. Stored
//! as parallel arrays (compact in the artifact's JSON); evaluation is a walk from the root.

use serde::{Deserialize, Serialize};

/// One tree. Internal node `n` sends `x` left when `x[feature[n]] <= threshold[n]`. A child
/// reference `c >= 0` is internal node `c` (always greater than its parent, so every walk ends);
/// `c < 0` is leaf `!c`. A tree without internal nodes is the single leaf `leaf[0]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub feature: Vec<u32>,
    pub threshold: Vec<f64>,
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    pub leaf: Vec<f64>,
}

impl Tree {
    /// The tree's output for `x`.
    #[inline]
    pub fn eval(&self, x: &[f64]) -> f64 {
        if self.feature.is_empty() {
            return self.leaf.first().copied().unwrap_or(0.0);
        }
        let mut n = 0usize;
        loop {
            let v = x.get(self.feature[n] as usize).copied().unwrap_or(f64::NAN);
            let next = if v <= self.threshold[n] { self.left[n] } else { self.right[n] };
            if next < 0 {
                return self.leaf[(!next) as usize];
            }
            n = next as usize;
        }
    }

    /// Whether the arrays describe a well-formed tree over `width` inputs.
    pub fn check(&self, width: usize) -> Result<(), String> {
        let n = self.feature.len();
        if self.threshold.len() != n || self.left.len() != n || self.right.len() != n {
            return Err("tree arrays of different lengths".into());
        }
        if self.leaf.is_empty() || self.leaf.iter().any(|v| !v.is_finite()) {
            return Err("a tree has no leaves or a non-finite leaf".into());
        }
        for i in 0..n {
            if self.feature[i] as usize >= width {
                return Err(format!("a tree splits on input {} of {width}", self.feature[i]));
            }
            if self.threshold[i].is_nan() {
                return Err("a tree threshold is NaN".into());
            }
            for c in [self.left[i], self.right[i]] {
                let ok = if c >= 0 { (c as usize) > i && (c as usize) < n } else { ((!c) as usize) < self.leaf.len() };
                if !ok {
                    return Err(format!("tree node {i} points at {c}, outside the tree"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_to_the_right_leaf_and_refuses_malformed_trees() {
        // x0 <= 1 ? (x1 <= 5 ? 10 : 20) : 30
        let t = Tree {
            feature: vec![0, 1],
            threshold: vec![1.0, 5.0],
            left: vec![1, !0],
            right: vec![!2, !1],
            leaf: vec![10.0, 20.0, 30.0],
        };
        assert_eq!(t.check(2), Ok(()));
        assert_eq!(t.eval(&[0.5, 5.0]), 10.0);
        assert_eq!(t.eval(&[1.0, 6.0]), 20.0);
        assert_eq!(t.eval(&[1.5, 0.0]), 30.0);
        let stump = Tree { feature: vec![], threshold: vec![], left: vec![], right: vec![], leaf: vec![0.25] };
        assert_eq!((stump.check(0), stump.eval(&[])), (Ok(()), 0.25));
        let cycle = Tree { left: vec![0, !0], ..t.clone() };
        assert!(cycle.check(2).unwrap_err().contains("outside the tree"));
        assert!(t.check(1).unwrap_err().contains("input 1 of 1"));
    }
}
