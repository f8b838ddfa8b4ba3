//! Gradient-boosted decision trees for binary classification (log-loss) and regression (squared
//! error), written here rather than taken from a crate.
//!
//! The method is LightGBM's: every input is cut into at most 255 bins once, each tree is grown
//! leaf by leaf (always splitting the leaf whose best split gains most) from per-leaf histograms of
//! gradient and hessian sums, and a child's histogram is the parent's minus its sibling's, so only
//! the smaller child is ever counted. Leaves are Newton steps, `-G / (H + l2)`, shrunk by the
//! learning rate.
//!
//! Why not a crate: forust-ml and perpetual are fine libraries but each run must be bit-identical
//! on any worker, and here every sum has a fixed order (rows in index order, features split over
//! threads whole, ties broken by the lowest feature, bin and leaf), so the same inputs and
//! parameters give the same trees everywhere. Nothing is sampled, so there is no seed to carry.

use std::ops::Range;

use mlops_shared::model::{Tree, sigmoid};

/// Hyper-parameters (LightGBM's defaults).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub trees: u32,
    pub learning_rate: f64,
    pub num_leaves: u32,
    /// 0 for unlimited.
    pub max_depth: u32,
    pub min_data_in_leaf: u32,
    pub l2: f64,
    pub max_bins: u32,
    pub objective: Objective,
}

/// What the trees fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objective {
    /// The log-odds of 0/1 labels (log-loss).
    #[default]
    Binary,
    /// The value of numeric labels (squared error).
    SquaredError,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            trees: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            l2: 0.0,
            max_bins: 255,
            objective: Objective::Binary,
        }
    }
}

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub base_score: f64,
    pub trees: Vec<Tree>,
}

/// Rows used to place the bin edges of a large input (a strided, deterministic sample).
const BIN_SAMPLE: usize = 200_000;
const MIN_HESSIAN: f64 = 1e-3;

/// Fits on `x` (row-major, `d` columns) and labels `y` (0/1 for [`Objective::Binary`]). `one_hot` names the column ranges that
/// one-hot encode one feature (at most one 1 per row): each is binned as one input whose bins are
/// its categories, LightGBM's exclusive feature bundling, which counts a row once per feature
/// instead of once per category and splits exactly as on the separate columns. `progress` hears
/// of each finished tree.
pub fn fit(x: &[f64], d: usize, y: &[f64], one_hot: &[Range<usize>], p: Params, mut progress: impl FnMut(u32)) -> Fit {
    let n = y.len();
    debug_assert_eq!(x.len(), n * d);
    let bins = Binned::new(x, n, d, one_hot, p.max_bins.clamp(2, 256) as usize);
    let mean = y.iter().sum::<f64>() / n.max(1) as f64;
    let base_score = match p.objective {
        Objective::Binary => {
            let mean = mean.clamp(1e-12, 1.0 - 1e-12);
            (mean / (1.0 - mean)).ln()
        }
        Objective::SquaredError => mean,
    };
    let mut score = vec![base_score; n];
    // Each row's gradient and hessian side by side: a leaf's histogram gathers both at once.
    let mut gh = vec![(0.0, 0.0); n];
    let mut trees = Vec::with_capacity(p.trees as usize);
    let mut grower = Grower::new(&bins, p);
    for t in 0..p.trees {
        let half = n / 2;
        let (a, b) = gh.split_at_mut(half);
        let gradients = |out: &mut [(f64, f64)], score: &[f64], y: &[f64]| match p.objective {
            Objective::Binary => {
                for ((o, s), t) in out.iter_mut().zip(score).zip(y) {
                    let prob = sigmoid(*s);
                    *o = (prob - t, (prob * (1.0 - prob)).max(1e-16));
                }
            }
            Objective::SquaredError => {
                for ((o, s), t) in out.iter_mut().zip(score).zip(y) {
                    *o = (s - t, 1.0);
                }
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| gradients(b, &score[half..], &y[half..]));
            gradients(a, &score[..half], &y[..half]);
        });
        let tree = grower.grow(&gh, &mut score);
        trees.push(tree);
        progress(t + 1);
    }
    Fit { base_score, trees }
}

