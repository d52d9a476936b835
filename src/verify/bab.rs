//! Branch and bound over one region of a property.
//!
//! A subdomain is an input box plus a set of ReLU phase splits. Each is bounded by
//! back-substitution ([`super::bounds`]); it is closed when some constraint of the region's
//! conjunction is shown positive everywhere on it. Otherwise the vertices that minimise the
//! linear bounds are tried as counterexamples, and the subdomain is split: on the input (the
//! dimension whose halves bound best, by lookahead), for low-dimensional inputs, or on an
//! unstable ReLU chosen by [`Branching`], for high-dimensional ones. A conjunction of several constraints is also
//! closed when their linear bounds have no common point in the box (a small LP). When few ReLUs
//! remain unstable the subdomain is decided exactly: for input splitting by one LP per phase
//! pattern of the unstable neurons, for ReLU splitting by Z3 with the bounds as extra
//! constraints; both need a piecewise-linear network (a network with sigmoid, tanh or products
//! is only ever closed by bounds). A batch of subdomains is a step in three phases (`steps`):
//! plain bounds of each in parallel; the optimised bounds of those still open, as one
//! alpha-beta problem per thread over its share of the batch (one matrix product per affine
//! node for all of them); then each one's counterexample checks and split, in parallel. The
//! regions of a union take turns, and falsification rounds of growing size run between
//! batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::bounds::{
    activation_coefficients, crown_until, joint_minimum, objective_bounds, LayerBounds,
    LinearBound, NeuronSlopes, Phase,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::alpha_beta::{self, AlphaBeta, Warm};
use super::falsify::{confirm, Falsifier};
use super::graph::{Network, Rows};
use super::milp::{self, MilpOutcome};
use super::smt::{self, SmtOutcome, SmtRecord};
use super::spec::{InputBox, Region};

/// Settings of branch and bound.
#[derive(Debug, Clone)]
pub struct BabConfig {
    /// When to give up.
    pub deadline: Instant,
    /// Subdomains bounded together (in parallel).
    pub batch: usize,
    /// Decide a subdomain exactly once at most this many ReLUs are unstable on it.
    pub exact_unstable: usize,
    /// How such a subdomain is decided.
    pub exact: Exact,
    /// Give up on a subdomain (unknown) this many splits deep.
    pub max_depth_limit: usize,
    /// Longest a single Z3 call may take.
    pub smt_timeout: Duration,
    /// Split inputs (true) or ReLUs (false).
    pub input_split: bool,
    /// When splitting inputs, split ReLUs instead on a subdomain with at most this many
    /// unstable neurons (0: never).
    pub relu_switch: usize,
    /// Keep the SMT-LIB of every Z3 query.
    pub record_smt: bool,
    /// Seed of the falsification rounds run between batches (none when `None`). Round `k`
    /// samples `4^k` times more than the default falsifier and starts once the search has run
    /// as long again as before the previous round, so attacks take a bounded share of the time
    /// and grow for the properties that resist a proof.
    pub attack_seed: Option<u64>,
    /// The most of the time the falsification rounds may take (a fraction).
    pub attack_share: f64,
    /// Optimise the linear bounds of a subdomain's constraints (alpha-CROWN slopes, beta
    /// multipliers of its splits) when the plain bounds leave it open.
    pub alpha_beta: Option<AlphaBeta>,
    /// How the ReLU to split is chosen (when splitting ReLUs).
    pub branching: Branching,
}

/// How branch and bound chooses the unstable ReLU to split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Branching {
    /// The largest triangle relaxation, `u (-l) / (u - l)`, wherever the neuron is.
    Area,
    /// BaBSR (Bunel et al. 2020): the bound the neuron's chord costs the constraint closest
    /// to closing, `-lambda u l / (u - l)` for a negative coefficient `lambda` on the
    /// neuron's output in that constraint's back-substitution; ties and neurons the
    /// constraint does not see by the area weighted by `|lambda|`.
    Babsr,
    /// Filtered smart branching (De Palma et al. 2021): the [`FSB_CANDIDATES`] best neurons
    /// by the BaBSR score, each scored by the bound of the constraint closest to closing on its
    /// two children (the other neurons' bounds and the subdomain's optimised slopes and
    /// multipliers unchanged, one back-substitution of one row per child); the neuron whose
    /// worse child bounds best is split.
    Fsb,
}

/// Neurons whose children filtered smart branching bounds before choosing one.
pub const FSB_CANDIDATES: usize = 8;

impl Branching {
    /// Every strategy, by name.
    pub const ALL: [Branching; 3] = [Branching::Babsr, Branching::Fsb, Branching::Area];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Branching::Area => "area",
            Branching::Babsr => "babsr",
            Branching::Fsb => "fsb",
        }
    }

    /// The strategy of a name.
    pub fn parse(name: &str) -> Result<Branching, super::VerifyError> {
        super::setting("branching", &Branching::ALL, Branching::name, name)
    }
}

/// How branch and bound decides a subdomain on which few neurons are unstable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exact {
    /// One mixed-integer program (HiGHS), a binary per unstable neuron ([`super::milp`]).
    Milp,
    /// One LP per phase pattern of the unstable neurons (`2^n` of them).
    Patterns,
    /// Z3 on the linear real arithmetic encoding ([`super::smt`]).
    Z3,
}

