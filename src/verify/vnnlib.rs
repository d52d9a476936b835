//! VNN-LIB as VNN-COMP uses it: `declare-const` of `X_i` and `Y_j` (Real), and `assert`s of
//! `<=`, `>=`, `<`, `>`, `=` over linear terms (`+`, `-`, `*` by a constant), combined with
//! `and` and `or`. The assertions are brought to disjunctive normal form; each conjunction
//! splits into bounds on single inputs (an input box) and linear constraints over the outputs,
//! which is a [`Region`] of the unsafe set.

use std::collections::BTreeMap;

use super::spec::{InputBox, OutputConstraint, Region, Spec};
use super::ParseError;

/// An S-expression with the position where it starts.
#[derive(Debug, Clone)]
enum Sexp {
    Atom(String, Pos),
    List(Vec<Sexp>, Pos),
}

#[derive(Debug, Clone, Copy)]
struct Pos {
    line: usize,
    col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

impl Sexp {
    fn pos(&self) -> Pos {
        match self {
            Sexp::Atom(_, p) | Sexp::List(_, p) => *p,
        }
    }
}

fn parse_sexps(text: &str) -> Result<Vec<Sexp>, ParseError> {
    let mut stack: Vec<(Vec<Sexp>, Pos)> = Vec::new();
    let mut top = Vec::new();
    let mut chars = text.char_indices().peekable();
    let (mut line, mut col) = (1, 0);
    let mut atom = String::new();
    let mut atom_pos = Pos { line: 1, col: 1 };
    let flush =
        |atom: &mut String, pos: Pos, stack: &mut Vec<(Vec<Sexp>, Pos)>, top: &mut Vec<Sexp>| {
            if !atom.is_empty() {
                let a = Sexp::Atom(std::mem::take(atom), pos);
                match stack.last_mut() {
                    Some((v, _)) => v.push(a),
                    None => top.push(a),
                }
            }
        };
    while let Some((_, c)) = chars.next() {
        col += 1;
        let here = Pos { line, col };
        match c {
            ';' => {
                flush(&mut atom, atom_pos, &mut stack, &mut top);
                for (_, c2) in chars.by_ref() {
                    if c2 == '\n' {
                        line += 1;
                        col = 0;
                        break;
                    }
                }
            }
            '(' => {
                flush(&mut atom, atom_pos, &mut stack, &mut top);
                stack.push((Vec::new(), here));
            }
            ')' => {
                flush(&mut atom, atom_pos, &mut stack, &mut top);
                let (items, pos) = stack
                    .pop()
                    .ok_or_else(|| ParseError(format!("{here}: ')' without a matching '('")))?;
                let l = Sexp::List(items, pos);
                match stack.last_mut() {
                    Some((v, _)) => v.push(l),
                    None => top.push(l),
                }
            }
            c if c.is_whitespace() => {
                flush(&mut atom, atom_pos, &mut stack, &mut top);
                if c == '\n' {
                    line += 1;
                    col = 0;
                }
            }
            c => {
                if atom.is_empty() {
                    atom_pos = here;
                }
                atom.push(c);
            }
        }
    }
    flush(&mut atom, atom_pos, &mut stack, &mut top);
    if let Some((_, pos)) = stack.last() {
        return Err(ParseError(format!(
            "{pos}: '(' is never closed (the file may be truncated)"
        )));
    }
    Ok(top)
}

/// A variable of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Var {
    X(usize),
    Y(usize),
}

/// A linear term: coefficients and a constant.
#[derive(Debug, Clone, Default)]
struct Term {
    coeffs: BTreeMap<Var, f64>,
    constant: f64,
}

impl Term {
    fn scale(mut self, k: f64) -> Term {
        self.coeffs.values_mut().for_each(|v| *v *= k);
        self.constant *= k;
        self
    }

    fn add(mut self, other: Term) -> Term {
        for (v, c) in other.coeffs {
            *self.coeffs.entry(v).or_insert(0.0) += c;
        }
        self.constant += other.constant;
        self
    }

    fn is_constant(&self) -> bool {
        self.coeffs.values().all(|c| *c == 0.0)
    }
}

/// `term <= 0` or `term < 0`.
#[derive(Debug, Clone)]
struct Atom {
    term: Term,
    strict: bool,
}

/// The conjunction of two formulas in DNF (every pair of their cases), or `None` past
/// 100,000 cases.
fn conjoin(a: &[Vec<Atom>], b: &[Vec<Atom>]) -> Option<Vec<Vec<Atom>>> {
    if a.len().saturating_mul(b.len()) > 100_000 {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|c| b.iter().map(move |e| c.iter().chain(e).cloned().collect()))
            .collect(),
    )
}