/// How a binned input maps to the model's columns.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Unit {
    /// One numeric column; bin `b` holds values up to `edges[b]`.
    Numeric { column: usize },
    /// `len` one-hot columns from `first`; bin `k < len` is "column `first + k` is 1", bin `len`
    /// is "none is".
    OneHot { first: usize, len: usize },
}

/// Every input cut into bins: `codes[r * units + u]` is row `r`'s bin of unit `u`. Row-major, as
/// LightGBM keeps dense bins: a histogram pass reads each row's codes together, and its
/// gradients once.
struct Binned {
    n: usize,
    units: Vec<Unit>,
    codes: Vec<u8>,
    /// The same codes column by column (`columns[u][r]`), for partitioning a leaf on one unit:
    /// one unit's codes stay in cache where rows' would not.
    columns: Vec<Vec<u8>>,
    /// Numeric units' upper bin edges (empty for one-hot units).
    edges: Vec<Vec<f64>>,
}

impl Binned {
    fn new(x: &[f64], n: usize, d: usize, one_hot: &[Range<usize>], max_bins: usize) -> Self {
        let stride = n.div_ceil(BIN_SAMPLE).max(1);
        let (mut units, mut codes, mut edges): (_, Vec<Vec<u8>>, _) = (Vec::new(), Vec::new(), Vec::new());
        let mut j = 0;
        while j < d {
            if let Some(g) = one_hot.iter().find(|g| g.start == j && g.len() < 256 && g.end <= d) {
                let len = g.len();
                codes.push((0..n).map(|i| (0..len).find(|&k| x[i * d + j + k] > 0.5).unwrap_or(len) as u8).collect());
                units.push(Unit::OneHot { first: j, len });
                edges.push(Vec::new());
                j = g.end;
                continue;
            }
            let mut sample: Vec<f64> = (0..n).step_by(stride).map(|i| x[i * d + j]).collect();
            sample.sort_by(f64::total_cmp);
            let e = bin_edges(&sample, max_bins);
            codes.push((0..n).map(|i| e.partition_point(|t| *t < x[i * d + j]) as u8).collect());
            units.push(Unit::Numeric { column: j });
            edges.push(e);
            j += 1;
        }
        let u = units.len();
        let mut rows = vec![0u8; n * u];
        for (j, column) in codes.iter().enumerate() {
            for (i, &c) in column.iter().enumerate() {
                rows[i * u + j] = c;
            }
        }
        Self { n, units, codes: rows, columns: codes, edges }
    }

    fn bins(&self, u: usize) -> usize {
        match self.units[u] {
            Unit::Numeric { .. } => self.edges[u].len() + 1,
            Unit::OneHot { len, .. } => len + 1,
        }
    }

    /// Whether a row with bin `code` of unit `u` goes left of a split at `bin`.
    fn goes_left(&self, u: usize, bin: usize, code: u8) -> bool {
        match self.units[u] {
            Unit::Numeric { .. } => code as usize <= bin,
            Unit::OneHot { .. } => code as usize != bin,
        }
    }

    /// The tree node for a split of unit `u` at `bin`: the column and the threshold.
    fn node(&self, u: usize, bin: usize) -> (u32, f64) {
        match self.units[u] {
            Unit::Numeric { column } => (column as u32, self.edges[u][bin]),
            Unit::OneHot { first, .. } => ((first + bin) as u32, 0.5),
        }
    }
}

/// Upper edges (all but the last bin's) that cut sorted `values` into at most `max_bins` bins of
/// about equal counts, each edge halfway between two distinct values.
fn bin_edges(sorted: &[f64], max_bins: usize) -> Vec<f64> {
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &v in sorted {
        match distinct.last_mut() {
            Some((last, c)) if *last == v => *c += 1,
            _ => distinct.push((v, 1)),
        }
    }
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| w[0].0 + (w[1].0 - w[0].0) / 2.0).collect();
    }
    let per_bin = sorted.len() as f64 / max_bins as f64;
    let mut edges = Vec::with_capacity(max_bins - 1);
    let mut seen = 0usize;
    for w in distinct.windows(2) {
        seen += w[0].1;
        if seen as f64 >= per_bin * (edges.len() + 1) as f64 && edges.len() + 1 < max_bins {
            edges.push(w[0].0 + (w[1].0 - w[0].0) / 2.0);
        }
    }
    edges
}

