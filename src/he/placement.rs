//! Bootstrap placement on a [`LevelGraph`]: where to refresh ciphertexts so that every value
//! keeps a non-negative level, and what that costs in bootstrapped ciphertexts.
//!
//! A bootstrap of a value raises it to the preset's `levels_after_bootstrap` (L) for all its
//! consumers and costs ceil(elements / slots) ciphertext bootstraps. The network input is
//! encrypted fresh at level L.
//!
//! * [`greedy`]: in topological order, bootstrap an input of a value exactly when the value's
//!   depth does not fit in that input's remaining levels (what a simple runtime does).
//! * [`optimal`]: the placement with the fewest bootstrapped ciphertexts (then fewest bootstrap
//!   points), by dynamic programming over levels. Each value carries a min-plus matrix
//!   "level of a base value → level of this value"; a chain composes matrices, a value with
//!   several consumers (the fork of a residual block, the input of a ReLU that the final product
//!   needs again) becomes the base of its branches, and where branches meet (add, concat, the
//!   ReLU product) their matrices are joined at the common base (the meeting level is the lowest
//!   of the branches) and lifted to the base's own base. This is exact on series-parallel graphs
//!   (chains, residual blocks, inception modules: every supported network).
//! * [`exhaustive`]: every subset of bootstrap points, for tests on small graphs.

use super::levels::{LevelGraph, Unit, UnitId};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::rc::Rc;

/// One bootstrap: which value, and how many ciphertexts it refreshes (per image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapPoint {
    pub node: String,
    pub part: String,
    pub elements: u64,
    pub ciphertexts: u64,
    #[serde(skip)]
    pub unit: UnitId,
}

/// A placement and its totals (per image).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub bootstrap_points: u32,
    pub bootstrapped_ciphertexts: u64,
    pub points: Vec<BootstrapPoint>,
}

impl Placement {
    fn from_units(lg: &LevelGraph, mut units: Vec<UnitId>, slots: u64) -> Placement {
        units.sort_unstable();
        units.dedup();
        let points: Vec<BootstrapPoint> = units
            .into_iter()
            .map(|u| {
                let unit = &lg.units[u];
                BootstrapPoint {
                    node: unit.node.clone(),
                    part: unit.part.clone(),
                    elements: unit.elements,
                    ciphertexts: ciphertexts(unit, slots),
                    unit: u,
                }
            })
            .collect();
        Placement {
            bootstrap_points: points.len() as u32,
            bootstrapped_ciphertexts: points.iter().map(|p| p.ciphertexts).sum(),
            points,
        }
    }

    /// The units bootstrapped, ascending.
    pub fn units(&self) -> Vec<UnitId> {
        self.points.iter().map(|p| p.unit).collect()
    }
}

