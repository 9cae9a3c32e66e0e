//! A precision plan checked against its graph, with its composites built: what `eval --plan`
//! runs as its one configuration.

use super::bounds::{Bounds, SiteBound};
use super::config::{ApproxConfig, Mode, PolyInfo};
use super::plan_file::PrecisionPlan;
use crate::exec::{ActivationPlan, SiteMode};
use crate::model::Graph;
use crate::poly::cost::relu_cost;
use crate::poly::verify::relu_error;
use crate::poly::{Composite, optimise_eps};

/// A plan checked against its graph, with its composites built: what `eval --plan` runs.
pub struct PreparedPlan {
    plan: PrecisionPlan,
    /// Distinct degree lists and their composites.
    composites: Vec<(Vec<usize>, Composite)>,
    /// Per site, the index of its composite.
    site_composite: Vec<usize>,
    kinds: Vec<&'static str>,
}

impl PreparedPlan {
    /// Refuses a plan for another model, with unknown, missing or reordered sites, wrong kinds,
    /// or unusable α, degrees or bounds — naming the site.
    pub fn new(plan: &PrecisionPlan, graph: &Graph) -> Result<PreparedPlan, String> {
        if plan.model != graph.name {
            return Err(format!("the plan is for {}, not {}", plan.model, graph.name));
        }
        for s in &plan.sites {
            if graph.site_named(&s.site).is_none() {
                return Err(format!("plan site `{}`: {} has no such site", s.site, graph.name));
            }
        }
        let mut composites: Vec<(Vec<usize>, Composite)> = Vec::new();
        let mut site_composite = Vec::new();
        let mut kinds = Vec::new();
        for (i, site) in graph.sites.iter().enumerate() {
            let s = plan
                .sites
                .get(i)
                .ok_or_else(|| format!("the plan has no entry for site `{}`", site.name))?;
            let kind = site.kind.name();
            let bad = |detail: String| format!("plan site `{}`: {detail}", s.site);
            if s.site != site.name {
                return Err(bad(format!(
                    "expected `{}` at position {i} (sites in graph order)",
                    site.name
                )));
            }
            if s.kind != kind {
                return Err(bad(format!("kind `{}` but the network's site is a {kind}", s.kind)));
            }
            if !(s.bound.is_finite() && s.bound > 0.0) {
                return Err(bad(format!("bound {} is not a positive number", s.bound)));
            }
            if !(1..=30).contains(&s.alpha) {
                return Err(bad(format!("α {} is outside 1..=30", s.alpha)));
            }
            let index = match composites.iter().position(|(d, _)| *d == s.degrees) {
                Some(index) => index,
                None => {
                    let sc = optimise_eps(&s.degrees).map_err(|e| bad(format!("degrees {:?}: {e}", s.degrees)))?;
                    composites.push((s.degrees.clone(), sc.composite));
                    composites.len() - 1
                }
            };
            site_composite.push(index);
            kinds.push(kind);
        }
        if plan.sites.len() != graph.sites.len() {
            return Err(format!(
                "the plan has {} sites but {} has {}",
                plan.sites.len(),
                graph.name,
                graph.sites.len()
            ));
        }
        Ok(PreparedPlan {
            plan: plan.clone(),
            composites,
            site_composite,
            kinds,
        })
    }

    pub fn plan(&self) -> &PrecisionPlan {
        &self.plan
    }

    pub fn activation_plan(&self, clamp: bool) -> ActivationPlan<'_> {
        let modes = self
            .plan
            .sites
            .iter()
            .zip(&self.site_composite)
            .map(|(s, &c)| SiteMode::approx(&self.composites[c].1, s.alpha, s.bound).clamped(clamp))
            .collect();
        ActivationPlan { modes }
    }

    /// The site with the highest α: the configuration's α and polynomial in the report.
    fn highest(&self) -> usize {
        (0..self.plan.sites.len())
            .max_by_key(|&i| self.plan.sites[i].alpha)
            .unwrap_or(0)
    }

    /// The configuration the report shows for the plan.
    pub fn config(&self, clamp: bool) -> ApproxConfig<'_> {
        let top = self.highest();
        ApproxConfig {
            label: format!("plan ({} per site)", self.plan.alpha_range()),
            alpha: self.plan.sites.get(top).map_or(0, |s| s.alpha),
            composite: &self.composites[self.site_composite[top]].1,
            relu: Mode::Approx,
            maxpool: Mode::Approx,
            clamp,
        }
    }

    pub fn bounds(&self) -> Bounds {
        Bounds {
            relu_rule: self.plan.bound_rule.clone(),
            maxpool_rule: self.plan.bound_rule.clone(),
            per_site: self
                .plan
                .sites
                .iter()
                .zip(&self.kinds)
                .map(|(s, &kind)| SiteBound {
                    site: s.site.clone(),
                    kind,
                    bound: s.bound,
                })
                .collect(),
            search: Vec::new(),
        }
    }

    /// The highest-α site's polynomial (the report's one polynomial per configuration).
    pub fn poly_info(&self) -> PolyInfo {
        let composite = &self.composites[self.site_composite[self.highest()]].1;
        PolyInfo {
            degrees: composite.degrees(),
            source: format!("plan, highest α ({} per site)", self.plan.alpha_range()),
            relu_error_log2: relu_error(composite).log2,
            relu_cost: relu_cost(&composite.degrees()),
        }
    }
}