impl Exact {
    /// Every method, by name.
    pub const ALL: [Exact; 3] = [Exact::Milp, Exact::Patterns, Exact::Z3];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Exact::Milp => "milp",
            Exact::Patterns => "patterns",
            Exact::Z3 => "z3",
        }
    }

    /// The method of a name.
    pub fn parse(name: &str) -> Result<Exact, super::VerifyError> {
        super::setting("exact", &Exact::ALL, Exact::name, name)
    }

    /// The most unstable neurons a subdomain may have to be decided this way, when splitting
    /// inputs (few inputs, small boxes) or ReLUs. Measured on ACAS Xu and MNIST-FC.
    pub fn limit(self, input_split: bool) -> usize {
        match (self, input_split) {
            (Exact::Milp, true) => 16,
            (Exact::Milp, false) => 12,
            (Exact::Patterns, _) => 6,
            (Exact::Z3, true) => 6,
            (Exact::Z3, false) => 12,
        }
    }
}

/// Counters of a branch-and-bound run.
#[derive(Debug, Default)]
pub struct BabStats {
    /// Subdomains bounded.
    pub domains: AtomicU64,
    /// Z3 calls made.
    pub smt_calls: AtomicU64,
    /// Mixed-integer programs solved.
    pub milp_calls: AtomicU64,
    /// Deepest subdomain reached.
    pub max_depth: AtomicU64,
}

#[derive(Debug, Clone)]
struct Domain {
    input: InputBox,
    splits: Vec<(usize, usize, Phase)>,
    parent: Option<Arc<Vec<LayerBounds>>>,
    /// The parent's linear bounds of the region's constraints: still sound here, and kept
    /// where they are tighter than this subdomain's own (the relaxation is not monotone).
    inherited: Option<Arc<Vec<LinearBound>>>,
    /// The split rule of the search this subdomain belongs to.
    rule: SplitRule,
    /// Whether to choose the input split by lookahead here (the parent's lookahead gained).
    look: bool,
    /// Leading activations whose parent bounds stand (see [`crown_until`]).
    keep: usize,
    /// The parent's optimised slopes and multipliers (alpha-beta bounding).
    warm: Option<Arc<Warm>>,
    /// The root's optimised slopes of the intermediate bounds (alpha-beta bounding; `None`
    /// when splitting inputs).
    slopes: Option<Arc<NeuronSlopes>>,
    depth: usize,
}

enum Step {
    Closed,
    Violated(Vec<f64>),
    Split(Vec<Domain>),
    Unknown(String),
}

/// The answer for a union of regions.
#[derive(Debug, Clone)]
pub enum SpecResult {
    /// No region holds a counterexample.
    Holds,
    /// A confirmed counterexample in the region of that index.
    Violated(usize, Vec<f64>),
    /// Not settled, and why (the first region left open).
    Unknown(String),
}

/// Runs branch and bound on every region of a union at once. Each region keeps its own
/// depth-first stack and the batches take turns between the open regions, so a region that
/// is hard to prove safe does not starve a later region that holds a counterexample.
pub fn solve_regions(
    net: &Network,
    regions: &[Region],
    cfg: &BabConfig,
    stats: &BabStats,
    records: &Mutex<Vec<SmtRecord>>,
) -> SpecResult {
    for (r, region) in regions.iter().enumerate() {
        if let Some(x) = confirm(net, region, &region.input.center()) {
            return SpecResult::Violated(r, x);
        }
    }
    let roots = root_bounds(net, regions, cfg);
    let mut searches = searches_of(regions, &roots, cfg);
    // Each region's constraints as bound-propagation objectives, built once.
    let objectives: Vec<Vec<(Vec<f64>, f64)>> = regions
        .iter()
        .map(|r| {
            r.constraints
                .iter()
                .map(|c| (c.coeffs.clone(), c.constant))
                .collect()
        })
        .collect();
    let mut proven = vec![false; regions.len()];
    let mut attacks = Attacks::new(cfg);
    loop {
        if let Some((r, x)) = attacks.round_if_due(net, regions, &proven, cfg) {
            return SpecResult::Violated(r, x);
        }
        // The open search that has had the least time goes next: the regions share the time,
        // whatever their cost per subdomain.
        let Some(k) = (0..searches.len())
            .filter(|&i| !searches[i].stack.is_empty() && !proven[searches[i].region])
            .min_by_key(|&i| searches[i].spent)
        else {
            break;
        };
        let r = searches[k].region;
        if Instant::now() >= cfg.deadline {
            let open: usize = searches
                .iter()
                .filter(|s| !proven[s.region])
                .map(|s| s.stack.len())
                .sum();
            return SpecResult::Unknown(format!("region {r}: timeout with {open} subdomains open"));
        }
        let search = &mut searches[k];
        let take = cfg.batch.min(search.stack.len());
        let batch: Vec<Domain> = search.stack.split_off(search.stack.len() - take);
        let t0 = Instant::now();
        let steps = steps(net, &regions[r], &objectives[r], batch, cfg, stats, records);
        search.spent += t0.elapsed();
        for s in steps {
            match s {
                Step::Closed => {}
                Step::Violated(x) => return SpecResult::Violated(r, x),
                Step::Split(children) => search.stack.extend(children),
                Step::Unknown(why) => search.unknown = Some(why),
            }
        }
        if search.stack.is_empty() && search.unknown.is_none() {
            proven[r] = true;
        }
    }
    match proven.iter().position(|p| !p) {
        Some(r) => SpecResult::Unknown(format!(
            "region {r}: {}",
            searches
                .iter()
                .find_map(|s| (s.region == r).then(|| s.unknown.clone()).flatten())
                .unwrap_or_default()
        )),
        None => SpecResult::Holds,
    }
}