#[derive(Debug, PartialEq)]
pub enum PlacementError {
    /// One value needs more levels than a bootstrap provides: no placement exists.
    TooDeep {
        node: String,
        part: String,
        depth: u32,
        levels: u32,
    },
    /// A preset with zero slots or a graph without units.
    Degenerate(String),
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementError::TooDeep {
                node,
                part,
                depth,
                levels,
            } => write!(
                f,
                "`{node}` ({part}) consumes {depth} levels but the parameters give only {levels} after a \
                 bootstrap: no placement exists (use lower-degree stages or a preset with more levels)"
            ),
            PlacementError::Degenerate(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for PlacementError {}

/// Ciphertexts holding a unit's value: ceil(elements / slots).
pub fn ciphertexts(unit: &Unit, slots: u64) -> u64 {
    unit.elements.div_ceil(slots)
}

fn check(lg: &LevelGraph, levels: u32, slots: u64) -> Result<(), PlacementError> {
    if slots == 0 || lg.units.is_empty() {
        return Err(PlacementError::Degenerate("no slots or an empty level graph".into()));
    }
    match lg.units.iter().find(|u| u.depth > levels) {
        Some(u) => Err(PlacementError::TooDeep {
            node: u.node.clone(),
            part: u.part.clone(),
            depth: u.depth,
            levels,
        }),
        None => Ok(()),
    }
}

/// Bootstrap an input exactly when the next value's depth does not fit in its levels.
pub fn greedy(lg: &LevelGraph, levels: u32, slots: u64) -> Result<Placement, PlacementError> {
    check(lg, levels, slots)?;
    let mut level = vec![levels; lg.units.len()];
    let mut chosen = Vec::new();
    for (id, unit) in lg.units.iter().enumerate().skip(1) {
        for &i in &unit.inputs {
            if level[i] < unit.depth {
                chosen.push(i);
                level[i] = levels;
            }
        }
        let lowest = unit.inputs.iter().map(|&i| level[i]).min().unwrap_or(levels);
        level[id] = lowest - unit.depth;
    }
    Ok(Placement::from_units(lg, chosen, slots))
}

/// Whether bootstrapping exactly `chosen` keeps every level non-negative.
pub fn feasible(lg: &LevelGraph, levels: u32, chosen: &[bool]) -> bool {
    let mut level = vec![levels as i64; lg.units.len()];
    for (id, unit) in lg.units.iter().enumerate().skip(1) {
        let lowest = unit
            .inputs
            .iter()
            .map(|&i| if chosen[i] { levels as i64 } else { level[i] })
            .min()
            .unwrap_or(levels as i64);
        level[id] = lowest - unit.depth as i64;
        if level[id] < 0 {
            return false;
        }
    }
    true
}

/// The optimum by trying every subset of bootstrap points (graphs of at most 20 units).
pub fn exhaustive(lg: &LevelGraph, levels: u32, slots: u64) -> Result<Placement, PlacementError> {
    check(lg, levels, slots)?;
    let n = lg.units.len();
    if n > 20 {
        return Err(PlacementError::Degenerate(format!(
            "{n} units are too many to enumerate"
        )));
    }
    let mut best: Option<((u64, u32), u32)> = None;
    for mask in 0u32..(1 << n) {
        let chosen: Vec<bool> = (0..n).map(|u| mask >> u & 1 == 1).collect();
        if !feasible(lg, levels, &chosen) {
            continue;
        }
        let ct = (0..n)
            .filter(|&u| chosen[u])
            .map(|u| ciphertexts(&lg.units[u], slots))
            .sum();
        let key = (ct, mask.count_ones());
        if best.is_none_or(|(b, _)| key < b) {
            best = Some((key, mask));
        }
    }
    let (_, mask) = best.expect("bootstrapping every value is feasible once each depth fits");
    Ok(Placement::from_units(
        lg,
        (0..n).filter(|&u| mask >> u & 1 == 1).collect(),
        slots,
    ))
}

/// The bootstrap points on one path of the DP, shared between matrix entries.
enum Trail {
    Nil,
    Point(UnitId, Rc<Trail>),
    Both(Rc<Trail>, Rc<Trail>),
}

impl Trail {
    fn collect(self: &Rc<Trail>, out: &mut Vec<UnitId>) {
        let mut stack = vec![self.clone()];
        while let Some(t) = stack.pop() {
            match &*t {
                Trail::Nil => {}
                Trail::Point(u, rest) => {
                    out.push(*u);
                    stack.push(rest.clone());
                }
                Trail::Both(a, b) => {
                    stack.push(a.clone());
                    stack.push(b.clone());
                }
            }
        }
    }
}

/// A DP cost: bootstrapped ciphertexts, then bootstrap points; with the points themselves.
#[derive(Clone)]
struct Cost {
    ciphertexts: u64,
    points: u32,
    trail: Rc<Trail>,
}

impl Cost {
    fn zero() -> Cost {
        Cost {
            ciphertexts: 0,
            points: 0,
            trail: Rc::new(Trail::Nil),
        }
    }

    fn key(&self) -> (u64, u32) {
        (self.ciphertexts, self.points)
    }

    fn plus(&self, other: &Cost) -> Cost {
        Cost {
            ciphertexts: self.ciphertexts + other.ciphertexts,
            points: self.points + other.points,
            trail: Rc::new(Trail::Both(self.trail.clone(), other.trail.clone())),
        }
    }

    fn with_point(&self, unit: UnitId, ciphertexts: u64) -> Cost {
        Cost {
            ciphertexts: self.ciphertexts + ciphertexts,
            points: self.points + 1,
            trail: Rc::new(Trail::Point(unit, self.trail.clone())),
        }
    }
}

/// Min-plus matrix over levels 0..=L: entry [from][to] is the cheapest way to go from a base
/// value at level `from` to this value at level `to` (None: impossible).
#[derive(Clone)]
struct Matrix {
    n: usize,
    e: Vec<Option<Cost>>,
}

impl Matrix {
    fn empty(n: usize) -> Matrix {
        Matrix {
            n,
            e: vec![None; n * n],
        }
    }

    fn identity(n: usize) -> Matrix {
        let mut m = Matrix::empty(n);
        for l in 0..n {
            m.e[l * n + l] = Some(Cost::zero());
        }
        m
    }

    fn get(&self, from: usize, to: usize) -> Option<&Cost> {
        self.e[from * self.n + to].as_ref()
    }

    /// Keep the cheaper of the current entry and `c`.
    fn offer(&mut self, from: usize, to: usize, c: Cost) {
        let slot = &mut self.e[from * self.n + to];
        if slot.as_ref().is_none_or(|s| c.key().cmp(&s.key()) == Ordering::Less) {
            *slot = Some(c);
        }
    }

    /// Then consume `depth` levels.
    fn consume(&self, depth: u32) -> Matrix {
        let d = depth as usize;
        let mut m = Matrix::empty(self.n);
        for from in 0..self.n {
            for to in d..self.n {
                if let Some(c) = self.get(from, to) {
                    m.offer(from, to - d, c.clone());
                }
            }
        }
        m
    }

    /// Then optionally bootstrap the value (to the top level, at `ciphertexts`).
    fn with_bootstrap(&self, unit: UnitId, ciphertexts: u64) -> Matrix {
        let top = self.n - 1;
        let mut m = self.clone();
        for from in 0..self.n {
            for to in 0..self.n {
                if let Some(c) = self.get(from, to) {
                    m.offer(from, top, c.with_point(unit, ciphertexts));
                }
            }
        }
        m
    }

    /// `self` (base → mid) then `next` (mid → value).
    fn compose(&self, next: &Matrix) -> Matrix {
        let mut m = Matrix::empty(self.n);
        for from in 0..self.n {
            for mid in 0..self.n {
                let Some(a) = self.get(from, mid) else { continue };
                for to in 0..self.n {
                    if let Some(b) = next.get(mid, to) {
                        m.offer(from, to, a.plus(b));
                    }
                }
            }
        }
        m
    }

    /// Two branches from the same base meeting: the lower level wins.
    fn join(&self, other: &Matrix) -> Matrix {
        let mut m = Matrix::empty(self.n);
        for from in 0..self.n {
            for a in 0..self.n {
                let Some(ca) = self.get(from, a) else { continue };
                for b in 0..self.n {
                    if let Some(cb) = other.get(from, b) {
                        m.offer(from, a.min(b), ca.plus(cb));
                    }
                }
            }
        }
        m
    }
}

/// A value's matrix and the base it is relative to.
struct Relative {
    base: UnitId,
    matrix: Matrix,
}

/// The placement with the fewest bootstrapped ciphertexts (module docs).
pub fn optimal(lg: &LevelGraph, levels: u32, slots: u64) -> Result<Placement, PlacementError> {
    check(lg, levels, slots)?;
    let n = levels as usize + 1;
    let consumers = lg.consumer_counts();
    let output = lg.output();
    // For a base (fork) value: its own matrix relative to its base, bootstrap choice included.
    let mut lift: Vec<Option<Relative>> = (0..lg.units.len()).map(|_| None).collect();
    // For a single-consumer value: what its consumer receives.
    let mut pending: Vec<Option<Relative>> = (0..lg.units.len()).map(|_| None).collect();
    let mut result = None;
    for (id, unit) in lg.units.iter().enumerate() {
        let relative = if id == 0 {
            Relative {
                base: 0,
                matrix: Matrix::identity(n),
            }
        } else {
            let inputs: Vec<Relative> = unit
                .inputs
                .iter()
                .map(|&i| match pending[i].take() {
                    Some(r) => r,
                    None => Relative {
                        base: i,
                        matrix: Matrix::identity(n),
                    },
                })
                .collect();
            let met = meet(inputs, &lift);
            let consumed = met.matrix.consume(unit.depth);
            Relative {
                base: met.base,
                matrix: consumed.with_bootstrap(id, ciphertexts(unit, slots)),
            }
        };
        if id == output {
            result = Some(relative);
        } else if id == 0 || consumers[id] != 1 {
            lift[id] = Some(relative);
        } else {
            pending[id] = Some(relative);
        }
    }
    let mut at_root = result.expect("the output is the last unit");
    while at_root.base != 0 {
        let up = lift[at_root.base].as_ref().expect("a base has its own matrix");
        at_root = Relative {
            base: up.base,
            matrix: up.matrix.compose(&at_root.matrix),
        };
    }
    let top = n - 1;
    let best = (0..n)
        .filter_map(|to| at_root.matrix.get(top, to))
        .min_by_key(|c| c.key())
        .expect("bootstrapping before every value is always feasible once each depth fits");
    let mut units = Vec::new();
    best.trail.collect(&mut units);
    Ok(Placement::from_units(lg, units, slots))
}

/// Bring the inputs of a value to one common base: repeatedly join the inputs sharing the
/// latest base and lift the result to that base's own base.
fn meet(mut inputs: Vec<Relative>, lift: &[Option<Relative>]) -> Relative {
    loop {
        let latest = inputs.iter().map(|r| r.base).max().expect("a value has inputs");
        let (group, rest): (Vec<Relative>, Vec<Relative>) = inputs.into_iter().partition(|r| r.base == latest);
        let joined = group
            .into_iter()
            .reduce(|a, b| Relative {
                base: latest,
                matrix: a.matrix.join(&b.matrix),
            })
            .expect("the group holds the latest base");
        if rest.is_empty() {
            return joined;
        }
        let up = lift[latest]
            .as_ref()
            .expect("a shared base is a fork with its own matrix");
        inputs = rest;
        inputs.push(Relative {
            base: up.base,
            matrix: up.matrix.compose(&joined.matrix),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64* for reproducible random graphs.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// A random series-parallel graph: chains, residual blocks (two branches meeting at an
    /// add) and sign-product pairs (a value used by its own chain and the closing product).
    fn random_graph(rng: &mut Rng, max_units: usize) -> LevelGraph {
        let mut lg = LevelGraph::default();
        let mut cur = lg.push(vec![], 0, 1 + rng.below(40), "input", "output");
        while lg.units.len() + 4 <= max_units {
            let elements = 1 + rng.below(40);
            match rng.below(3) {
                0 => cur = lg.push(vec![cur], rng.below(4) as u32, elements, "chain", "output"),
                1 => {
                    let fork = cur;
                    let a = lg.push(vec![fork], rng.below(4) as u32, elements, "branch", "a");
                    let a = lg.push(vec![a], rng.below(3) as u32, elements, "branch", "a2");
                    let b = if rng.below(2) == 0 {
                        fork
                    } else {
                        lg.push(vec![fork], rng.below(3) as u32, elements, "branch", "b")
                    };
                    cur = lg.push(vec![a, b], 0, elements, "add", "output");
                }
                _ => {
                    let x = cur;
                    let s = lg.push(vec![x], 1 + rng.below(3) as u32, elements, "relu", "stage 1");
                    let s = lg.push(vec![s], 1 + rng.below(3) as u32, elements, "relu", "stage 2");
                    cur = lg.push(vec![x, s], 1, elements, "relu", "output");
                }
            }
        }
        lg
    }

    #[test]
    fn dp_is_the_exhaustive_optimum_and_never_worse_than_greedy() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut compared = 0;
        for _ in 0..300 {
            let max_units = 5 + rng.below(11) as usize;
            let lg = random_graph(&mut rng, max_units);
            let levels = 1 + rng.below(6) as u32;
            let slots = 1 + rng.below(16);
            let Ok(g) = greedy(&lg, levels, slots) else {
                assert!(matches!(
                    optimal(&lg, levels, slots),
                    Err(PlacementError::TooDeep { .. })
                ));
                continue;
            };
            let dp = optimal(&lg, levels, slots).unwrap();
            let brute = exhaustive(&lg, levels, slots).unwrap();
            let chosen = |p: &Placement| {
                let mut c = vec![false; lg.units.len()];
                p.units().into_iter().for_each(|u| c[u] = true);
                c
            };
            assert!(feasible(&lg, levels, &chosen(&g)), "greedy infeasible: {lg:?}");
            assert!(feasible(&lg, levels, &chosen(&dp)), "dp infeasible: {lg:?}");
            let key = |p: &Placement| (p.bootstrapped_ciphertexts, p.bootstrap_points);
            assert_eq!(key(&dp), key(&brute), "levels {levels}, slots {slots}: {lg:?}");
            assert!(key(&dp) <= key(&g));
            compared += 1;
        }
        assert!(compared > 200, "only {compared} feasible graphs");
    }

    #[test]
    fn too_deep_a_value_names_it() {
        let mut lg = LevelGraph::default();
        let x = lg.push(vec![], 0, 4, "input", "output");
        lg.push(vec![x], 7, 4, "layer.relu", "stage 2");
        let e = optimal(&lg, 5, 8).unwrap_err();
        assert!(
            e.to_string().contains("layer.relu") && e.to_string().contains("7 levels"),
            "{e}"
        );
        assert_eq!(greedy(&lg, 5, 8).unwrap_err(), e);
    }
}
