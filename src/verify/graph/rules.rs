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

/// The phase of element `i` of a piecewise-linear node fixed by a pattern, for the exact
/// per-pattern LPs: `Some(true)` active, `Some(false)` inactive, `None` when the bounds decide.
pub type PhaseOf<'a> = &'a dyn Fn(usize) -> Option<bool>;

/// One operator's whole meaning for the verifier.
///
/// Soundness contract: `interval` and `back` must hold for every input within the given
/// bounds; `forms` and `z3` must be exact (they return `None` when the operator has no exact
/// piecewise-linear encoding).
pub trait Rules {
    /// The output size for these input sizes, or what does not fit.
    fn out_dim(&self, inputs: &[usize]) -> Result<usize, String>;

    /// The plain forward pass in f64.
    fn forward(&self, x: &[&[f64]]) -> Vec<f64>;

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
}