struct Parser {
    vars: BTreeMap<String, Var>,
}

impl Parser {
    fn term(&self, e: &Sexp) -> Result<Term, ParseError> {
        match e {
            Sexp::Atom(a, pos) => {
                if let Some(v) = self.vars.get(a) {
                    let mut t = Term::default();
                    t.coeffs.insert(*v, 1.0);
                    return Ok(t);
                }
                let x: f64 = a.parse().map_err(|_| {
                    format!("{pos}: '{a}' is neither a declared variable nor a number")
                })?;
                if !x.is_finite() {
                    return Err(ParseError(format!("{pos}: '{a}' is not a finite number")));
                }
                Ok(Term {
                    constant: x,
                    ..Term::default()
                })
            }
            Sexp::List(items, pos) => {
                let (head, args) = match items.split_first() {
                    Some((Sexp::Atom(h, _), rest)) => (h.as_str(), rest),
                    _ => {
                        return Err(ParseError(format!(
                            "{pos}: expected an operator such as +, - or *"
                        )))
                    }
                };
                let terms = args
                    .iter()
                    .map(|a| self.term(a))
                    .collect::<Result<Vec<_>, _>>()?;
                match (head, terms.len()) {
                    ("+", n) if n >= 1 => Ok(terms.into_iter().fold(Term::default(), Term::add)),
                    ("-", 1) => Ok(terms.into_iter().next().expect("one").scale(-1.0)),
                    ("-", n) if n >= 2 => {
                        let mut it = terms.into_iter();
                        let first = it.next().expect("two");
                        Ok(it.fold(first, |acc, t| acc.add(t.scale(-1.0))))
                    }
                    ("*", n) if n >= 2 => {
                        let mut acc = Term {
                            constant: 1.0,
                            ..Term::default()
                        };
                        for t in terms {
                            if acc.is_constant() {
                                acc = t.scale(acc.constant);
                            } else if t.is_constant() {
                                acc = acc.scale(t.constant);
                            } else {
                                return Err(ParseError(format!(
                                    "{pos}: a product of two variables is not linear"
                                )));
                            }
                        }
                        Ok(acc)
                    }
                    (op, _) => Err(ParseError(format!(
                        "{pos}: unsupported term operator '{op}' with {} argument(s)",
                        args.len()
                    ))),
                }
            }
        }
    }

    /// A formula in disjunctive normal form: a list of conjunctions.
    fn formula(&self, e: &Sexp) -> Result<Vec<Vec<Atom>>, ParseError> {
        let Sexp::List(items, pos) = e else {
            return Err(ParseError(format!(
                "{}: expected a formula in parentheses",
                e.pos()
            )));
        };
        let (head, args) = match items.split_first() {
            Some((Sexp::Atom(h, _), rest)) => (h.as_str(), rest),
            _ => {
                return Err(ParseError(format!(
                    "{pos}: expected and, or, <=, >=, <, > or ="
                )))
            }
        };
        match head {
            "and" => {
                let mut acc: Vec<Vec<Atom>> = vec![Vec::new()];
                for a in args {
                    acc = conjoin(&acc, &self.formula(a)?).ok_or_else(|| {
                        ParseError(format!("{pos}: the formula is too large to expand"))
                    })?;
                }
                Ok(acc)
            }
            "or" => {
                let mut out = Vec::new();
                for a in args {
                    out.extend(self.formula(a)?);
                }
                Ok(out)
            }
            "<=" | ">=" | "<" | ">" | "=" => {
                if args.len() != 2 {
                    return Err(ParseError(format!(
                        "{pos}: '{head}' takes two terms, has {}",
                        args.len()
                    )));
                }
                let (l, r) = (self.term(&args[0])?, self.term(&args[1])?);
                let le = l.clone().add(r.clone().scale(-1.0)); // l - r
                let ge = r.add(l.scale(-1.0)); // r - l
                Ok(vec![match head {
                    "<=" => vec![Atom {
                        term: le,
                        strict: false,
                    }],
                    "<" => vec![Atom {
                        term: le,
                        strict: true,
                    }],
                    ">=" => vec![Atom {
                        term: ge,
                        strict: false,
                    }],
                    ">" => vec![Atom {
                        term: ge,
                        strict: true,
                    }],
                    _ => vec![
                        Atom {
                            term: le,
                            strict: false,
                        },
                        Atom {
                            term: ge,
                            strict: false,
                        },
                    ],
                }])
            }
            other => Err(ParseError(format!(
                "{pos}: unsupported formula operator '{other}'"
            ))),
        }
    }
}

