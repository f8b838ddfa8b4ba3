//! Gradient-boosted decision trees for binary classification (log-loss) and regression (squared
//! error), written here rather than taken from a crate.
//!
//! The method is LightGBM's: every input is cut into at most 255 bins once, each tree is grown
//! leaf by leaf (always splitting the leaf whose best split gains most) from per-leaf histograms of
//! gradient and hessian sums, and a child's histogram is the parent's minus its sibling's, so only
//! the smaller child is ever counted. Leaves are Newton steps, `-G / (H + l2)`, shrunk by the
//! learning rate. Gradients and hessians are quantised to integers, as in LightGBM 4's
//! `use_quantized_grad`, but finely (thousands of steps, not four): a histogram bin is one 8-byte
//! integer holding both sums, so histograms stay in the L1 cache.
//!
//! Why not a crate: forust-ml and perpetual are fine libraries but each run must be bit-identical
//! on any worker. Here the sums that choose splits are integers, exact in any order, and every
//! other sum has a fixed order (ties broken by the lowest feature, bin and leaf); work is split
//! into two fixed halves whatever the core count; so the same inputs and parameters give the same
//! trees everywhere. Nothing is sampled, so there is no seed to carry.

use std::ops::Range;

use mlops_shared::model::Tree;

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
/// Leaves with fewer rows are counted and partitioned on one thread: a thread costs more.
const PARALLEL_ROWS: usize = 6_000;

/// Fits on `x` (row-major, `d` columns) and labels `y` (0/1 for [`Objective::Binary`]). `one_hot` names the column ranges that
/// one-hot encode one feature (at most one 1 per row): each is binned as one input whose bins are
/// its categories, LightGBM's exclusive feature bundling, which counts a row once per feature
/// instead of once per category and splits exactly as on the separate columns. `progress` hears
/// of each finished tree.
pub fn fit(x: &[f64], d: usize, y: &[f64], one_hot: &[Range<usize>], p: Params, progress: impl FnMut(u32)) -> Fit {
    debug_assert_eq!(x.len(), y.len() * d);
    fit_rows(d, y, &|i, out| out.extend_from_slice(&x[i * d..(i + 1) * d]), one_hot, p, progress)
}

/// A source of input rows: `row(i, out)` appends row `i`'s inputs to `out`.
pub type Rows<'a> = dyn Fn(usize, &mut Vec<f64>) + Sync + 'a;

/// [`fit`] on rows read one at a time, for `y.len()` rows of `d` inputs: each row is binned as it
/// is read, so the inputs are never held whole — a byte per input and row instead of eight.
pub fn fit_rows(
    d: usize,
    y: &[f64],
    row: &Rows,
    one_hot: &[Range<usize>],
    p: Params,
    progress: impl FnMut(u32),
) -> Fit {
    let binner = Binner::new(row, y.len(), d, one_hot, p.max_bins);
    fit_binned(&Binned::new(binner, row, y.len(), d), y, p, progress)
}

