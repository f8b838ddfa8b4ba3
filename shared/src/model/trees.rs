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

    /// The tree laid out for walking many rows: each node's fields side by side.
    pub fn packed(&self) -> PackedTree {
        let nodes = (0..self.feature.len())
            .map(|n| Node {
                threshold: self.threshold[n],
                feature: self.feature[n],
                left: self.left[n],
                right: self.right[n],
            })
            .collect();
        PackedTree { nodes, leaf: self.leaf.clone() }
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

/// One inner node of a [`PackedTree`].
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f64,
    feature: u32,
    left: i32,
    right: i32,
}

/// A [`Tree`] with each node's fields side by side (one cache line holds a node, not four), for
/// scoring many rows.
#[derive(Debug, Clone)]
pub struct PackedTree {
    nodes: Vec<Node>,
    leaf: Vec<f64>,
}

impl PackedTree {
    /// Adds the tree's output for each row of `xs` (row-major, `width` values each) to `out`, as
    /// [`Tree::eval`] gives it: the rows of a block walk the tree together, a level at a time, so
    /// that one row's wait on memory or mispredicted branch overlaps the others'.
    pub fn add_block(&self, xs: &[f64], width: usize, out: &mut [f64]) {
        let Some(last) = self.nodes.len().checked_sub(1) else {
            let leaf = self.leaf.first().copied().unwrap_or(0.0);
            out.iter_mut().for_each(|o| *o += leaf);
            return;
        };
        const BLOCK: usize = 16;
        for (rows, outs) in xs.chunks(width * BLOCK).zip(out.chunks_mut(BLOCK)) {
            let mut at = [0i32; BLOCK];
            let mut walking = true;
            while walking {
                walking = false;
                for (row, node) in rows.chunks(width).zip(at.iter_mut()) {
                    if *node < 0 {
                        continue;
                    }
                    let n = &self.nodes[(*node as usize).min(last)];
                    let v = row.get(n.feature as usize).copied().unwrap_or(f64::NAN);
                    *node = if v <= n.threshold { n.left } else { n.right };
                    walking |= *node >= 0;
                }
            }
            for (o, &leaf) in outs.iter_mut().zip(&at) {
                *o += self.leaf.get((!leaf) as usize).copied().unwrap_or(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_of_rows_gets_what_each_row_gets_alone() {
        // A full tree of depth 5 over 3 inputs, thresholds and leaves from a small generator;
        // rows with missing (NaN) values, ties on thresholds, and a last block not full.
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let inner: i32 = 31;
        // Node i's children are 2i + 1 and 2i + 2, leaves past the inner nodes.
        let child = |c: i32| if c < inner { c } else { !(c - inner) };
        let tree = Tree {
            feature: (0..inner).map(|i| (i % 3) as u32).collect(),
            threshold: (0..inner).map(|_| (next() * 4.0).round() / 2.0).collect(),
            left: (0..inner).map(|i| child(2 * i + 1)).collect(),
            right: (0..inner).map(|i| child(2 * i + 2)).collect(),
            leaf: (0..=inner).map(|_| next() - 0.5).collect(),
        };
        tree.check(3).unwrap();
        let xs: Vec<f64> =
            (0..3 * 53).map(|i| if i % 11 == 0 { f64::NAN } else { (next() * 4.0).round() / 2.0 }).collect();
        let mut block = vec![1.0; 53];
        tree.packed().add_block(&xs, 3, &mut block);
        let alone: Vec<f64> = xs.chunks(3).map(|x| 1.0 + tree.eval(x)).collect();
        assert_eq!(block, alone);
    }

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