/// Parses VNN-LIB text. `name` names the spec; errors carry line and column (the caller adds
/// the file name).
pub fn parse(text: &str, name: &str) -> Result<Spec, ParseError> {
    let sexps = parse_sexps(text)?;
    let mut parser = Parser {
        vars: BTreeMap::new(),
    };
    let mut conj: Vec<Vec<Atom>> = vec![Vec::new()];
    let (mut n_x, mut n_y) = (0usize, 0usize);
    let mut asserted = false;
    for s in &sexps {
        let Sexp::List(items, pos) = s else {
            return Err(ParseError(format!(
                "{}: expected '(declare-const ...)' or '(assert ...)'",
                s.pos()
            )));
        };
        match items.first() {
            Some(Sexp::Atom(h, _)) if h == "declare-const" => {
                let (Some(Sexp::Atom(name, npos)), Some(Sexp::Atom(sort, spos))) =
                    (items.get(1), items.get(2))
                else {
                    return Err(ParseError(format!(
                        "{pos}: expected (declare-const NAME Real)"
                    )));
                };
                if sort != "Real" {
                    return Err(ParseError(format!(
                        "{spos}: only Real variables are supported, not {sort}"
                    )));
                }
                let var = if let Some(i) = name.strip_prefix("X_").and_then(|i| i.parse().ok()) {
                    n_x = n_x.max(i + 1);
                    Var::X(i)
                } else if let Some(i) = name.strip_prefix("Y_").and_then(|i| i.parse().ok()) {
                    n_y = n_y.max(i + 1);
                    Var::Y(i)
                } else {
                    return Err(ParseError(format!(
                        "{npos}: variable '{name}' must be named X_<i> (input) or Y_<j> (output)"
                    )));
                };
                if parser.vars.insert(name.clone(), var).is_some() {
                    return Err(ParseError(format!("{npos}: '{name}' is declared twice")));
                }
            }
            Some(Sexp::Atom(h, _)) if h == "assert" => {
                if items.len() != 2 {
                    return Err(ParseError(format!("{pos}: assert takes one formula")));
                }
                asserted = true;
                conj = conjoin(&conj, &parser.formula(&items[1])?).ok_or_else(|| {
                    ParseError(format!("{pos}: the assertions expand to too many cases"))
                })?;
            }
            _ => {
                return Err(ParseError(format!(
                    "{pos}: expected '(declare-const ...)' or '(assert ...)'"
                )))
            }
        }
    }
    if n_x == 0 || n_y == 0 {
        return Err(ParseError(
            "no input (X_i) or no output (Y_j) variable is declared".into(),
        ));
    }
    let declared_x = parser
        .vars
        .values()
        .filter(|v| matches!(v, Var::X(_)))
        .count();
    let declared_y = parser
        .vars
        .values()
        .filter(|v| matches!(v, Var::Y(_)))
        .count();
    if declared_x != n_x || declared_y != n_y {
        return Err(ParseError(
            "variables must be numbered from 0 without gaps (X_0.., Y_0..)".into(),
        ));
    }
    if !asserted {
        return Err(ParseError("the file asserts nothing".into()));
    }
    let mut regions = Vec::new();
    'conj: for atoms in conj {
        let mut lower = vec![f64::NEG_INFINITY; n_x];
        let mut upper = vec![f64::INFINITY; n_x];
        let mut constraints = Vec::new();
        for a in atoms {
            let vars: Vec<(Var, f64)> = a
                .term
                .coeffs
                .iter()
                .filter(|(_, c)| **c != 0.0)
                .map(|(v, c)| (*v, *c))
                .collect();
            if vars.is_empty() {
                let ok = if a.strict {
                    a.term.constant < 0.0
                } else {
                    a.term.constant <= 0.0
                };
                if ok {
                    continue;
                }
                continue 'conj; // a false constant: this case is empty
            }
            let all_y = vars.iter().all(|(v, _)| matches!(v, Var::Y(_)));
            match (vars.as_slice(), all_y) {
                (&[(Var::X(i), c)], _) => {
                    // c * x_i + k <= 0; strictness on inputs is dropped (closure of the box).
                    let bound = -a.term.constant / c;
                    if c > 0.0 {
                        upper[i] = upper[i].min(bound);
                    } else {
                        lower[i] = lower[i].max(bound);
                    }
                }
                (_, true) => {
                    let mut coeffs = vec![0.0; n_y];
                    for (v, c) in vars {
                        if let Var::Y(j) = v {
                            coeffs[j] = c;
                        }
                    }
                    constraints.push(OutputConstraint {
                        coeffs,
                        constant: a.term.constant,
                        strict: a.strict,
                    });
                }
                _ => {
                    return Err(
                        "unsupported constraint: it mixes inputs with outputs, or relates several inputs (only bounds on single inputs are supported)"
                            .into(),
                    )
                }
            }
        }
        if let Some(i) = (0..n_x).find(|&i| !lower[i].is_finite() || !upper[i].is_finite()) {
            return Err(ParseError(format!(
                "input X_{i} is not bounded on both sides"
            )));
        }
        if (0..n_x).any(|i| lower[i] > upper[i]) {
            continue; // an empty box
        }
        regions.push(Region {
            input: InputBox { lower, upper },
            constraints,
        });
    }
    Ok(Spec {
        name: name.to_string(),
        n_inputs: n_x,
        n_outputs: n_y,
        regions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROP: &str = "; a comment
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (<= X_0 1))
(assert (>= X_0 -1))
(assert (or (and (<= X_1 0.5) (>= X_1 0)) (and (<= X_1 -0.5) (>= X_1 -1))))
(assert (or (<= Y_0 Y_1) (>= (+ Y_0 (* 2 Y_1)) 3.5)))
";

    #[test]
    fn expands_disjunctions_into_regions() {
        let s = parse(PROP, "t").unwrap();
        assert_eq!((s.n_inputs, s.n_outputs), (2, 2));
        assert_eq!(s.regions.len(), 4);
        let r = &s.regions[0];
        assert_eq!(r.input.lower, vec![-1.0, 0.0]);
        assert_eq!(r.input.upper, vec![1.0, 0.5]);
        // Y_0 - Y_1 <= 0
        assert_eq!(r.constraints[0].coeffs, vec![1.0, -1.0]);
        // 3.5 - (Y_0 + 2 Y_1) <= 0
        let c = &s.regions[1].constraints[0];
        assert_eq!((c.coeffs.clone(), c.constant), (vec![-1.0, -2.0], 3.5));
        assert_eq!(s.regions[2].input.lower, vec![-1.0, -1.0]);
    }

    #[test]
    fn errors_carry_positions() {
        let e = parse("(declare-const X_0 Real)\n(assert (<= X_0 foo))", "t")
            .unwrap_err()
            .0;
        assert!(e.contains("line 2") && e.contains("'foo'"), "{e}");
        let e = parse("(declare-const X_0 Real)\n(assert (<= X_0 1)", "t")
            .unwrap_err()
            .0;
        assert!(e.contains("never closed"), "{e}");
        let e = parse(
            "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1))",
            "t",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("X_0 is not bounded"), "{e}");
        let e = parse("(declare-const X_0 Real)(assert (<= (* X_0 X_0) 1))", "t")
            .unwrap_err()
            .0;
        assert!(e.contains("not linear"), "{e}");
    }
}