/// One depth-first search of [`solve_regions`]: a region's open subdomains under one split
/// rule, and the time it has had.
struct Search {
    region: usize,
    stack: Vec<Domain>,
    unknown: Option<String>,
    spent: Duration,
}

/// The bounds of the activations over a root box, and the root's optimised slopes.
type Root = (Arc<Vec<LayerBounds>>, Option<Arc<NeuronSlopes>>);

/// The root bounds of each distinct input box of the regions (`None` past the deadline). The
/// regions of a robustness property share one input box, and the bounds of the activations
/// depend only on the box: computed once, they are every root's parent (its own pass then
/// refines only what is still unstable).
fn root_bounds(
    net: &Network,
    regions: &[Region],
    cfg: &BabConfig,
) -> Vec<(InputBox, Option<Root>)> {
    let mut roots: Vec<(InputBox, Option<Root>)> = Vec::new();
    for region in regions {
        if roots.iter().any(|(b, _)| *b == region.input) {
            continue;
        }
        let root = crown_until(net, &region.input, &[], None, 0, cfg.deadline, None).map(|b| {
            // Optimised slopes tighten the root's intermediate bounds once: every subdomain's
            // bounds are intersected with them, and its later layers are re-bounded with
            // those slopes.
            match &cfg.alpha_beta {
                Some(ab) => {
                    let (b, slopes) = alpha_beta::intermediate_bounds(
                        net,
                        &region.input,
                        b,
                        ab,
                        Some(cfg.deadline),
                    );
                    // Slopes fitted to the root box suit its ReLU-split children (the same
                    // box), not the small boxes of input splitting (measured on ACAS Xu:
                    // slower there than CROWN's adaptive slopes).
                    let slopes = (!cfg.input_split).then(|| Arc::new(slopes));
                    (Arc::new(b), slopes)
                }
                None => (Arc::new(b), None),
            }
        });
        roots.push((region.input.clone(), root));
    }
    roots
}

/// One search per region and split rule, each starting from its region's root. Input
/// splitting is guided by lookahead alone: measured on all 186 ACAS Xu instances, lookahead
/// alone took 65.8 s where a portfolio of lookahead and the static widest-dimension rule
/// taking turns took 114.5 s (the widest rule alone does not close 3_3 or 4_2 prop_2 in 60 s;
/// the portfolio won only 1_1 prop_6, 5.9 s against 9.2 s).
fn searches_of(
    regions: &[Region],
    roots: &[(InputBox, Option<Root>)],
    cfg: &BabConfig,
) -> Vec<Search> {
    let rules: &[SplitRule] = if cfg.input_split {
        &[SplitRule::Lookahead]
    } else {
        &[SplitRule::Widest]
    };
    let root_of = |b: &InputBox| {
        roots
            .iter()
            .find(|(r, _)| r == b)
            .and_then(|(_, p)| p.clone())
    };
    regions
        .iter()
        .enumerate()
        .flat_map(|(r, region)| {
            let (parent, slopes) = match root_of(&region.input) {
                Some((b, s)) => (Some(b), s),
                None => (None, None),
            };
            rules.iter().map(move |&rule| Search {
                region: r,
                stack: vec![Domain {
                    input: region.input.clone(),
                    splits: Vec::new(),
                    parent: parent.clone(),
                    inherited: None,
                    rule,
                    look: true,
                    keep: 0,
                    warm: None,
                    slopes: slopes.clone(),
                    depth: 0,
                }],
                unknown: None,
                spent: Duration::ZERO,
            })
        })
        .collect()
}

/// The falsifier rounds that run between batches of [`solve_regions`] (when the config has
/// an attack seed): each round samples more than the last and the rounds are spaced so that
/// they take at most `attack_share` of the time.
struct Attacks {
    started: Instant,
    next: Instant,
    round: u32,
    rng: ChaCha8Rng,
}