/// Gradient and hessian sums, per bin. A side's row count (for `min_data_in_leaf`) is estimated
/// from its hessian sum, in proportion to the leaf's, as LightGBM does: a count per bin would cost
/// a third more memory traffic in the hottest loop.
#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
}

/// The best split of a leaf, with its left side's sums.
#[derive(Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    g: f64,
    h: f64,
}

/// A leaf being grown: its rows are `rows[start..end]`.
struct Leaf {
    start: usize,
    end: usize,
    depth: u32,
    g: f64,
    h: f64,
    hist: Vec<Bin>,
    best: Option<Split>,
    /// Where the tree points at this leaf: the internal node and side, or none for the root.
    parent: Option<(usize, bool)>,
}

struct Grower<'b> {
    bins: &'b Binned,
    p: Params,
    /// Row indices, grouped by leaf.
    rows: Vec<u32>,
    scratch: Vec<u32>,
    /// The gradient and hessian of a leaf's rows, in the leaf's row order.
    ordered: Vec<(f64, f64)>,
    /// Where each input's bins start in a leaf histogram.
    offsets: Vec<usize>,
    width: usize,
}

impl<'b> Grower<'b> {
    fn new(bins: &'b Binned, p: Params) -> Self {
        let mut offsets = Vec::with_capacity(bins.units.len());
        let mut width = 0;
        for j in 0..bins.units.len() {
            offsets.push(width);
            width += bins.bins(j);
        }
        Self { bins, p, rows: Vec::new(), scratch: Vec::new(), ordered: Vec::new(), offsets, width }
    }

    /// Grows one tree on the gradients and hessians `gh` and adds its output to `score`.
    fn grow(&mut self, gh: &[(f64, f64)], score: &mut [f64]) -> Tree {
        let n = self.bins.n;
        self.rows.clear();
        self.rows.extend(0..n as u32);
        let mut root = Leaf {
            start: 0,
            end: n,
            depth: 0,
            g: gh.iter().map(|p| p.0).sum(),
            h: gh.iter().map(|p| p.1).sum(),
            hist: self.histogram(0, n, gh),
            best: None,
            parent: None,
        };
        root.best = self.best_split(&root);
        let mut leaves = vec![root];
        let mut tree = Tree { feature: vec![], threshold: vec![], left: vec![], right: vec![], leaf: vec![] };
        while leaves.len() < self.p.num_leaves as usize {
            // The leaf with the largest gain; ties go to the oldest leaf.
            let Some((at, split)) = leaves.iter().enumerate().filter_map(|(i, l)| l.best.map(|s| (i, s))).fold(
                None,
                |best: Option<(usize, Split)>, (i, s)| match best {
                    Some((_, b)) if b.gain >= s.gain => best,
                    _ => Some((i, s)),
                },
            ) else {
                break;
            };
            let (left, right) = self.split(&mut leaves[at], split, gh, &mut tree);
            leaves[at] = left;
            leaves.push(right);
        }
        // Leaf values, and each row's score moved by its leaf.
        tree.leaf = vec![0.0; leaves.len()];
        for (i, leaf) in leaves.iter().enumerate() {
            let value = -self.p.learning_rate * leaf.g / (leaf.h + self.p.l2);
            tree.leaf[i] = value;
            let reference = !(i as i32);
            match leaf.parent {
                Some((node, true)) => tree.left[node] = reference,
                Some((node, false)) => tree.right[node] = reference,
                None => {}
            }
            for &r in &self.rows[leaf.start..leaf.end] {
                score[r as usize] += value;
            }
        }
        tree
    }

