//! The official code's search for B on the approximate network, batch by batch.

use super::bounds::{Bounds, Overflow, SearchTry, unify_shared};
use super::pass::PassInput;
use crate::data::loader::{Loader, LoaderConfig};
use crate::exec::ActivationPlan;
use crate::model::{Batch, Graph, Shape, SiteKind};

/// (B_relu, B_max) of a search: a searched kind's B, None for a kind not searched.
pub type KindBounds = (Option<f64>, Option<f64>);

/// Tries after which the search gives up (the activations grow with B, or are not finite).
pub const MAX_SEARCH_TRIES: usize = 200;

/// The official code's B search (main_cifar10.py / main_imagenet.py): run the approximate
/// network with (B_relu, B_max) = `start`; when an activation of a searched kind leaves
/// [-B, B], raise that kind's B by its step and try again, until a whole pass stays in range.
/// A kind whose start is None is not searched (its sites keep their bounds; the tries record
/// no B for it).
///
/// `first_overflow(order, relu_bound, maxpool_bound)` runs the images in `order` batch by
/// batch and reports the first batch that overflowed. Unlike the official code, which restarts
/// from the first image, each try runs the images that overflowed before first, so a B that
/// still fails is rejected after a batch; the B found is the same, since a try succeeds only
/// after a full pass in range at that B.
pub fn search_bounds(
    images: usize,
    start: KindBounds,
    step: (f64, f64),
    mut first_overflow: impl FnMut(&[usize], Option<f64>, Option<f64>) -> Result<Option<Overflow>, String>,
) -> Result<(KindBounds, Vec<SearchTry>), String> {
    let (mut relu, mut maxpool) = start;
    let mut seen = vec![false; images];
    let mut first: Vec<usize> = Vec::new();
    let mut tries = Vec::new();
    while tries.len() < MAX_SEARCH_TRIES {
        let order: Vec<usize> = first.iter().copied().chain((0..images).filter(|&i| !seen[i])).collect();
        let overflow = first_overflow(&order, relu, maxpool)?;
        tries.push(SearchTry {
            relu_bound: relu,
            maxpool_bound: maxpool,
            images_run: overflow.as_ref().map_or(images, |o| o.images_run),
            overflow: overflow.clone(),
        });
        let Some(o) = overflow else {
            return Ok(((relu, maxpool), tries));
        };
        let (raised, by) = match o.kind {
            "relu" => (&mut relu, step.0),
            _ => (&mut maxpool, step.1),
        };
        match raised {
            Some(bound) => *bound += by,
            None => {
                return Err(format!(
                    "site {} ({}) is not searched but was reported out of range",
                    o.site, o.kind
                ));
            }
        }
        for &i in &o.images {
            if !std::mem::replace(&mut seen[i], true) {
                first.push(i);
            }
        }
    }
    Err(format!(
        "no bound found after {MAX_SEARCH_TRIES} tries ({}): the approximate network's activations \
         keep leaving [-B, B]",
        bounds_text(relu, maxpool)
    ))
}

/// "B_relu = 55, B_max = 50", naming only the kinds given.
pub fn bounds_text(relu: Option<f64>, maxpool: Option<f64>) -> String {
    let kinds = [("B_relu", relu), ("B_max", maxpool)];
    let named: Vec<String> = kinds
        .iter()
        .filter_map(|(n, b)| b.map(|b| format!("{n} = {b}")))
        .collect();
    named.join(", ")
}

/// Runs `plan` (the approximate network only) over `order` in batches and returns the first
/// batch where a site of `searched` kinds saw |x| > B or a non-finite value (the official code
/// raises on |x| > B, which is also true of ±∞; NaN stops it here as well, since no B helps).
pub fn first_overflow(
    input: &PassInput,
    order: &[usize],
    plan: &ActivationPlan,
    searched: [bool; 2],
) -> Result<Option<Overflow>, String> {
    let graph = input.graph;
    let shape = graph.input;
    let config = LoaderConfig {
        batch_size: input.batch_size,
        normalize: input.normalize,
        prefetch: 2,
    };
    let mut images_run = 0;
    for batch in Loader::new(input.dataset.clone(), order.to_vec(), config) {
        images_run += batch.len() + batch.failures.len();
        if batch.is_empty() {
            continue;
        }
        let images = Batch::new(batch.len(), Shape::new(shape.c, shape.h, shape.w), batch.data)?;
        let out = input.backend.run(graph, &images, plan)?;
        let overflowed = out
            .sites
            .iter()
            .zip(&graph.sites)
            .zip(&plan.modes)
            .find(|((stats, site), mode)| {
                let kind_searched = searched[(site.kind == SiteKind::MaxPool) as usize];
                kind_searched && mode.uses_bound() && (stats.out_of_range > 0 || stats.non_finite > 0)
            });
        if let Some(((stats, site), _)) = overflowed {
            return Ok(Some(Overflow {
                kind: site.kind.name(),
                site: site.name.clone(),
                max_abs: if stats.non_finite > 0 {
                    f64::INFINITY
                } else {
                    stats.max_abs as f64
                },
                images: batch.indices.clone(),
                images_run,
            }));
        }
    }
    Ok(None)
}

/// `bounds` with every site of a searched kind (`Some` B) set to that kind's B.
pub fn with_searched_bounds(graph: &Graph, bounds: &Bounds, relu: Option<f64>, maxpool: Option<f64>) -> Bounds {
    let mut out = bounds.clone();
    for (b, site) in out.per_site.iter_mut().zip(&graph.sites) {
        let searched = match site.kind {
            SiteKind::Relu => relu,
            SiteKind::MaxPool => maxpool,
        };
        if let Some(bound) = searched {
            b.bound = bound;
        }
    }
    out.per_site = unify_shared(graph, out.per_site);
    out
}