/// A spec as VNN-LIB text that [`parse`] reads back to the same regions and that other
/// verifiers read: the input box asserted once when every region shares it (else inside each
/// disjunct), and each output constraint in the simplest form that states it (`(<= Y_1 Y_0)`
/// for a comparison of two outputs, a bound on one output, a weighted sum otherwise). Values
/// are written with Rust's shortest round-trip formatting, so nothing is rounded.
pub fn write(spec: &Spec) -> String {
    let mut out = format!("; {}\n", spec.name.replace('\n', " "));
    for i in 0..spec.n_inputs {
        out.push_str(&format!("(declare-const X_{i} Real)\n"));
    }
    for j in 0..spec.n_outputs {
        out.push_str(&format!("(declare-const Y_{j} Real)\n"));
    }
    let shared = spec
        .regions
        .first()
        .map(|r| &r.input)
        .filter(|b| spec.regions.iter().all(|r| &r.input == *b));
    let bounds = |b: &InputBox| -> Vec<String> {
        (0..b.dim())
            .flat_map(|i| {
                [
                    format!("(>= X_{i} {})", num(b.lower[i])),
                    format!("(<= X_{i} {})", num(b.upper[i])),
                ]
            })
            .collect()
    };
    if let Some(b) = shared {
        for a in bounds(b) {
            out.push_str(&format!("(assert {a})\n"));
        }
    }
    let disjuncts: Vec<String> = spec
        .regions
        .iter()
        .map(|r| {
            let mut parts: Vec<String> = if shared.is_some() {
                Vec::new()
            } else {
                bounds(&r.input)
            };
            parts.extend(r.constraints.iter().map(constraint));
            match parts.len() {
                // Nothing to meet: every input of the box violates. VNN-LIB has no `true`.
                0 => "(<= 0.0 0.0)".to_string(),
                1 => parts.pop().expect("one"),
                _ => format!("(and {})", parts.join(" ")),
            }
        })
        .collect();
    match disjuncts.len() {
        // No region (every case was empty): nothing can violate, which VNN-LIB says as false.
        0 => out.push_str("(assert (<= 1.0 0.0))\n"),
        1 => out.push_str(&format!("(assert {})\n", disjuncts[0])),
        _ => out.push_str(&format!("(assert (or\n  {}\n))\n", disjuncts.join("\n  "))),
    }
    out
}