impl Attacks {
    fn new(cfg: &BabConfig) -> Attacks {
        let started = Instant::now();
        Attacks {
            started,
            next: started + Duration::from_secs(2),
            round: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.attack_seed.unwrap_or(0)),
        }
    }

    /// Runs a round on the regions not yet proven if one is due; a confirmed counterexample
    /// and its region, if the round found one.
    fn round_if_due(
        &mut self,
        net: &Network,
        regions: &[Region],
        proven: &[bool],
        cfg: &BabConfig,
    ) -> Option<(usize, Vec<f64>)> {
        if cfg.attack_seed.is_none() || Instant::now() < self.next {
            return None;
        }
        self.round += 1;
        let f = Falsifier::default().scaled(4usize.pow(self.round.min(4)));
        // A round takes at most `attack_share` of the time: on a large network the samples
        // cost more than the bounds.
        let share = cfg.attack_share.clamp(0.0, 0.9);
        let until = (Instant::now() + self.started.elapsed().mul_f64(share / (1.0 - share)))
            .min(cfg.deadline);
        for (r, region) in regions.iter().enumerate() {
            if proven[r] {
                continue;
            }
            if let Some(x) = f.run(net, region, &mut self.rng, until) {
                return Some((r, x));
            }
        }
        self.next = Instant::now() + self.started.elapsed();
        None
    }
}

/// The two halves of a subdomain's box split at the middle of input dimension `j`, one level
/// deeper, with this subdomain's bounds as their parent's and its linear bounds inherited.
fn bisect(
    d: Domain,
    j: usize,
    bounds: &Arc<Vec<LayerBounds>>,
    inherited: &Arc<Vec<LinearBound>>,
) -> (Domain, Domain) {
    let mid = 0.5 * (d.input.lower[j] + d.input.upper[j]);
    let mut lo = d.clone();
    lo.input.upper[j] = mid;
    let mut hi = d;
    hi.input.lower[j] = mid;
    for c in [&mut lo, &mut hi] {
        c.depth += 1;
        c.keep = 0;
        c.parent = Some(bounds.clone());
        c.inherited = Some(inherited.clone());
    }
    (lo, hi)
}

/// How a search picks the input dimension to bisect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitRule {
    /// The dimension whose halves bound best (falling back to `Widest` where no split gains).
    Lookahead,
    /// The dimension widest in absolute times relative width.
    Widest,
}

/// A point of the box where every linear lower bound is `<= 0`, or `None` when there is none
/// (then no input of the box can meet all the constraints they bound). Solved as a small LP;
/// when the solver fails the answer is "maybe" (a point is returned), which is always sound.
fn joint_point(lins: &[LinearBound], b: &InputBox) -> Option<Vec<f64>> {
    match joint_minimum(lins, b) {
        Some((t, x)) => {
            // A margin against the LP's own rounding: only a clearly positive optimum closes.
            let scale = 1.0 + lins.iter().map(|l| l.constant.abs()).fold(0.0, f64::max);
            if t > 1e-9 * scale {
                None
            } else {
                Some(x)
            }
        }
        None => Some(b.center()),
    }
}

/// Decides a box exactly when few ReLUs are unstable on it: for every phase pattern of the
/// unstable neurons the network is affine on the matching part of the box, so the region's
/// constraints and the phases are linear constraints on the input. Each pattern is an LP,
/// solved with a small slack so that rounding can only make it "feasible" (never wrongly
/// "infeasible"). Returns `Some(None)` when every pattern is infeasible (the box is safe),
/// `Some(Some(x))` with a confirmed counterexample, and `None` when an LP point does not
/// survive the f64 re-check.
fn phase_enumeration(
    net: &Network,
    region: &Region,
    b: &InputBox,
    bounds: &[LayerBounds],
) -> Option<Option<Vec<f64>>> {
    use good_lp::{variable, Expression, ProblemVariables, Solution, SolverModel};
    let unstable: Vec<(usize, usize)> = bounds
        .iter()
        .enumerate()
        .filter(|(k, _)| net.splittable(*k))
        .flat_map(|(k, lb)| {
            (0..lb.lower.len())
                .filter(move |&i| lb.lower[i] < 0.0 && lb.upper[i] > 0.0)
                .map(move |i| (k, i))
        })
        .collect();
    let d = b.dim();
    let nodes = net.nodes();
    let mut undecided = false;
    for pattern in 0u64..(1u64 << unstable.len()) {
        // Affine forms (rows: coefficients over x, then the constant) node by node; the
        // pre-activations of unstable neurons give the phase constraints.
        let mut forms: Vec<Rows> = Vec::with_capacity(nodes.len());
        let mut input = Rows::zeros(d, d + 1);
        for j in 0..d {
            input.row_mut(j)[j] = 1.0;
        }
        forms.push(input);
        let mut phase_rows: Vec<(Vec<f64>, bool)> = Vec::new();
        for (id, node) in nodes.iter().enumerate().skip(1) {
            let k = net.activation_of(id);
            let phase = |i: usize| -> Option<bool> {
                let k = k?;
                let pos = unstable.iter().position(|&u| u == (k, i))?;
                Some(pattern >> pos & 1 == 1)
            };
            let args: Vec<&Rows> = node.inputs.iter().map(|&i| &forms[i]).collect();
            let out =
                node.op
                    .rules()
                    .forms(&args, k.map(|k| &bounds[k]), &phase, &mut phase_rows)?;
            forms.push(out);
        }
        let forms = forms.pop().expect("nodes");
        let mut vars = ProblemVariables::new();
        let xs: Vec<_> = (0..d)
            .map(|j| vars.add(variable().min(b.lower[j]).max(b.upper[j])))
            .collect();
        let lin = |row: &[f64]| -> Expression {
            xs.iter().zip(row).map(|(&x, &c)| c * x).sum::<Expression>() + row[d]
        };
        let slack = 1e-7;
        let mut model = vars.minimise(Expression::from(0.0)).using(good_lp::microlp);
        for (row, on) in &phase_rows {
            let scale = 1.0 + row.iter().map(|v| v.abs()).sum::<f64>();
            let e = lin(row);
            model = if *on {
                model.with(e.geq(-slack * scale))
            } else {
                model.with(e.leq(slack * scale))
            };
        }
        for c in &region.constraints {
            let row = forms.combine(&c.coeffs, c.constant);
            let scale = 1.0 + row.iter().map(|v| v.abs()).sum::<f64>();
            model = model.with(lin(&row).leq(slack * scale));
        }
        match model.solve() {
            Ok(sol) => {
                let x: Vec<f64> = xs
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| sol.value(x).clamp(b.lower[j], b.upper[j]))
                    .collect();
                match confirm(net, region, &x) {
                    Some(cex) => return Some(Some(cex)),
                    None => undecided = true,
                }
            }
            Err(good_lp::ResolutionError::Infeasible) => {}
            Err(_) => undecided = true,
        }
    }
    if undecided {
        None
    } else {
        Some(None)
    }
}

