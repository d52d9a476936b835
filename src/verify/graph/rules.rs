//! The rules every operator of the verifier's graph gives, in one trait: a new operator is one
//! new implementation of [`Rules`], and no engine matches on operator kinds.

use z3::ast::Real;

use super::zonotope::Zonotope;
use crate::verify::bounds::LayerBounds;

/// `n` linear functions over a tensor of `dim` elements: row-major coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Number of functions.
    pub n: usize,
    /// Elements of the tensor they are functions of.
    pub dim: usize,
    /// `n * dim` coefficients, row-major.
    pub data: Vec<f64>,
}

impl Rows {
    /// `n` zero functions over `dim` elements.
    pub fn zeros(n: usize, dim: usize) -> Rows {
        Rows {
            n,
            dim,
            data: vec![0.0; n * dim],
        }
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Row `r`, mutable.
    pub fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Points as columns: one row per element, one column per point (the layout of
    /// [`Rules::forward_columns`]).
    pub fn from_columns(points: &[Vec<f64>], dim: usize) -> Rows {
        let mut out = Rows::zeros(dim, points.len());
        for (p, v) in points.iter().enumerate() {
            out.set_column(p, v);
        }
        out
    }

    /// Column `p`.
    pub fn column(&self, p: usize) -> Vec<f64> {
        (0..self.n).map(|i| self.data[i * self.dim + p]).collect()
    }

    /// Writes `v` into column `p`.
    pub fn set_column(&mut self, p: usize, v: &[f64]) {
        for (i, &vi) in v.iter().enumerate() {
            self.data[i * self.dim + p] = vi;
        }
    }

    /// The linear combination `sum_j coeffs[j] row(j)`, plus `constant` in the last column
    /// (rows whose last column is their constant).
    pub fn combine(&self, coeffs: &[f64], constant: f64) -> Vec<f64> {
        let mut out = vec![0.0; self.dim];
        for (j, a) in coeffs.iter().enumerate() {
            if *a != 0.0 {
                for (o, v) in out.iter_mut().zip(self.row(j)) {
                    *o += a * v;
                }
            }
        }
        if let Some(last) = out.last_mut() {
            *last += constant;
        }
        out
    }

    /// The rows cut into consecutive parts of `sizes` rows each (summing to `n`).
    pub fn split_rows(&self, sizes: &[usize]) -> Vec<Rows> {
        let mut at = 0;
        sizes
            .iter()
            .map(|&n| {
                let part = Rows {
                    n,
                    dim: self.dim,
                    data: self.data[at * self.dim..(at + n) * self.dim].to_vec(),
                };
                at += n;
                part
            })
            .collect()
    }

    /// The rows of `parts` one after another (all over the same `dim`).
    pub fn stack(parts: &[&Rows]) -> Rows {
        let dim = parts.first().map_or(0, |p| p.dim);
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            debug_assert_eq!(p.dim, dim);
            data.extend_from_slice(&p.data);
        }
        Rows {
            n: parts.iter().map(|p| p.n).sum(),
            dim,
            data,
        }
    }

    /// Adds `other` into `self` (same shape).
    pub fn add_assign(&mut self, other: &Rows) {
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a += b;
        }
    }
}

/// What an exact encoding builds on: a Z3 solver and fresh names.
pub struct Z3Encoding<'a> {
    /// The solver the constraints go into.
    pub solver: &'a z3::Solver,
    /// The node being encoded (names its variables).
    pub node: usize,
}

impl Z3Encoding<'_> {
    /// A fresh real variable for element `i` of this node.
    pub fn var(&self, prefix: &str, i: usize) -> Real {
        Real::new_const(format!("{prefix}{}_{i}", self.node))
    }
}

/// The sense of a [`MilpRow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sense {
    /// `<= 0`.
    Le,
    /// `>= 0`.
    Ge,
}

/// One constraint of a mixed-integer encoding: `form . (columns, 1) + sum c_b d_b` against 0,
/// over the encoding's columns (constant last) and its binary variables.
#[derive(Debug, Clone, PartialEq)]
pub struct MilpRow {
    /// Coefficients over the columns, the constant last.
    pub form: Vec<f64>,
    /// Binary variables (by index) and their coefficients.
    pub binaries: Vec<(usize, f64)>,
    /// Against zero.
    pub sense: Sense,
}

/// What a mixed-integer encoding builds on. Every node's value is a [`Rows`] of affine forms
/// over the encoding's columns: the network's inputs first, then one column per element a
/// nonlinear node leaves between linear pieces (its output, a variable of the program), then
/// the constant. Linear nodes are their [`Rules::forms`]; the constraints and binary variables
/// gather here and go to the solver at the end.
pub struct MilpEncoding {
    /// Columns in all, the constant included.
    pub cols: usize,
    /// Bounds of every column but the constant (the inputs' box first).
    pub column_bounds: Vec<(f64, f64)>,
    /// Binary variables so far.
    pub binaries: usize,
    /// Constraints so far.
    pub rows: Vec<MilpRow>,
}

