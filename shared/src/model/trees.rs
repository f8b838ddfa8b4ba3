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

/// Rows a [`Forest`] scores together: their bit sets and values are updated side by side, which
/// the compiler turns into vector instructions (four SSE2 ones per step in the baseline x86-64
/// build).
const LANES: usize = 8;

/// Trees scored the QuickScorer way (Lucchese et al., SIGIR 2015): instead of walking each tree,
/// a row visits, per input, the nodes splitting on it whose test it fails (`x > threshold`, or x
/// missing), and each such node clears from its tree's bit set the leaves of its left subtree.
/// The leftmost leaf left standing is where the walk would have ended. No branch depends on
/// the row but where each input's run of failed tests ends, and the nodes are read in order.
#[derive(Debug, Clone)]
pub(crate) struct Forest {
    /// Per input, the thresholds of the nodes splitting on it, ascending.
    thresholds: Vec<Vec<f64>>,
    /// The same nodes: their tree, and the bits of the leaves left standing when the test fails.
    cuts: Vec<Vec<(u32, u64)>>,
    /// Each tree's leaves left to right, one tree after another; `offsets[t]` is tree `t`'s first.
    leaves: Vec<f64>,
    offsets: Vec<usize>,
}

/// The leaves of `tree` under `node` (a child reference) left to right, appended to `order`; for
/// each inner node reached, the leaves (bit positions) of its left subtree. Stops once `order`
/// holds more than 64 leaves.
fn in_order(tree: &Tree, node: i32, order: &mut Vec<usize>, left_of: &mut [Option<(usize, usize)>]) -> (usize, usize) {
    if order.len() > 64 {
        return (0, 0);
    }
    if node < 0 {
        order.push((!node) as usize);
        return (order.len() - 1, order.len());
    }
    let n = node as usize;
    let left = in_order(tree, tree.left[n], order, left_of);
    let right = in_order(tree, tree.right[n], order, left_of);
    left_of[n] = Some(left);
    (left.0, right.1)
}

impl Forest {
    /// The forest of `trees`, or `None` when one of them has more than 64 leaves or a node
    /// reached twice (scored by walking instead).
    pub(crate) fn of(trees: &[Tree]) -> Option<Self> {
        let width = trees.iter().flat_map(|t| &t.feature).max().map_or(0, |&f| f as usize + 1);
        let mut nodes: Vec<Vec<(f64, u32, u64)>> = vec![Vec::new(); width];
        let (mut leaves, mut offsets) = (Vec::new(), Vec::with_capacity(trees.len()));
        for (t, tree) in trees.iter().enumerate() {
            offsets.push(leaves.len());
            if tree.feature.is_empty() {
                leaves.push(tree.leaf.first().copied().unwrap_or(0.0));
                continue;
            }
            let (mut order, mut left_of) = (Vec::new(), vec![None; tree.feature.len()]);
            in_order(tree, 0, &mut order, &mut left_of);
            let mut seen = order.clone();
            seen.sort_unstable();
            seen.dedup();
            if order.len() > 64 || seen.len() != order.len() {
                return None;
            }
            leaves.extend(order.iter().map(|&l| tree.leaf[l]));
            // Nodes no walk reaches are left out.
            for (n, &(lo, hi)) in left_of.iter().enumerate().filter_map(|(n, l)| Some((n, l.as_ref()?))) {
                let span = (u64::MAX >> (64 - (hi - lo))) << lo;
                nodes.get_mut(tree.feature[n] as usize)?.push((tree.threshold[n], t as u32, !span));
            }
        }
        let (mut thresholds, mut cuts) = (Vec::with_capacity(width), Vec::with_capacity(width));
        for mut list in nodes {
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            thresholds.push(list.iter().map(|n| n.0).collect());
            cuts.push(list.iter().map(|n| (n.1, n.2)).collect());
        }
        Some(Self { thresholds, cuts, leaves, offsets })
    }

    /// Adds the trees' outputs for each row of `xs` (row-major, `width` values each, `width > 0`)
    /// to `out`, in tree order: the numbers [`Tree::eval`] gives, summed as a walk sums them.
    /// Rows go [`LANES`] at a time; the rows past the last whole block one at a time.
    pub(crate) fn add_rows(&self, xs: &[f64], width: usize, out: &mut [f64]) {
        let whole = (xs.len() / width).min(out.len()) / LANES * LANES;
        let (xs, rest_xs) = xs.split_at(whole * width);
        let (out, rest_out) = out.split_at_mut(whole);
        let mut standing = vec![[u64::MAX; LANES]; self.offsets.len()];
        for (block, o) in xs.chunks_exact(width * LANES).zip(out.chunks_exact_mut(LANES)) {
            self.add_lanes(block, width, &mut standing, o);
        }
        let mut standing = vec![u64::MAX; self.offsets.len()];
        for (row, o) in rest_xs.chunks(width).zip(rest_out) {
            self.add_row(row, &mut standing, o);
        }
    }