/// The input dimension whose bisection gives the children with the best worst bound: each
/// dimension is tried, both halves bounded, and the dimension maximising the smaller of the
/// two children's best constraint bound wins (a closed child counts as +infinity).
fn lookahead_dim(
    net: &Network,
    region: &Region,
    d: &Domain,
    bounds: &[LayerBounds],
    objectives: &[(Vec<f64>, f64)],
    lins: &[LinearBound],
    deadline: Instant,
) -> Option<(usize, bool)> {
    let b = &d.input;
    // How close a box is to closing, from linear bounds of the constraints over it.
    let score = |child: &[LinearBound], c: &InputBox| -> f64 {
        let single = child
            .iter()
            .map(|l| l.lower)
            .fold(f64::NEG_INFINITY, f64::max);
        if child.len() > 1 && single <= 0.0 {
            // A conjunction closes when its bounds have no common point: score by how far
            // the best common point is from that.
            joint_minimum(child, c).map_or(single, |(t, _)| t.max(single))
        } else {
            single
        }
    };
    let child_score = |c: &InputBox| -> f64 {
        match crown_until(
            net,
            c,
            &d.splits,
            Some(bounds),
            0,
            deadline,
            d.slopes.as_deref(),
        ) {
            None => f64::INFINITY,
            Some(cb) => score(
                &tightest(objective_bounds(net, c, &cb, objectives), Some(lins), c),
                c,
            ),
        }
    };
    let here = score(lins, b);
    let scored: Vec<(usize, f64)> = (0..b.dim())
        .filter(|&j| b.upper[j] > b.lower[j])
        .map(|j| {
            let mid = 0.5 * (b.lower[j] + b.upper[j]);
            let mut lo = b.clone();
            lo.upper[j] = mid;
            let mut hi = b.clone();
            hi.lower[j] = mid;
            (j, child_score(&lo).min(child_score(&hi)))
        })
        .collect();
    let best = scored.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
    // Without a real gain a split that changes nothing ties with every other: then the width
    // rule decides, so that no narrow dimension is cut again and again for a rounding-level
    // gain; among equal best scores it breaks the tie.
    let gains = best > here + 0.01 * here.abs().max(1e-9);
    scored
        .iter()
        .filter(|s| !gains || s.1 == best)
        .max_by(|x, y| split_width(region, b, x.0).total_cmp(&split_width(region, b, y.0)))
        .map(|s| (s.0, gains))
}

/// The width rule's score of dimension `p`: its width in absolute times relative (to the
/// region's) terms.
fn split_width(region: &Region, b: &InputBox, p: usize) -> f64 {
    let full = region.input.upper[p] - region.input.lower[p];
    let own = b.upper[p] - b.lower[p];
    if full > 0.0 {
        own * own / full
    } else {
        0.0
    }
}

/// The static split rule: the dimension with the largest [`split_width`].
fn widest_dim(region: &Region, b: &InputBox) -> Option<usize> {
    (0..b.dim())
        .filter(|&p| b.upper[p] > b.lower[p])
        .max_by(|&p, &q| split_width(region, b, p).total_cmp(&split_width(region, b, q)))
}

/// This subdomain's own linear bounds, each replaced by the ancestor's (re-bounded over `b`)
/// where that one is tighter: the relaxation is not monotone under splitting.
fn tightest(
    own: Vec<LinearBound>,
    inherited: Option<&[LinearBound]>,
    b: &InputBox,
) -> Vec<LinearBound> {
    let Some(old) = inherited else {
        return own;
    };
    own.into_iter()
        .zip(old)
        .map(|(own, old)| {
            let old = old.on(b);
            if old.lower > own.lower {
                old
            } else {
                own
            }
        })
        .collect()
}