/// [`fit`] on rows already binned, `y.len()` of them.
pub(crate) fn fit_binned(bins: &Binned, y: &[f64], p: Params, mut progress: impl FnMut(u32)) -> Fit {
    let n = y.len();
    debug_assert_eq!(bins.n, n);
    let mean = y.iter().sum::<f64>() / n.max(1) as f64;
    let base_score = match p.objective {
        Objective::Binary => {
            let mean = mean.clamp(1e-12, 1.0 - 1e-12);
            (mean / (1.0 - mean)).ln()
        }
        Objective::SquaredError => mean,
    };
    let mut score = vec![base_score; n];
    let mut packed = vec![0; n];
    let mut trees = Vec::with_capacity(p.trees as usize);
    let mut grower = Grower::new(bins, p);
    for t in 0..p.trees {
        let scale = Scale::gradients(p.objective, &score, y, &mut packed);
        let tree = grower.grow(&packed, scale, &mut score);
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
pub(crate) struct Binned {
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
    /// `n` rows of `d` inputs from `row`, coded by `binner` on two threads.
    fn new(binner: Binner, row: &Rows, n: usize, d: usize) -> Self {
        let u = binner.units.len();
        let mut codes = vec![0u8; n * u];
        let half = n / 2;
        let (first, second) = codes.split_at_mut(half * u);
        let code = |out: &mut [u8], from: usize| {
            let mut values = Vec::with_capacity(d);
            for (i, o) in out.chunks_exact_mut(u).enumerate() {
                values.clear();
                row(from + i, &mut values);
                binner.code(&values, o);
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| code(second, half));
            code(first, 0);
        });
        Self::from_codes(binner, codes)
    }

    /// Rows coded by `binner` already, row-major (`Binner::units` codes a row).
    pub(crate) fn from_codes(binner: Binner, codes: Vec<u8>) -> Self {
        let u = binner.units.len();
        let n = codes.len() / u.max(1);
        // Also column by column, on two threads.
        let column = |j: usize| -> Vec<u8> { codes.iter().skip(j).step_by(u).copied().collect() };
        let columns = std::thread::scope(|s| {
            let second = s.spawn(|| (u / 2..u).map(column).collect::<Vec<_>>());
            let mut columns: Vec<_> = (0..u / 2).map(column).collect();
            columns.extend(second.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            columns
        });
        Self { n, units: binner.units, codes, columns, edges: binner.edges }
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

/// How each row's inputs become bin codes: the units, and numeric units' bin edges, placed on a
/// sample of the rows.
pub(crate) struct Binner {
    units: Vec<Unit>,
    edges: Vec<Vec<f64>>,
}

impl Binner {
    /// One-hot groups become one unit each (categories beyond 255 stay numeric columns); the
    /// edges come from a strided sample of at most [`BIN_SAMPLE`] rows, sorted on two threads.
    pub(crate) fn new(row: &Rows, n: usize, d: usize, one_hot: &[Range<usize>], max_bins: u32) -> Self {
        let max_bins = max_bins.clamp(2, 256) as usize;
        let mut units = Vec::new();
        let mut j = 0;
        while j < d {
            match one_hot.iter().find(|g| g.start == j && g.len() < 256 && g.end <= d) {
                Some(g) => {
                    units.push(Unit::OneHot { first: j, len: g.len() });
                    j = g.end;
                }
                None => {
                    units.push(Unit::Numeric { column: j });
                    j += 1;
                }
            }
        }
        let stride = n.div_ceil(BIN_SAMPLE).max(1);
        let mut samples: Vec<Vec<f64>> = units.iter().map(|_| Vec::with_capacity(n / stride + 1)).collect();
        let mut values = Vec::with_capacity(d);
        for i in (0..n).step_by(stride) {
            values.clear();
            row(i, &mut values);
            for (unit, sample) in units.iter().zip(&mut samples) {
                if let Unit::Numeric { column } = unit {
                    sample.push(values[*column]);
                }
            }
        }
        let edges_of = |sample: &mut Vec<f64>| {
            sample.sort_unstable_by(f64::total_cmp);
            bin_edges(sample, max_bins)
        };
        let edges = std::thread::scope(|s| {
            let (a, b) = samples.split_at_mut(units.len() / 2);
            let b = s.spawn(|| b.iter_mut().map(edges_of).collect::<Vec<_>>());
            let mut edges: Vec<_> = a.iter_mut().map(edges_of).collect();
            edges.extend(b.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            edges
        });
        Self { units, edges }
    }

    /// How many codes a row has.
    pub(crate) fn units(&self) -> usize {
        self.units.len()
    }

    /// Writes `row`'s bin codes, a unit each, into `out`.
    pub(crate) fn code(&self, row: &[f64], out: &mut [u8]) {
        for ((unit, edges), o) in self.units.iter().zip(&self.edges).zip(out) {
            *o = match *unit {
                Unit::Numeric { column } => edges.partition_point(|t| *t < row[column]) as u8,
                Unit::OneHot { first, len } => (0..len).find(|&k| row[first + k] > 0.5).unwrap_or(len) as u8,
            };
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

/// A row's gradient and hessian, quantised to integers and packed in one: the gradient in the
/// high 32 bits (signed), the hessian (never negative) in the low 32. Adding two packed values adds
/// both at once, so a histogram bin is one 8-byte integer, half the memory of two `f64` sums, and
/// integer sums are exact in any order. It is LightGBM 4's quantised training
/// (`use_quantized_grad`), with more levels: `Scale::of` picks as many as the row count allows.
type Packed = i64;

/// A leaf's histogram: 256 bins per unit, whatever the unit's bin count, so that a `u8` code
/// indexes its unit's bins with no bounds check in the hottest loop.
type Histogram = Vec<[Packed; 256]>;

/// The gradient and hessian sums a packed sum holds, in quantisation steps.
fn unpack(p: Packed) -> (i64, i64) {
    let h = p & 0xFFFF_FFFF;
    ((p - h) >> 32, h)
}

/// What one quantisation step of the gradient and of the hessian is worth, for one tree.
#[derive(Clone, Copy, Debug)]
struct Scale {
    g: f64,
    h: f64,
}

impl Scale {
    /// Each row's gradient and hessian of the loss at its `score`, quantised into `packed`, to the
    /// nearest step. The steps are as fine as they can be while no sum over all rows can overflow
    /// its 31 bits: 2,684 of them each side of zero for 800,000 rows, 127 for 16 million, against
    /// the largest value there can be (LightGBM rounds to 4 steps, stochastically; with this many,
    /// rounding to the nearest grows the trees of exact sums, and needs no random draws).
    fn gradients(objective: Objective, score: &[f64], y: &[f64], packed: &mut [Packed]) -> Self {
        let levels = (i32::MAX as usize / y.len().max(1)).clamp(1, 1 << 20) as f64;
        let g_max = match objective {
            // |p - y| < 1 and p (1 - p) <= 1/4.
            Objective::Binary => 1.0,
            Objective::SquaredError => score.iter().zip(y).fold(0.0f64, |m, (s, t)| m.max((s - t).abs())),
        };
        let h_max = if objective == Objective::Binary { 0.25 } else { 1.0 };
        let scale = Self { g: g_max.max(f64::MIN_POSITIVE) / levels, h: h_max / levels };
        let (g_step, h_step) = (1.0 / scale.g, 1.0 / scale.h);
        let quantise = |out: &mut [Packed], score: &[f64], y: &[f64]| {
            for ((o, &s), &t) in out.iter_mut().zip(score).zip(y) {
                let (g, h) = match objective {
                    Objective::Binary => {
                        let prob = logistic(s);
                        (prob - t, prob * (1.0 - prob))
                    }
                    Objective::SquaredError => (s - t, 1.0),
                };
                // To the nearest step (`as` truncates towards zero, after the half step added).
                let (gq, hq) = ((g * g_step + 0.5f64.copysign(g)) as i64, (h * h_step + 0.5) as i64);
                *o = (gq << 32) + hq;
            }
        };
        let half = y.len() / 2;
        let (a, b) = packed.split_at_mut(half);
        std::thread::scope(|s| {
            s.spawn(|| quantise(b, &score[half..], &y[half..]));
            quantise(a, &score[..half], &y[..half]);
        });
        scale
    }

    /// A packed sum in the gradient's and hessian's own units.
    fn real(self, p: Packed) -> (f64, f64) {
        let (g, h) = unpack(p);
        (g as f64 * self.g, h as f64 * self.h)
    }
}

/// The logistic function to within 1e-8, about three times as fast as [`sigmoid`], for
/// gradients only: they are quantised to far coarser steps. `e^-|z|` is `2^k e^r` with
/// `|r| <= ln 2 / 2` and `e^r` a Taylor polynomial of degree 7 (relative error below 6e-9).
fn logistic(z: f64) -> f64 {
    let a = (-z.abs()).max(-700.0);
    // The nearest integer to a / ln 2 (`as` truncates towards zero, and a <= 0).
    let k = (a * std::f64::consts::LOG2_E - 0.5) as i64;
    let r = a - k as f64 * std::f64::consts::LN_2;
    let p = 1.0
        + r * (1.0 + r / 2.0 * (1.0 + r / 3.0 * (1.0 + r / 4.0 * (1.0 + r / 5.0 * (1.0 + r / 6.0 * (1.0 + r / 7.0))))));
    let e = p * f64::from_bits(((k + 1023) as u64) << 52);
    let s = 1.0 / (1.0 + e);
    if z >= 0.0 { s } else { e * s }
}

/// The best split of a leaf, with its left side's sums.
#[derive(Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    left: Packed,
}

/// A leaf being grown: its rows are `rows[start..end]`.
struct Leaf {
    start: usize,
    end: usize,
    depth: u32,
    sum: Packed,
    hist: Histogram,
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
    /// Histograms no leaf holds any more, for the next ones.
    spare: Vec<Histogram>,
}

impl<'b> Grower<'b> {
    fn new(bins: &'b Binned, p: Params) -> Self {
        Self { bins, p, rows: Vec::new(), scratch: Vec::new(), spare: Vec::new() }
    }

    /// Grows one tree on the quantised gradients `packed` and adds its output to `score`. Splits
    /// and leaf values (Newton steps) are both taken from the quantised sums.
    fn grow(&mut self, packed: &[Packed], scale: Scale, score: &mut [f64]) -> Tree {
        let n = self.bins.n;
        self.rows.clear();
        self.rows.extend(0..n as u32);
        let mut root = Leaf {
            start: 0,
            end: n,
            depth: 0,
            sum: packed.iter().sum(),
            hist: self.histogram(0, n, packed),
            best: None,
            parent: None,
        };
        root.best = self.best_split(&root, scale);
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
            let (left, right) = self.split(&mut leaves[at], split, packed, scale, &mut tree);
            leaves[at] = left;
            leaves.push(right);
        }
        // Leaf values, where the tree points at each leaf.
        tree.leaf = vec![0.0; leaves.len()];
        for (i, leaf) in leaves.iter().enumerate() {
            let (g, h) = scale.real(leaf.sum);
            // A leaf whose rows are all predicted with certainty has no curvature: it moves none.
            let value = if h + self.p.l2 > 0.0 { -self.p.learning_rate * g / (h + self.p.l2) } else { 0.0 };
            tree.leaf[i] = value;
            let reference = !(i as i32);
            match leaf.parent {
                Some((node, true)) => tree.left[node] = reference,
                Some((node, false)) => tree.right[node] = reference,
                None => {}
            }
        }
        // Each row's score moved by its leaf's value: rows below `half` on this thread, the
        // others on a second one (a leaf's rows are in order, so each side is a slice of them).
        let half = score.len() / 2;
        let (low, high) = score.split_at_mut(half);
        let (rows, values) = (&self.rows, &tree.leaf);
        let apply = |score: &mut [f64], high: bool| {
            for (leaf, value) in leaves.iter().zip(values) {
                let rows = &rows[leaf.start..leaf.end];
                let cut = rows.partition_point(|&r| (r as usize) < half);
                let (rows, first) = if high { (&rows[cut..], half) } else { (&rows[..cut], 0) };
                for &r in rows {
                    score[r as usize - first] += value;
                }
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| apply(high, true));
            apply(low, false);
        });
        self.spare.extend(leaves.into_iter().map(|l| l.hist));
        tree
    }

    /// Splits `leaf` as `split` says: a new internal node, and the two children with their
    /// histograms (the smaller child's counted, the other's by subtraction) and best splits.
    fn split(
        &mut self,
        leaf: &mut Leaf,
        split: Split,
        packed: &[Packed],
        scale: Scale,
        tree: &mut Tree,
    ) -> (Leaf, Leaf) {
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
        let (start, end) = (leaf.start, leaf.end);
        let mut left = [false; 256];
        for (code, l) in left.iter_mut().enumerate() {
            *l = self.bins.goes_left(split.feature, split.bin, code as u8);
        }
        self.scratch.resize(self.bins.n, 0);
        let mid =
            start + partition(&mut self.rows[start..end], &mut self.scratch, &self.bins.columns[split.feature], &left);
        let child = |start, end, sum, left| Leaf {
            start,
            end,
            depth: leaf.depth + 1,
            sum,
            hist: Vec::new(),
            best: None,
            parent: Some((node, left)),
        };
        let mut l = child(start, mid, split.left, true);
        let mut r = child(mid, end, leaf.sum - split.left, false);
        let parent_hist = std::mem::take(&mut leaf.hist);
        let (small, large) = if mid - start <= end - mid { (&mut l, &mut r) } else { (&mut r, &mut l) };
        small.hist = self.histogram(small.start, small.end, packed);
        large.hist = parent_hist;
        for (p, s) in large.hist.iter_mut().flatten().zip(small.hist.iter().flatten()) {
            *p -= s;
        }
        let max_depth = self.p.max_depth;
        for c in [&mut l, &mut r] {
            if max_depth == 0 || c.depth < max_depth {
                c.best = self.best_split(c, scale);
            }
        }
        (l, r)
    }

    /// The histogram of rows `rows[start..end]`, its rows split over two threads when there are
    /// many. Each row's codes are read together (row-major), with its packed gradient.
    fn histogram(&mut self, start: usize, end: usize, packed: &[Packed]) -> Histogram {
        let threads = if end - start < PARALLEL_ROWS { 1 } else { 2 };
        // Buffers taken here, not in the threads: a spawned thread's allocations live in an arena
        // of its own, handed back to the kernel when it ends and faulted in again the next time.
        let mut buffers: Vec<Histogram> = (0..threads).map(|_| self.buffer()).collect();
        let rows = &self.rows[start..end];
        let u = self.bins.units.len();
        let codes = &self.bins.codes;
        let fill = |rows: &[u32], hist: &mut Histogram| {
            for &r in rows {
                let (at, p) = (r as usize * u, packed[r as usize]);
                for (bins, &code) in hist.iter_mut().zip(&codes[at..at + u]) {
                    bins[code as usize] += p;
                }
            }
        };
        match buffers.as_mut_slice() {
            [only] => fill(rows, only),
            // Two halves of the rows on two threads; integer sums, so the result is the same on
            // any number of cores.
            [first, second] => std::thread::scope(|s| {
                let (a, b) = rows.split_at(rows.len() / 2);
                s.spawn(|| fill(b, second));
                fill(a, first);
            }),
            _ => {}
        }
        let mut hist = buffers.swap_remove(0);
        for other in buffers {
            merge(&mut hist, &other);
            self.spare.push(other);
        }
        hist
    }

    /// A zeroed histogram, from the spares of earlier leaves when there are any.
    fn buffer(&mut self) -> Histogram {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b.resize(self.bins.units.len(), [0; 256]);
        b
    }

    /// The split of `leaf` that gains most, if any gains and leaves both sides big enough. Gains
    /// are measured on the quantised sums; a side's row count is estimated from its hessian sum,
    /// in proportion to the leaf's, as LightGBM does.
    fn best_split(&self, leaf: &Leaf, scale: Scale) -> Option<Split> {
        let (l2, min_n) = (self.p.l2, self.p.min_data_in_leaf);
        let n = (leaf.end - leaf.start) as u32;
        let (leaf_g, leaf_h) = scale.real(leaf.sum);
        if n < 2 * min_n || leaf_h <= 0.0 {
            return None;
        }
        let parent = leaf_g * leaf_g / (leaf_h + l2);
        let per_hessian = f64::from(n) / leaf_h;
        let rows = |h: f64| ((h * per_hessian).round().max(0.0) as u32).min(n);
        let mut best: Option<Split> = None;
        let mut consider = |left: Packed, feature: usize, bin: usize| {
            let (g, h) = scale.real(left);
            let (gr, hr) = (leaf_g - g, leaf_h - h);
            let c = rows(h);
            if c < min_n || n - c < min_n || h < MIN_HESSIAN || hr < MIN_HESSIAN {
                return;
            }
            let gain = g * g / (h + l2) + gr * gr / (hr + l2) - parent;
            if gain > 1e-12 && best.is_none_or(|s| gain > s.gain) {
                best = Some(Split { gain, feature, bin, left });
            }
        };
        for j in 0..self.bins.units.len() {
            let hist = &leaf.hist[j][..self.bins.bins(j)];
            if let Unit::OneHot { len, .. } = self.bins.units[j] {
                // Category k against the rest: the rest (its 0 side) goes left, as on its column.
                for (k, bin) in hist[..len].iter().enumerate() {
                    consider(leaf.sum - bin, j, k);
                }
                continue;
            }
            let mut left = 0;
            for (b, bin) in hist[..hist.len() - 1].iter().enumerate() {
                left += bin;
                if n - rows(scale.real(left).1) < min_n {
                    break;
                }
                consider(left, j, b);
            }
        }
        best
    }
}

/// Moves `rows` whose code is `left` before the others, keeping their order on each side, and
/// says how many went left. Two halves on two threads when there are many.
fn partition(rows: &mut [u32], scratch: &mut [u32], codes: &[u8], left: &[bool; 256]) -> usize {
    // Without a branch on the data: each row is written to both sides, and one side advances.
    let one = |rows: &mut [u32], scratch: &mut [u32]| {
        let (mut write, mut spill) = (0, 0);
        for i in 0..rows.len() {
            let r = rows[i];
            let l = left[codes[r as usize] as usize];
            rows[write] = r;
            scratch[spill] = r;
            write += usize::from(l);
            spill += usize::from(!l);
        }
        rows[write..].copy_from_slice(&scratch[..spill]);
        write
    };
    if rows.len() < PARALLEL_ROWS {
        return one(rows, scratch);
    }
    let mid = rows.len() / 2;
    let (first, second) = rows.split_at_mut(mid);
    let (scratch_first, scratch_second) = scratch.split_at_mut(mid);
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| one(second, scratch_second));
        (one(first, scratch_first), b.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    // [left a, right a, left b, right b] to [left a, left b, right a, right b].
    rows[a..mid + b].rotate_left(mid - a);
    a + b
}

/// Adds `other` into `hist`, bin by bin.
fn merge(hist: &mut Histogram, other: &Histogram) {
    for (a, b) in hist.iter_mut().flatten().zip(other.iter().flatten()) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_shared::model::sigmoid;

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
    fn a_partition_on_two_threads_is_the_stable_partition() {
        for n in [0, 7, PARALLEL_ROWS - 1, PARALLEL_ROWS + 1, 50_001] {
            let codes: Vec<u8> = (0..n).map(|i| (i * 7919 % 251) as u8).collect();
            let mut left = [false; 256];
            for (c, l) in left.iter_mut().enumerate() {
                *l = c % 3 == 0 || c > 200;
            }
            // Every other row, as in a leaf below the root.
            let mut rows: Vec<u32> = (0..n as u32).step_by(2).collect();
            let (want_left, want_right): (Vec<u32>, Vec<u32>) =
                rows.iter().partition(|&&r| left[codes[r as usize] as usize]);
            let mut scratch = vec![0; rows.len()];
            let cut = partition(&mut rows, &mut scratch, &codes, &left);
            assert_eq!((cut, &rows[..cut], &rows[cut..]), (want_left.len(), &want_left[..], &want_right[..]));
        }
    }

    #[test]
    fn the_fast_logistic_function_is_within_1e_8() {
        for i in -80_000..=80_000 {
            let z = f64::from(i) / 100.0;
            assert!((logistic(z) - sigmoid(z)).abs() < 1e-8, "{z}");
        }
        assert_eq!((logistic(1e300), logistic(0.0)), (1.0, 0.5));
        assert!(logistic(-1e300) < 1e-300 && logistic(f64::NEG_INFINITY) < 1e-300);
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