    /// [`Self::add_rows`] for [`LANES`] rows, each lane's bits and sums apart and no branch on
    /// one lane's value: a node is visited while any lane fails its test (V-QuickScorer,
    /// Lucchese et al., SIGIR 2016).
    fn add_lanes(&self, block: &[f64], width: usize, standing: &mut [[u64; LANES]], out: &mut [f64]) {
        standing.fill([u64::MAX; LANES]);
        for (f, (thresholds, cuts)) in self.thresholds.iter().zip(&self.cuts).enumerate() {
            let mut x = [f64::NAN; LANES];
            for (lane, v) in x.iter_mut().enumerate() {
                *v = block.get(lane * width + f).copied().unwrap_or(f64::NAN);
            }
            // The highest value, or NaN when one is missing (it fails every test).
            let top =
                x.iter().fold(f64::NEG_INFINITY, |m, &v| if m.is_nan() || v.is_nan() { f64::NAN } else { m.max(v) });
            for (&t, &(tree, bits)) in thresholds.iter().zip(cuts) {
                if top <= t {
                    break;
                }
                if let Some(s) = standing.get_mut(tree as usize) {
                    for (s, &v) in s.iter_mut().zip(&x) {
                        *s &= if v <= t { u64::MAX } else { bits };
                    }
                }
            }
        }
        for (s, &first) in standing.iter().zip(&self.offsets) {
            for (o, &lane) in out.iter_mut().zip(s) {
                *o += self.leaves.get(first + lane.trailing_zeros() as usize).copied().unwrap_or(0.0);
            }
        }
    }

    /// [`Self::add_rows`] for one row, `standing` holding a bit set per tree.
    fn add_row(&self, row: &[f64], standing: &mut [u64], out: &mut f64) {
        standing.fill(u64::MAX);
        for ((&x, thresholds), cuts) in row.iter().zip(&self.thresholds).zip(&self.cuts) {
            // Thresholds ascending: the tests failed are a run from the first. A missing value
            // fails every test (`NaN <= t` is false): the walk goes right.
            for (&t, &(tree, bits)) in thresholds.iter().zip(cuts) {
                if x <= t {
                    break;
                }
                if let Some(s) = standing.get_mut(tree as usize) {
                    *s &= bits;
                }
            }
        }
        let mut z = *out;
        for (&s, &first) in standing.iter().zip(&self.offsets) {
            z += self.leaves.get(first + s.trailing_zeros() as usize).copied().unwrap_or(0.0);
        }
        *out = z;
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

    /// A tree of `leaves` leaves grown leaf-wise (each split on a random leaf, so it is lopsided)
    /// over `width` inputs, with thresholds on a grid so that ties happen.
    fn grown(next: &mut impl FnMut() -> f64, leaves: usize, width: usize) -> Tree {
        let mut tree = Tree { feature: vec![], threshold: vec![], left: vec![], right: vec![], leaf: vec![0.0] };
        // Where each leaf hangs: (parent, is left), the root's leaf hanging nowhere.
        let mut hangs: Vec<Option<(usize, bool)>> = vec![None];
        while tree.leaf.len() < leaves {
            let l = ((next() * tree.leaf.len() as f64) as usize).min(tree.leaf.len() - 1);
            let n = tree.feature.len() as i32;
            match hangs[l] {
                Some((p, true)) => tree.left[p] = n,
                Some((p, false)) => tree.right[p] = n,
                None if n == 0 => {}
                None => unreachable!("only the first leaf hangs nowhere"),
            }
            tree.feature.push(((next() * width as f64) as u32).min(width as u32 - 1));
            tree.threshold.push((next() * 8.0).round() / 2.0 - 2.0);
            let new = tree.leaf.len();
            tree.left.push(!(l as i32));
            tree.right.push(!(new as i32));
            tree.leaf.push(0.0);
            hangs[l] = Some((n as usize, true));
            hangs.push(Some((n as usize, false)));
        }
        tree.leaf.iter_mut().for_each(|v| *v = next() - 0.5);
        tree
    }

    #[test]
    fn the_forest_gives_what_walking_gives_bit_for_bit() {
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let width = 5;
        let mut trees: Vec<Tree> = (0..40).map(|i| grown(&mut next, 1 + i % 40 + i / 20 * 24, width)).collect();
        trees.push(Tree { feature: vec![], threshold: vec![], left: vec![], right: vec![], leaf: vec![0.125] });
        // Only a missing value fails an infinite threshold's test.
        trees.push(Tree {
            feature: vec![1],
            threshold: vec![f64::INFINITY],
            left: vec![!0],
            right: vec![!1],
            leaf: vec![0.5, -0.25],
        });
        trees.iter().for_each(|t| t.check(width).unwrap());
        assert!(trees.iter().any(|t| t.leaf.len() == 64));
        // Missing values rare enough that most blocks of rows have none in an input, and 300
        // rows: whole blocks and rows past them.
        let xs: Vec<f64> = (0..width * 300)
            .map(|i| if i % 47 == 0 { f64::NAN } else { (next() * 10.0).round() / 2.0 - 2.5 })
            .collect();
        let forest = Forest::of(&trees).expect("every tree has at most 64 leaves");
        let mut rows = vec![-0.0; 300];
        forest.add_rows(&xs, width, &mut rows);
        let mut walked = vec![-0.0; 300];
        trees.iter().for_each(|t| t.packed().add_block(&xs, width, &mut walked));
        let alone: Vec<f64> = xs.chunks(width).map(|x| trees.iter().fold(-0.0, |z, t| z + t.eval(x))).collect();
        assert_eq!(
            rows.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(walked, alone);

        // More than 64 leaves, or a node reached from two parents: walked instead.
        assert!(Forest::of(&[grown(&mut next, 65, width)]).is_none());
        let shared = Tree {
            feature: vec![0, 1, 2],
            threshold: vec![0.0; 3],
            left: vec![1, 2, !0],
            right: vec![2, !1, !2],
            leaf: vec![1.0, 2.0, 3.0],
        };
        shared.check(width).unwrap();
        assert!(Forest::of(&[shared]).is_none());
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