/// Decides a subdomain on which few neurons are unstable by the configured exact method.
/// `None` leaves it to be split further (a point that failed the f64 re-check, undecided
/// patterns, or HiGHS stopping at its limit); Z3's give-ups end the subdomain as unknown. A
/// program too large for [`milp::FORM_BUDGET`] goes to Z3.
fn decide_exactly(
    net: &Network,
    region: &Region,
    b: &InputBox,
    bounds: &[LayerBounds],
    cfg: &BabConfig,
    stats: &BabStats,
    records: &Mutex<Vec<SmtRecord>>,
) -> Option<Step> {
    let left = cfg.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Some(Step::Unknown("timeout".into()));
    }
    match cfg.exact {
        Exact::Patterns => match phase_enumeration(net, region, b, bounds)? {
            Some(x) => Some(Step::Violated(x)),
            None => Some(Step::Closed),
        },
        Exact::Milp => {
            let out = milp::decide(net, region, b, bounds, left.min(cfg.smt_timeout));
            if !matches!(out, MilpOutcome::TooLarge(_)) {
                stats.milp_calls.fetch_add(1, Ordering::Relaxed);
            }
            match out {
                MilpOutcome::Infeasible => Some(Step::Closed),
                MilpOutcome::Violated(x) => Some(Step::Violated(x)),
                MilpOutcome::Unknown(_) => None,
                MilpOutcome::TooLarge(_) => Some(decide_by_z3(
                    net, region, b, bounds, left, cfg, stats, records,
                )),
            }
        }
        Exact::Z3 => Some(decide_by_z3(
            net, region, b, bounds, left, cfg, stats, records,
        )),
    }
}

/// [`decide_exactly`] by Z3, with `left` of the run's time.
#[allow(clippy::too_many_arguments)]
fn decide_by_z3(
    net: &Network,
    region: &Region,
    b: &InputBox,
    bounds: &[LayerBounds],
    left: Duration,
    cfg: &BabConfig,
    stats: &BabStats,
    records: &Mutex<Vec<SmtRecord>>,
) -> Step {
    stats.smt_calls.fetch_add(1, Ordering::Relaxed);
    let sub = Region {
        input: b.clone(),
        constraints: region.constraints.clone(),
    };
    let (out, rec) = smt::solve(
        net,
        &sub,
        Some(bounds),
        left.min(cfg.smt_timeout),
        cfg.record_smt,
    );
    if let Some(r) = rec {
        records.lock().expect("records lock").push(r);
    }
    match out {
        SmtOutcome::Unsat => Step::Closed,
        SmtOutcome::Sat(x) => Step::Violated(x),
        SmtOutcome::Unknown(why) => Step::Unknown(format!("Z3: {why}")),
    }
}

/// A subdomain after its plain bounds: closed, or open with its activation bounds and the
/// linear bounds of the region's constraints.
enum Bounded {
    Done(Step),
    Open {
        d: Domain,
        bounds: Vec<LayerBounds>,
        lins: Vec<LinearBound>,
        /// Its optimised parameters, once alpha-beta has run on it.
        warm: Option<Arc<Warm>>,
    },
}

/// Whether some constraint `c . y + k <= 0` (or `< 0`) of the region cannot hold anywhere on
/// the subdomain by these linear bounds of its constraints.
fn closes(lins: &[LinearBound], region: &Region) -> bool {
    lins.iter()
        .zip(&region.constraints)
        .any(|(lin, c)| lin.lower > 0.0 || (c.strict && lin.lower >= 0.0))
}

/// The plain bounds of subdomain `d`: its activations' (from its parent's, re-bounding what
/// its split changes) and its constraints' (CROWN, or its parent's where tighter).
fn bound(
    net: &Network,
    region: &Region,
    objectives: &[(Vec<f64>, f64)],
    d: Domain,
    cfg: &BabConfig,
    stats: &BabStats,
) -> Bounded {
    stats.domains.fetch_add(1, Ordering::Relaxed);
    stats.max_depth.fetch_max(d.depth as u64, Ordering::Relaxed);
    // A root's parent is the bounds of its own box, computed once for all regions.
    let bounds = match (&d.parent, d.depth) {
        (Some(root), 0) => Some(root.as_ref().clone()),
        _ => crown_until(
            net,
            &d.input,
            &d.splits,
            d.parent.as_deref().map(|v| v.as_slice()),
            d.keep,
            cfg.deadline,
            d.slopes.as_deref(),
        ),
    };
    let Some(bounds) = bounds else {
        return Bounded::Done(Step::Closed); // the splits contradict each other here
    };
    let lins = tightest(
        objective_bounds(net, &d.input, &bounds, objectives),
        d.inherited.as_deref().map(|v| v.as_slice()),
        &d.input,
    );
    if closes(&lins, region) {
        return Bounded::Done(Step::Closed);
    }
    Bounded::Open {
        d,
        bounds,
        lins,
        warm: None,
    }
}