impl MilpEncoding {
    /// An encoding over an input box, with room for `extra` columns of nonlinear elements.
    pub fn new(lower: &[f64], upper: &[f64], extra: usize) -> MilpEncoding {
        let mut column_bounds: Vec<(f64, f64)> =
            lower.iter().copied().zip(upper.iter().copied()).collect();
        column_bounds.reserve(extra);
        MilpEncoding {
            cols: lower.len() + extra + 1,
            column_bounds,
            binaries: 0,
            rows: Vec::new(),
        }
    }

    /// The forms of the network's inputs: column `j` for input `j`.
    pub fn input_forms(&self) -> Rows {
        let d = self.column_bounds.len();
        let mut r = Rows::zeros(d, self.cols);
        for j in 0..d {
            r.row_mut(j)[j] = 1.0;
        }
        r
    }

    /// A new column within `[lo, hi]`, or `None` when the room reserved is used up.
    pub fn column(&mut self, lo: f64, hi: f64) -> Option<usize> {
        let c = self.column_bounds.len();
        if c + 1 >= self.cols {
            return None;
        }
        self.column_bounds.push((lo, hi));
        Some(c)
    }

    /// A new binary variable.
    pub fn binary(&mut self) -> usize {
        self.binaries += 1;
        self.binaries - 1
    }

    /// The form of column `c` alone.
    pub fn unit(&self, c: usize) -> Vec<f64> {
        let mut f = vec![0.0; self.cols];
        f[c] = 1.0;
        f
    }

    /// Adds `form + sum binaries` against zero.
    pub fn require(&mut self, form: Vec<f64>, binaries: Vec<(usize, f64)>, sense: Sense) {
        self.rows.push(MilpRow {
            form,
            binaries,
            sense,
        });
    }

    /// Adds `form >= lo` and `form <= hi` (either skipped when infinite).
    pub fn within(&mut self, form: &[f64], lo: f64, hi: f64) {
        let k = self.cols - 1;
        if lo.is_finite() {
            let mut f = form.to_vec();
            f[k] -= lo;
            self.require(f, Vec::new(), Sense::Ge);
        }
        if hi.is_finite() {
            let mut f = form.to_vec();
            f[k] -= hi;
            self.require(f, Vec::new(), Sense::Le);
        }
    }
}