    /// Splits `leaf` as `split` says: a new internal node, and the two children with their
    /// histograms (the smaller child's counted, the other's by subtraction) and best splits.
    fn split(&mut self, leaf: &mut Leaf, split: Split, gh: &[(f64, f64)], tree: &mut Tree) -> (Leaf, Leaf) {
        let node = tree.feature.len();
        let (column, threshold) = self.bins.node(split.feature, split.bin);
        tree.feature.push(column);
        tree.threshold.push(threshold);
        tree.left.push(0);
        tree.right.push(0);
        match leaf.parent {
            Some((parent, true)) => tree.left[parent] = node as i32,
            Some((parent, false)) => tree.right[parent] = node as i32,
            None => {}
        }
        // A stable partition, without a branch on the data: rows keep their order within each
        // child.
        let (start, end) = (leaf.start, leaf.end);
        let codes = &self.bins.columns[split.feature];
        self.scratch.clear();
        self.scratch.resize(end - start, 0);
        let (mut write, mut spill) = (start, 0);
        for i in start..end {
            let r = self.rows[i];
            let left = self.bins.goes_left(split.feature, split.bin, codes[r as usize]);
            self.rows[write] = r;
            self.scratch[spill] = r;
            write += usize::from(left);
            spill += usize::from(!left);
        }
        self.rows[write..end].copy_from_slice(&self.scratch[..spill]);
        let mid = write;
        let (gl, hl) = (split.g, split.h);
        let child = |start, end, g, h, left| Leaf {
            start,
            end,
            depth: leaf.depth + 1,
            g,
            h,
            hist: Vec::new(),
            best: None,
            parent: Some((node, left)),
        };
        let mut l = child(start, mid, gl, hl, true);
        let mut r = child(mid, end, leaf.g - gl, leaf.h - hl, false);
        let parent_hist = std::mem::take(&mut leaf.hist);
        let (small, large) = if mid - start <= end - mid { (&mut l, &mut r) } else { (&mut r, &mut l) };
        small.hist = self.histogram(small.start, small.end, gh);
        large.hist = parent_hist;
        for (p, s) in large.hist.iter_mut().zip(&small.hist) {
            p.g -= s.g;
            p.h -= s.h;
        }
        let max_depth = self.p.max_depth;
        for c in [&mut l, &mut r] {
            if max_depth == 0 || c.depth < max_depth {
                c.best = self.best_split(c);
            }
        }
        (l, r)
    }