/// One batch of subdomains of a region: plain bounds of each (in parallel), then the
/// optimised bounds of those still open (alpha-beta-CROWN, all of a part of the batch in one
/// optimisation, a part per thread), then each one's counterexample checks and split.
fn steps(
    net: &Network,
    region: &Region,
    objectives: &[(Vec<f64>, f64)],
    batch: Vec<Domain>,
    cfg: &BabConfig,
    stats: &BabStats,
    records: &Mutex<Vec<SmtRecord>>,
) -> Vec<Step> {
    let mut bounded: Vec<Bounded> = batch
        .into_par_iter()
        .map(|d| bound(net, region, objectives, d, cfg, stats))
        .collect();
    if let Some(ab) = &cfg.alpha_beta {
        let mut open: Vec<&mut Bounded> = bounded
            .iter_mut()
            .filter(|b| matches!(b, Bounded::Open { .. }))
            .collect();
        let size = open
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .max(1);
        open.par_chunks_mut(size).for_each(|part| {
            let subs: Vec<alpha_beta::Subdomain> = part
                .iter()
                .filter_map(|b| match &**b {
                    Bounded::Open {
                        d, bounds, lins, ..
                    } => Some(alpha_beta::Subdomain {
                        b: &d.input,
                        act_bounds: bounds,
                        splits: &d.splits,
                        objectives,
                        start: lins.clone(),
                        warm: d.warm.as_deref(),
                        // From the parent's parameters, a few steps go as far as many from
                        // scratch.
                        steps: if d.warm.is_some() {
                            ab.steps.div_ceil(2)
                        } else {
                            ab.steps
                        },
                    }),
                    Bounded::Done(_) => None,
                })
                .collect();
            let Some(found) = alpha_beta::objective_bounds_batch(net, subs, ab, Some(cfg.deadline))
            else {
                return;
            };
            for (b, (better, w)) in part.iter_mut().zip(found) {
                if let Bounded::Open { lins, warm, .. } = &mut **b {
                    *lins = better;
                    *warm = Some(Arc::new(w));
                }
            }
        });
    }
    bounded
        .into_par_iter()
        .map(|b| match b {
            Bounded::Done(step) => step,
            Bounded::Open { lins, .. } if closes(&lins, region) => Step::Closed,
            Bounded::Open {
                d,
                bounds,
                lins,
                warm,
            } => split(
                net, region, objectives, d, bounds, lins, warm, cfg, stats, records,
            ),
        })
        .collect()
}

/// The rest of a step on an open subdomain: counterexample checks at the points its bounds
/// point to, an exact decision when few neurons are unstable, else its children.
#[allow(clippy::too_many_arguments)]
fn split(
    net: &Network,
    region: &Region,
    objectives: &[(Vec<f64>, f64)],
    d: Domain,
    bounds: Vec<LayerBounds>,
    lins: Vec<LinearBound>,
    warm: Option<Arc<Warm>>,
    cfg: &BabConfig,
    stats: &BabStats,
    records: &Mutex<Vec<SmtRecord>>,
) -> Step {
    if lins.len() > 1 {
        // No single constraint is positive everywhere; the linear bounds may still have no
        // common zero-or-below point in the box (a small LP decides).
        match joint_point(&lins, &d.input) {
            None => return Step::Closed,
            Some(x) => {
                if let Some(cex) = confirm(net, region, &x) {
                    return Step::Violated(cex);
                }
            }
        }
    }
    for lin in &lins {
        let x = lin.minimizer(&d.input);
        if let Some(cex) = confirm(net, region, &x) {
            return Step::Violated(cex);
        }
    }
    if let Some(cex) = confirm(net, region, &d.input.center()) {
        return Step::Violated(cex);
    }
    // Unstable ReLUs and undecided maxima.
    let unstable = net.undecided(&bounds);
    // Exact decisions need a piecewise-linear network; smooth ones are only ever closed by
    // bounds, which tighten as the input box shrinks.
    let exact = net.is_piecewise_linear();
    if d.depth >= cfg.max_depth_limit && (unstable > cfg.exact_unstable || !exact) {
        return Step::Unknown(if exact {
            format!(
                "a subdomain {} splits deep still has {unstable} unstable neurons",
                d.depth
            )
        } else {
            format!(
                "a subdomain {} splits deep is still open (smooth nodes are only relaxed)",
                d.depth
            )
        });
    }
    if exact && unstable <= cfg.exact_unstable {
        if let Some(decided) = decide_exactly(net, region, &d.input, &bounds, cfg, stats, records) {
            return decided;
        }
    }
    // The constraint closest to closing the subdomain guides the split.
    let best = lins
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.lower.total_cmp(&b.1.lower))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let bounds = Arc::new(bounds);
    let inherited = Arc::new(lins.clone());
    // Input splitting narrows the relaxations of every neuron at once; once few neurons are
    // unstable on a box, splitting them decides it sooner (and near-tight boxes are never
    // closed by bisection alone).
    if cfg.input_split && unstable > cfg.relu_switch {
        let lin = &lins[best];
        // Bisect the dimension whose halves bound best (a one-step lookahead: every
        // dimension is tried, 2n bound passes). Measured on ACAS Xu against the width rule:
        // 6 to 300 times fewer subdomains on the instances it suits. It is skipped below a
        // subdomain where it gained nothing, and tried again every fourth level.
        let chosen = if d.rule == SplitRule::Lookahead && (d.look || d.depth % 4 == 0) {
            lookahead_dim(net, region, &d, &bounds, objectives, &lins, cfg.deadline)
        } else {
            widest_dim(region, &d.input).map(|j| (j, false))
        };
        let Some((j, gained)) = chosen else {
            return Step::Unknown("the input box has no width left to split".into());
        };
        let (mut lo, mut hi) = bisect(d, j, &bounds, &inherited);
        lo.look = gained;
        hi.look = gained;
        lo.warm = warm.clone();
        hi.warm = warm;
        // The half holding the minimising vertex is explored first (pushed last).
        if lin.coeffs[j] >= 0.0 {
            Step::Split(vec![hi, lo])
        } else {
            Step::Split(vec![lo, hi])
        }
    } else {
        let pick = choose_relu(
            net,
            &d,
            bounds.as_slice(),
            objectives,
            best,
            warm.as_deref(),
            cfg,
        );
        let Some((k, i)) = pick else {
            // With no neuron left unstable an exact decision has already failed here (a point
            // off by rounding): a network of few inputs bisects on, others give up.
            if exact && unstable == 0 && !cfg.input_split {
                return Step::Unknown("no unstable neuron left to split".into());
            }
            // Smooth nodes and maxima have no phases to split: bisecting the input narrows
            // their relaxations instead (the ReLU phases fixed so far stay with both halves).
            let Some(j) = widest_dim(region, &d.input) else {
                return Step::Unknown(
                    "no unstable ReLU left to split and no input width left; the relaxations \
                     of the smooth nodes leave the bound open"
                        .into(),
                );
            };
            let (mut lo, mut hi) = bisect(d, j, &bounds, &inherited);
            lo.warm = warm.clone();
            hi.warm = warm;
            return Step::Split(vec![lo, hi]);
        };
        let children = [Phase::Inactive, Phase::Active]
            .into_iter()
            .map(|phase| {
                let mut c = d.clone();
                c.splits.push((k, i, phase));
                c.depth += 1;
                c.keep = k + 1;
                c.warm = warm.clone();
                c.parent = Some(bounds.clone());
                c.inherited = Some(inherited.clone());
                c
            })
            .collect();
        Step::Split(children)
    }
}

