//! The bound B of every approximate site: the rules that choose it, the bounds chosen, and the
//! record of the official search (its algorithm is in [`super::search`]).

use crate::exec::SiteStats;
use crate::model::{Graph, SiteKind};
use serde::Serialize;

/// How the bound B of approximate sites is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum BoundRule {
    /// One global B (the paper's setting).
    Fixed { bound: f64 },
    /// The official code's procedure on the approximate network: start at `start`, and while
    /// an activation of this kind leaves [-B, B] raise B by `step` and retry (see
    /// [`super::search::search_bounds`]).
    Search { start: f64, step: f64 },
    /// The smallest B = start + k·step with no activation of the exact network outside
    /// [-B, B], from one statistics pass (a lower bound of `search`'s B: the approximate
    /// network's activations drift above the exact ones).
    #[serde(rename = "search-exact")]
    SearchExact { start: f64, step: f64 },
    /// Per site: max |x| over the first `images` images times `margin`.
    Calibrate { margin: f64, images: usize },
}

impl BoundRule {
    /// "50", "search", "search:50:5", "search-exact[:50:5]", "calibrate", "calibrate:1.2";
    /// `search` and `search-exact` without START:STEP take `default_search`.
    pub fn parse(s: &str, default_search: (f64, f64)) -> Result<BoundRule, String> {
        Ok(RequestedBound::parse(s)?.resolve(default_search))
    }
}

/// A bound rule as asked for: whole, or a search on the network's grid, whose START:STEP are
/// known once the network is loaded ([`crate::model::NetworkDescriptor::search_grid`]), so that
/// reading a request never opens the model.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestedBound {
    Rule(BoundRule),
    /// `search` (`exact`: `search-exact`) without START:STEP.
    NetworkGrid {
        exact: bool,
    },
}

impl From<BoundRule> for RequestedBound {
    fn from(rule: BoundRule) -> RequestedBound {
        RequestedBound::Rule(rule)
    }
}

impl RequestedBound {
    /// "50", "search", "search:50:5", "search-exact[:50:5]", "calibrate", "calibrate:1.2".
    pub fn parse(s: &str) -> Result<RequestedBound, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let number = |t: &str, what: &str| -> Result<f64, String> {
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("bound '{s}': {what} '{t}' is not a positive number"))
        };
        let rule = match parts.as_slice() {
            ["search"] => return Ok(RequestedBound::NetworkGrid { exact: false }),
            ["search-exact"] => return Ok(RequestedBound::NetworkGrid { exact: true }),
            ["search", start, step] => BoundRule::Search {
                start: number(start, "start")?,
                step: number(step, "step")?,
            },
            ["search-exact", start, step] => BoundRule::SearchExact {
                start: number(start, "start")?,
                step: number(step, "step")?,
            },
            ["calibrate"] => BoundRule::Calibrate { margin: 1.1, images: 0 },
            ["calibrate", margin] => BoundRule::Calibrate {
                margin: number(margin, "margin")?,
                images: 0,
            },
            [value] => BoundRule::Fixed {
                bound: number(value, "value")?,
            },
            _ => {
                return Err(format!(
                    "bound '{s}': expected a number, search[:START:STEP], search-exact[:START:STEP] or calibrate[:MARGIN]"
                ));
            }
        };
        Ok(RequestedBound::Rule(rule))
    }

    /// The rule, with `grid` (start, step) where the network's grid was asked for.
    pub fn resolve(&self, grid: (f64, f64)) -> BoundRule {
        let (start, step) = grid;
        match self {
            RequestedBound::Rule(rule) => rule.clone(),
            RequestedBound::NetworkGrid { exact: false } => BoundRule::Search { start, step },
            RequestedBound::NetworkGrid { exact: true } => BoundRule::SearchExact { start, step },
        }
    }
}

/// Per-site bounds actually used (ReLU sites and max-pool sites may differ).
#[derive(Clone, Debug, Serialize)]
pub struct SiteBound {
    pub site: String,
    pub kind: &'static str,
    pub bound: f64,
}