/// `coeffs . y + constant <= 0` (`<` when strict) in VNN-LIB.
fn constraint(c: &OutputConstraint) -> String {
    let rel = if c.strict { "<" } else { "<=" };
    let nz: Vec<(usize, f64)> = c
        .coeffs
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| *v != 0.0)
        .collect();
    match nz.as_slice() {
        // y_a - y_b <= 0
        [(a, 1.0), (b, -1.0)] | [(b, -1.0), (a, 1.0)] if c.constant == 0.0 => {
            format!("({rel} Y_{a} Y_{b})")
        }
        // k y_a + constant <= 0
        [(a, k)] if *k == 1.0 || *k == -1.0 => {
            let bound = num(-c.constant / k);
            if *k > 0.0 {
                format!("({rel} Y_{a} {bound})")
            } else {
                let rel = if c.strict { ">" } else { ">=" };
                format!("({rel} Y_{a} {bound})")
            }
        }
        _ => {
            let terms: Vec<String> = nz
                .iter()
                .map(|(j, k)| format!("(* {} Y_{j})", num(*k)))
                .collect();
            // No output left in it (`(<= Y_0 Y_0)` reads as 0 <= 0): a comparison of constants.
            let sum = match terms.len() {
                0 => "0.0".to_string(),
                1 => terms[0].clone(),
                _ => format!("(+ {})", terms.join(" ")),
            };
            format!("({rel} {sum} {})", num(-c.constant))
        }
    }
}

/// A real number as VNN-LIB reads it: decimal notation, never an exponent.
fn num(v: f64) -> String {
    let s = format!("{v:?}");
    if s.contains('e') || s.contains('E') {
        // Shortest round-trip digits, then placed without an exponent.
        let (mantissa, exp) = s.split_once(['e', 'E']).expect("has an exponent");
        let exp: i32 = exp.parse().expect("an integer exponent");
        let neg = mantissa.starts_with('-');
        let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
        let point = mantissa
            .trim_start_matches('-')
            .find('.')
            .unwrap_or(mantissa.trim_start_matches('-').len()) as i32;
        let pos = point + exp;
        let body = if pos <= 0 {
            format!("0.{}{}", "0".repeat((-pos) as usize), digits)
        } else if pos as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(pos as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..pos as usize], &digits[pos as usize..])
        };
        format!("{}{}", if neg { "-" } else { "" }, body)
    } else {
        s
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn written_specs_parse_back_to_the_same_regions() {
        let robust = Spec::robustness(&[0.1, 0.93, 1e-7], 0.015, 1, 3, Some((0.0, 1.0)));
        let mut odd = robust.clone();
        odd.regions[0].constraints[0].coeffs = vec![0.5, -2.0, 0.0];
        odd.regions[0].constraints[0].constant = 3e-9;
        odd.regions[1].input.upper[0] = 0.5;
        for spec in [robust, odd] {
            let text = write(&spec);
            let back = parse(&text, "back").unwrap();
            assert_eq!(back.n_inputs, spec.n_inputs);
            assert_eq!(back.n_outputs, spec.n_outputs);
            assert_eq!(back.regions, spec.regions, "{text}");
        }
    }

    /// Found by fuzzing: a region with nothing to meet, and a spec with no region at all (an
    /// empty box), are written so that they read back.
    #[test]
    fn trivial_regions_and_no_region_are_written_as_vnnlib() {
        let decl = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n";
        let always =
            format!("{decl}(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (<= Y_0 Y_0))\n");
        let never =
            format!("{decl}(assert (>= X_0 2.0))\n(assert (<= X_0 1.0))\n(assert (<= Y_0 Y_1))\n");
        for text in [always, never] {
            let spec = parse(&text, "t").unwrap();
            let back = parse(&write(&spec), "back").unwrap();
            assert_eq!(back.regions, spec.regions, "{}", write(&spec));
        }
    }
}