/// The unstable ReLU `(activation, neuron)` to split on subdomain `d` (its bounds `bounds`,
/// its optimised parameters `warm`), by `cfg.branching`, guided by constraint `best` (the
/// closest to closing); `None` when no neuron is unstable.
fn choose_relu(
    net: &Network,
    d: &Domain,
    bounds: &[LayerBounds],
    objectives: &[(Vec<f64>, f64)],
    best: usize,
    warm: Option<&Warm>,
    cfg: &BabConfig,
) -> Option<(usize, usize)> {
    let coefficients = match cfg.branching {
        Branching::Babsr | Branching::Fsb => {
            activation_coefficients(net, bounds, &objectives[best].0)
        }
        Branching::Area => Vec::new(),
    };
    // The best candidates by score, best first.
    let mut candidates: Vec<(usize, usize, f64)> = Vec::new();
    let keep = match cfg.branching {
        Branching::Fsb => FSB_CANDIDATES,
        _ => 1,
    };
    for (k, lb) in bounds
        .iter()
        .enumerate()
        .filter(|(k, _)| net.splittable(*k))
    {
        let lam = coefficients.get(k).and_then(|c| c.as_deref());
        for i in 0..lb.lower.len() {
            let (l, u) = (lb.lower[i], lb.upper[i]);
            if l < 0.0 && u > 0.0 {
                let area = u * (-l) / (u - l);
                let score = match (cfg.branching, lam) {
                    (Branching::Area, _) => area,
                    (Branching::Babsr | Branching::Fsb, None) => 0.0,
                    (Branching::Babsr | Branching::Fsb, Some(lam)) => {
                        (-lam[i]).max(0.0) * area + 1e-3 * lam[i].abs() * area
                    }
                };
                if candidates.len() < keep || score > candidates[keep - 1].2 {
                    let at = candidates.partition_point(|c| c.2 >= score);
                    candidates.insert(at, (k, i, score));
                    candidates.truncate(keep);
                }
            }
        }
    }
    let pick = if candidates.len() > 1 {
        // Each candidate's worse child, bounded with the other neurons' bounds as they are.
        let child_bound = |k: usize, i: usize, phase: Phase| {
            let mut child = bounds.to_vec();
            match phase {
                Phase::Active => child[k].lower[i] = 0.0,
                Phase::Inactive => child[k].upper[i] = 0.0,
            }
            alpha_beta::row_bound(net, &d.input, &child, &d.splits, objectives, best, warm)
        };
        candidates
            .iter()
            .map(|&(k, i, _)| {
                let worse =
                    child_bound(k, i, Phase::Inactive).min(child_bound(k, i, Phase::Active));
                (k, i, worse)
            })
            .reduce(|a, b| if b.2 > a.2 { b } else { a })
    } else {
        candidates.first().copied()
    };
    pick.map(|(k, i, _)| (k, i))
}