    /// The histogram of rows `rows[start..end]`, inputs split over two threads when it is big.
    /// The leaf's gradients are gathered into row order first (LightGBM's "ordered gradients"),
    /// so each input's pass reads them sequentially and only its bin codes at random.
    fn histogram(&mut self, start: usize, end: usize, gh: &[(f64, f64)]) -> Vec<Bin> {
        let rows = &self.rows[start..end];
        // The root's rows are all rows in order: nothing to gather.
        let ordered: &[(f64, f64)] = if rows.len() == gh.len() {
            gh
        } else {
            self.ordered.clear();
            self.ordered.extend(rows.iter().map(|&r| gh[r as usize]));
            &self.ordered
        };
        let u = self.bins.units.len();
        let (codes, offsets) = (&self.bins.codes, &self.offsets);
        // Even and odd rows into two copies, added at the end: consecutive rows landing in the same
        // bin (common where an input has few bins) do not wait on each other's sums.
        let fill = |rows: &[u32], ordered: &[(f64, f64)]| -> Vec<Bin> {
            let mut even = vec![Bin::default(); self.width];
            let mut odd = vec![Bin::default(); self.width];
            let add = |hist: &mut [Bin], r: u32, (g, h): (f64, f64)| {
                let at = r as usize * u;
                for (&code, &offset) in codes[at..at + u].iter().zip(offsets) {
                    let b = &mut hist[offset + code as usize];
                    b.g += g;
                    b.h += h;
                }
            };
            for (r, p) in rows.chunks_exact(2).zip(ordered.chunks_exact(2)) {
                add(&mut even, r[0], p[0]);
                add(&mut odd, r[1], p[1]);
            }
            if rows.len() % 2 == 1 {
                add(&mut even, rows[rows.len() - 1], ordered[rows.len() - 1]);
            }
            merge(&mut even, &odd);
            even
        };
        if rows.len() < 20_000 {
            return fill(rows, ordered);
        }
        // Two fixed halves of the rows on two threads, added in order: the sums do not depend on
        // the number of cores.
        let mid = rows.len() / 2;
        let (mut first, second) = std::thread::scope(|s| {
            let second = s.spawn(|| fill(&rows[mid..], &ordered[mid..]));
            let first = fill(&rows[..mid], &ordered[..mid]);
            (first, second.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        });
        merge(&mut first, &second);
        first
    }

    /// The split of `leaf` that gains most, if any gains and leaves both sides big enough.
    fn best_split(&self, leaf: &Leaf) -> Option<Split> {
        let (l2, min_n) = (self.p.l2, self.p.min_data_in_leaf);
        let n = (leaf.end - leaf.start) as u32;
        if n < 2 * min_n {
            return None;
        }
        let parent = leaf.g * leaf.g / (leaf.h + l2);
        let per_hessian = f64::from(n) / leaf.h;
        let rows = |h: f64| ((h * per_hessian).round().max(0.0) as u32).min(n);
        let mut best: Option<Split> = None;
        let mut consider = |g: f64, h: f64, feature: usize, bin: usize| {
            let (gr, hr) = (leaf.g - g, leaf.h - h);
            let c = rows(h);
            if c < min_n || n - c < min_n || h < MIN_HESSIAN || hr < MIN_HESSIAN {
                return;
            }
            let gain = g * g / (h + l2) + gr * gr / (hr + l2) - parent;
            if gain > 1e-12 && best.is_none_or(|s| gain > s.gain) {
                best = Some(Split { gain, feature, bin, g, h });
            }
        };
        for j in 0..self.bins.units.len() {
            let hist = &leaf.hist[self.offsets[j]..self.offsets[j] + self.bins.bins(j)];
            if let Unit::OneHot { len, .. } = self.bins.units[j] {
                // Category k against the rest: the rest (its 0 side) goes left, as on its column.
                for (k, bin) in hist[..len].iter().enumerate() {
                    consider(leaf.g - bin.g, leaf.h - bin.h, j, k);
                }
                continue;
            }
            let (mut g, mut h) = (0.0, 0.0);
            for (b, bin) in hist[..hist.len() - 1].iter().enumerate() {
                g += bin.g;
                h += bin.h;
                if n - rows(h) < min_n {
                    break;
                }
                consider(g, h, j, b);
            }
        }
        best
    }
}

/// Adds `other` into `hist`, bin by bin.
fn merge(hist: &mut [Bin], other: &[Bin]) {
    for (a, b) in hist.iter_mut().zip(other) {
        a.g += b.g;
        a.h += b.h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-linear problem a linear model cannot solve: the label is 1 inside a ring.
    fn ring(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let mut x = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let (a, b, noise) = (next(), next(), next());
            x.extend([a, b, noise]);
            let r = (a * a + b * b).sqrt();
            y.push(if (0.3..0.7).contains(&r) { 1.0 } else { 0.0 });
        }
        (x, y)
    }

    fn accuracy(fit: &Fit, x: &[f64], y: &[f64], d: usize) -> f64 {
        let right = y
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                let z = fit.base_score + fit.trees.iter().map(|tr| tr.eval(&x[i * d..(i + 1) * d])).sum::<f64>();
                (sigmoid(z) >= 0.5) == (**t == 1.0)
            })
            .count();
        right as f64 / y.len() as f64
    }

    #[test]
    fn regression_fits_a_non_linear_function() {
        let (x, _) = ring(4000, 3);
        let f = |r: &[f64]| (3.0 * r[0]).sin() * 2.0 + r[1] * r[1];
        let y: Vec<f64> = x.chunks(3).map(f).collect();
        let p = Params { trees: 80, objective: Objective::SquaredError, ..Params::default() };
        let fit = fit(&x, 3, &y, &[], p, |_| {});
        assert!((fit.base_score - y.iter().sum::<f64>() / y.len() as f64).abs() < 1e-12);
        let (tx, _) = ring(1000, 4);
        let (mut se, mut var) = (0.0, 0.0);
        let ty: Vec<f64> = tx.chunks(3).map(f).collect();
        let mean = ty.iter().sum::<f64>() / ty.len() as f64;
        for (row, t) in tx.chunks(3).zip(&ty) {
            let z = fit.base_score + fit.trees.iter().map(|tr| tr.eval(row)).sum::<f64>();
            se += (z - t) * (z - t);
            var += (t - mean) * (t - mean);
        }
        assert!(1.0 - se / var > 0.95, "held-out r2 {}", 1.0 - se / var);
    }

    #[test]
    fn learns_a_non_linear_boundary_and_generalises() {
        let (x, y) = ring(4000, 1);
        let mut seen = 0;
        let fit = fit(&x, 3, &y, &[], Params { trees: 60, ..Params::default() }, |t| seen = t);
        assert_eq!(seen, 60);
        let (tx, ty) = ring(2000, 2);
        let acc = accuracy(&fit, &tx, &ty, 3);
        assert!(acc > 0.93, "held-out accuracy {acc}");
        for t in &fit.trees {
            assert_eq!(t.check(3), Ok(()));
            assert!(t.leaf.len() <= 31);
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_trees() {
        let (x, y) = ring(30_000, 3);
        let p = Params { trees: 5, ..Params::default() };
        assert_eq!(fit(&x, 3, &y, &[], p, |_| {}), fit(&x, 3, &y, &[], p, |_| {}));
    }

    #[test]
    fn limits_hold_depth_leaves_and_leaf_size() {
        let (x, y) = ring(3000, 4);
        let shallow = fit(&x, 3, &y, &[], Params { trees: 3, max_depth: 2, ..Params::default() }, |_| {});
        assert!(shallow.trees.iter().all(|t| t.leaf.len() <= 4));
        let few = fit(&x, 3, &y, &[], Params { trees: 3, num_leaves: 5, ..Params::default() }, |_| {});
        assert!(few.trees.iter().all(|t| t.leaf.len() <= 5));
        let big_leaves = fit(&x, 3, &y, &[], Params { trees: 1, min_data_in_leaf: 1000, ..Params::default() }, |_| {});
        assert!(big_leaves.trees[0].leaf.len() <= 3);
        // One class only: no split gains anything; every tree is a single leaf.
        let flat = fit(&x, 3, &vec![1.0; 3000], &[], Params { trees: 2, ..Params::default() }, |_| {});
        assert!(flat.trees.iter().all(|t| t.feature.is_empty()));
    }

    #[test]
    fn one_hot_columns_binned_as_one_input_split_as_the_columns_do() {
        // Two numeric inputs and a 4-category feature, one-hot in columns 2..6; the label depends
        // on the category and on x0.
        let (ring_x, _) = ring(5000, 5);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..5000 {
            let (a, b) = (ring_x[i * 3], ring_x[i * 3 + 1]);
            let cat = i * 7 % 5; // 4 means none of the 4 columns (an unseen category)
            x.extend([a, b]);
            x.extend((0..4).map(|k| if k == cat { 1.0 } else { 0.0 }));
            y.push(if (cat == 1 || cat == 3) == (a > 0.2) { 1.0 } else { 0.0 });
        }
        let p = Params { trees: 10, ..Params::default() };
        let groups = [std::ops::Range { start: 2, end: 6 }];
        let bundled = fit(&x, 6, &y, &groups, p, |_| {});
        let separate = fit(&x, 6, &y, &[], p, |_| {});
        for (b, s) in bundled.trees.iter().zip(&separate.trees) {
            assert_eq!((&b.feature, &b.threshold), (&s.feature, &s.threshold));
            for (u, v) in b.leaf.iter().zip(&s.leaf) {
                assert!((u - v).abs() < 1e-9, "{u} vs {v}");
            }
        }
        assert!(bundled.trees.iter().any(|t| t.feature.iter().any(|f| (2..6).contains(f))));
        assert!(accuracy(&bundled, &x, &y, 6) > 0.95);
    }

    #[test]
    fn bin_edges_cut_between_distinct_values() {
        assert_eq!(bin_edges(&[1.0, 1.0, 2.0, 4.0], 255), vec![1.5, 3.0]);
        let many: Vec<f64> = (0..1000).map(f64::from).collect();
        let e = bin_edges(&many, 10);
        assert_eq!(e.len(), 9);
        assert!(e.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(e[0], 99.5);
    }
}