/// `a - b`, element-wise.
pub fn minus(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// A bound widened outward by a relative `1e-9`, so that the big-M constants built from sound
/// bounds stay valid under the solver's own rounding.
pub fn widen(lower: f64, upper: f64) -> (f64, f64) {
    let pad = |v: f64| 1e-9 * (1.0 + v.abs());
    (lower - pad(lower), upper + pad(upper))
}

/// The phase of element `i` of a piecewise-linear node fixed by a pattern, for the exact
/// per-pattern LPs: `Some(true)` active, `Some(false)` inactive, `None` when the bounds decide.
pub type PhaseOf<'a> = &'a dyn Fn(usize) -> Option<bool>;

/// Why a node's inputs do not fit its operator (the builder adds the node's name and kind).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SizeError(pub String);

/// One operator's whole meaning for the verifier.
///
/// Soundness contract: `interval` and `back` must hold for every input within the given
/// bounds; `forms`, `z3` and `milp` must be exact (they return `None` when the operator has no
/// exact piecewise-linear encoding); `milp` may be looser than exact only by admitting more
/// points (a tolerance), never fewer.
pub trait Rules {
    /// The output size for these input sizes, or what does not fit.
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, SizeError>;

    /// The plain forward pass in f64.
    fn forward(&self, x: &[&[f64]]) -> Vec<f64>;

    /// The forward pass of many points at once: each input holds one row per element and one
    /// column per point (the layout of a zonotope's rows), and so does the output. Operators
    /// whose forward pass is a matrix product override it with one blocked product over all
    /// the points (a falsifier's samples, the linearised networks of alpha-CROWN's rows).
    fn forward_columns(&self, x: &[&Rows]) -> Rows {
        let points = x.first().map_or(0, |r| r.dim);
        let ys: Vec<Vec<f64>> = (0..points)
            .map(|p| {
                let cols: Vec<Vec<f64>> = x.iter().map(|r| r.column(p)).collect();
                let args: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
                self.forward(&args)
            })
            .collect();
        Rows::from_columns(&ys, ys.first().map_or(0, Vec::len))
    }

    /// Adds the gradient of `g . y` with respect to each input into `grads[k]` (a ReLU's
    /// derivative at 0 taken as 0).
    fn gradient(&self, x: &[&[f64]], g: &[f64], grads: &mut [Vec<f64>]);

    /// Interval bounds of the output from those of the inputs.
    fn interval(&self, lo: &[&[f64]], hi: &[&[f64]]) -> (Vec<f64>, Vec<f64>);

    /// Back-substitution: given linear functions `lam` of the output (plus `consts`), returns
    /// functions of each input (and updates `consts`) that bound them from below wherever the
    /// inputs lie within `bounds` (the concatenated bounds of the inputs, for nodes that
    /// [`need_bounds`](Rules::need_bounds)).
    fn back(&self, lam: Rows, consts: &mut [f64], bounds: Option<&LayerBounds>) -> Vec<Rows>;

    /// Back-substitution with the lower slope of each unstable element a free parameter, the
    /// relaxation alpha-CROWN optimises: `slopes` holds one slope in [0, 1] per row and
    /// element (row-major, like `lam`). Sound for any such slopes. `None` for a node without
    /// such a relaxation; a node that need not be relaxed returns its [`back`](Rules::back).
    fn back_with_slopes(
        &self,
        lam: Rows,
        consts: &mut [f64],
        bounds: Option<&LayerBounds>,
        slopes: &[f64],
    ) -> Option<Vec<Rows>> {
        let _ = slopes;
        (!self.need_bounds()).then(|| self.back(lam, consts, bounds))
    }

    /// The forward pass of the linear functions [`back_with_slopes`](Rules::back_with_slopes)
    /// chose for one row, whose coefficients on this node's output were `lam_row` (and its
    /// slopes `slopes_row`): carried from the input vertex where that row's bound is reached,
    /// it gives the values whose products with the row's coefficients are the bound's
    /// gradient in the slopes. A node that need not be relaxed is its plain forward pass.
    fn relaxed_forward(
        &self,
        x: &[&[f64]],
        bounds: Option<&LayerBounds>,
        lam_row: &[f64],
        slopes_row: &[f64],
    ) -> Option<Vec<f64>> {
        let _ = (bounds, lam_row, slopes_row);
        (!self.need_bounds()).then(|| self.forward(x))
    }

    /// The output's [`Zonotope`] from the inputs' (DeepZ): exact for affine maps and joins; a
    /// nonlinearity gives each element a [`Band`] around a line, valid wherever the inputs lie
    /// within `bounds` (for nodes that [`need_bounds`](Rules::need_bounds)), and new noise
    /// symbols are numbered from `symbols`. `None` when the operator has no such rule: the
    /// engine then uses the output's interval, one new symbol per element.
    fn zonotope(
        &self,
        x: &[&Zonotope],
        bounds: Option<&LayerBounds>,
        symbols: &mut usize,
    ) -> Option<Zonotope> {
        let _ = (x, bounds, symbols);
        None
    }

    /// Multiply-adds of carrying one linear function back through the node, given its output
    /// size (what the engines budget work by).
    fn cost(&self, out_dim: usize) -> usize {
        out_dim
    }

    /// Whether the node relaxes a nonlinearity, so its inputs' bounds are kept.
    fn need_bounds(&self) -> bool {
        false
    }

    /// Whether interval arithmetic is exact for this node applied to a box (a single affine
    /// map: each output's extremes are reached at a vertex chosen for it alone).
    fn exact_on_box(&self) -> bool {
        false
    }

    /// Whether branch and bound may split this node's elements into two linear phases.
    fn splittable(&self) -> bool {
        false
    }

    /// Whether the node is piecewise linear, so that its exact encodings (`forms`, `z3`)
    /// decide it.
    fn piecewise_linear(&self) -> bool {
        self.splittable()
    }

    /// How many of its elements the input bounds leave between linear pieces (for the engines'
    /// choice between exact decisions and splitting).
    fn undecided(&self, bounds: &LayerBounds) -> usize {
        let _ = bounds;
        0
    }

    /// Exact affine forms of the output (rows of coefficients over the network's input and a
    /// constant, `dim = inputs + 1`) from those of the inputs; for a piecewise-linear node the
    /// phase of each element comes from `phase` (or its bounds) and the constraint of each
    /// pattern-fixed element is pushed to `phase_rows` as `(pre-activation form, active)`.
    /// `None` when the operator is not piecewise linear.
    fn forms(
        &self,
        x: &[&Rows],
        bounds: Option<&LayerBounds>,
        phase: PhaseOf<'_>,
        phase_rows: &mut Vec<(Vec<f64>, bool)>,
    ) -> Option<Rows> {
        let _ = (x, bounds, phase, phase_rows);
        None
    }

    /// The exact encoding in Z3 (linear real arithmetic), using the bounds to fix stable
    /// elements; `None` when the operator has none.
    fn z3(
        &self,
        x: &[&[Real]],
        bounds: Option<&LayerBounds>,
        enc: &Z3Encoding,
    ) -> Option<Vec<Real>> {
        let _ = (x, bounds, enc);
        None
    }

    /// The exact encoding as a mixed-integer linear program: the output's affine forms over
    /// the encoding's columns from the inputs', with constraints and binary variables added
    /// to `enc`. An element the bounds leave between linear pieces gets a column, binary
    /// variables and big-M constraints from those bounds (which must then be finite). Linear
    /// nodes are their [`forms`](Rules::forms); a node that relaxes a nonlinearity must give
    /// its own encoding, or `None` when it has none.
    fn milp(
        &self,
        x: &[&Rows],
        bounds: Option<&LayerBounds>,
        enc: &mut MilpEncoding,
    ) -> Option<Rows> {
        if self.need_bounds() {
            return None;
        }
        let _ = enc;
        self.forms(x, bounds, &|_| None, &mut Vec::new())
    }
}