/// The bounds for every site, and how they were found.
#[derive(Clone, Debug, Serialize)]
pub struct Bounds {
    pub relu_rule: BoundRule,
    pub maxpool_rule: BoundRule,
    pub per_site: Vec<SiteBound>,
    /// Per configuration that searched, the `search` rule's result on its approximate network.
    /// A configuration searches the kinds whose rule is `search` and which it approximates at
    /// some site (none: no entry; a network without max-pooling searches B_relu alone).
    pub search: Vec<BoundSearch>,
}

/// Bounds from the rules, using `stats` (an exact statistics pass) where a rule needs it.
pub fn choose_bounds(
    graph: &Graph,
    relu: &BoundRule,
    maxpool: &BoundRule,
    stats: Option<&[SiteStats]>,
) -> Result<Bounds, String> {
    let per_site = graph
        .sites
        .iter()
        .enumerate()
        .map(|(i, site)| {
            let rule = if site.kind == SiteKind::Relu { relu } else { maxpool };
            let observed = |what: &str| -> Result<f64, String> {
                let stats = stats.ok_or_else(|| format!("bound rule {what} needs a statistics pass"))?;
                // the global maximum over sites of this kind (search) or this site's (calibrate)
                Ok(match rule {
                    BoundRule::SearchExact { .. } => stats
                        .iter()
                        .zip(&graph.sites)
                        .filter(|(_, s)| s.kind == site.kind)
                        .map(|(st, _)| st.max_abs as f64)
                        .fold(0.0, f64::max),
                    _ => stats[i].max_abs as f64,
                })
            };
            let bound = match rule {
                BoundRule::Fixed { bound } => *bound,
                // where the search on the approximate network starts
                BoundRule::Search { start, .. } => *start,
                BoundRule::SearchExact { start, step } => {
                    let max = observed("search-exact")?;
                    let steps = ((max - start) / step).ceil().max(0.0);
                    start + steps * step
                }
                BoundRule::Calibrate { margin, .. } => (observed("calibrate")? * margin).max(f64::MIN_POSITIVE),
            };
            Ok(SiteBound {
                site: site.name.clone(),
                kind: site.kind.name(),
                bound,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Bounds {
        per_site: unify_shared(graph, per_site),
        relu_rule: relu.clone(),
        maxpool_rule: maxpool.clone(),
        search: Vec::new(),
    })
}

/// `per_site` with the sites that share a bound (the two halves of a ReLU6) set to their
/// group's largest: a per-site rule (`calibrate`) sees different ranges at the two halves, and
/// the executors refuse a plan that gives them different bounds.
pub fn unify_shared(graph: &Graph, mut per_site: Vec<SiteBound>) -> Vec<SiteBound> {
    let mut bounds: Vec<f64> = per_site.iter().map(|b| b.bound).collect();
    graph.unify_shared_bounds(&mut bounds);
    for (b, unified) in per_site.iter_mut().zip(bounds) {
        b.bound = unified;
    }
    per_site
}

/// Where a try of the search stopped: the first batch with an activation out of [-B, B].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overflow {
    /// "relu" or "maxpool": the kind whose B is raised (the earliest overflowing site's).
    pub kind: &'static str,
    pub site: String,
    /// The largest |x| at that site in that batch (infinite when it saw a non-finite value;
    /// JSON writes that as null).
    pub max_abs: f64,
    /// The images of the overflowing batch (re-run first by the next try).
    pub images: Vec<usize>,
    /// Images run by this try, the overflowing batch included.
    pub images_run: usize,
}

/// One try of the search: the bounds of the searched kinds (None: that kind is not searched),
/// how many images ran, and where it stopped (None: every image stayed in range, the search ends).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SearchTry {
    pub relu_bound: Option<f64>,
    pub maxpool_bound: Option<f64>,
    pub images_run: usize,
    pub overflow: Option<Overflow>,
}

/// The result of the search for one configuration (read back from a resume state too): the B
/// found per searched kind (None, JSON null: that kind was not searched).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct BoundSearch {
    pub label: String,
    pub relu_bound: Option<f64>,
    pub maxpool_bound: Option<f64>,
    pub tries: Vec<SearchTry>,
}

/// An [`Overflow`] as JSON has it (read back from a resume state).
#[derive(serde::Deserialize)]
struct OverflowRecord {
    kind: String,
    site: String,
    max_abs: Option<f64>,
    images: Vec<usize>,
    images_run: usize,
}

// by hand: a derived impl would ask the JSON to outlive `'static` for `kind`
impl<'de> serde::Deserialize<'de> for Overflow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Overflow, D::Error> {
        Overflow::try_from(OverflowRecord::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<OverflowRecord> for Overflow {
    type Error = String;

    fn try_from(r: OverflowRecord) -> Result<Overflow, String> {
        let kind = match r.kind.as_str() {
            "relu" => "relu",
            "maxpool" => "maxpool",
            other => return Err(format!("unknown site kind '{other}'")),
        };
        Ok(Overflow {
            kind,
            site: r.site,
            max_abs: r.max_abs.unwrap_or(f64::INFINITY),
            images: r.images,
            images_run: r.images_run,
        })
    }
}

impl BoundSearch {
    /// "B_relu = 65 (tried 50, 55, 60, 65), B_max = 50 (tried 50), 4 tries", naming the
    /// searched kinds only.
    pub fn summary(&self) -> String {
        let kind = |name: &str, found: Option<f64>, pick: fn(&SearchTry) -> Option<f64>| {
            let found = found?;
            let mut values: Vec<f64> = self.tries.iter().filter_map(pick).collect();
            values.dedup();
            let tried: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
            Some(format!("{name} = {found} (tried {})", tried.join(", ")))
        };
        let kinds: Vec<String> = [
            kind("B_relu", self.relu_bound, |t| t.relu_bound),
            kind("B_max", self.maxpool_bound, |t| t.maxpool_bound),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("{}: {}, {} tries", self.label, kinds.join(", "), self.tries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GraphBuilder, Shape};

    /// A grid-less search waits for the network's grid; every other rule is whole as parsed.
    #[test]
    fn a_search_without_a_grid_takes_the_network_grid_when_resolved() {
        let grid = (100.0, 10.0);
        let search = RequestedBound::parse("search").unwrap();
        assert_eq!(search, RequestedBound::NetworkGrid { exact: false });
        assert_eq!(
            search.resolve(grid),
            BoundRule::Search {
                start: 100.0,
                step: 10.0
            }
        );
        let exact = RequestedBound::parse("search-exact").unwrap();
        assert_eq!(
            exact.resolve(grid),
            BoundRule::SearchExact {
                start: 100.0,
                step: 10.0
            }
        );
        let given = RequestedBound::parse("search:50:5").unwrap();
        assert_eq!(given.resolve(grid), BoundRule::Search { start: 50.0, step: 5.0 });
        let fixed = RequestedBound::parse("65").unwrap();
        assert_eq!(fixed, BoundRule::Fixed { bound: 65.0 }.into());
        assert_eq!(fixed.resolve(grid), BoundRule::Fixed { bound: 65.0 });
        assert!(RequestedBound::parse("search:50").is_err());
    }

    /// `calibrate` gives each site its own B; the halves of a ReLU6 then share the larger.
    #[test]
    fn calibrated_relu6_halves_share_the_larger_bound() {
        let mut b = GraphBuilder::new("r6", Shape::new(1, 2, 2));
        let r = b.relu("first", GraphBuilder::INPUT);
        let y = b.relu6("act", r);
        let graph = b.finish(y).unwrap();
        let stats: Vec<SiteStats> = graph
            .sites
            .iter()
            .zip([3.0, 8.0, 2.0])
            .map(|(site, max_abs)| SiteStats {
                max_abs,
                ..SiteStats::new(&site.name, site.kind)
            })
            .collect();
        let rule = BoundRule::Calibrate { margin: 1.5, images: 0 };
        let bounds = choose_bounds(&graph, &rule, &rule, Some(&stats)).unwrap();
        let got: Vec<f64> = bounds.per_site.iter().map(|b| b.bound).collect();
        assert_eq!(got, [4.5, 12.0, 12.0]);
        let searched = crate::eval::search::with_searched_bounds(
            &graph,
            &choose_bounds(&graph, &BoundRule::Fixed { bound: 7.0 }, &rule, None).unwrap(),
            Some(20.0),
            None,
        );
        assert!(searched.per_site.iter().all(|b| b.bound == 20.0), "{searched:?}");
    }
}
