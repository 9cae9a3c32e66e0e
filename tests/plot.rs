//! The plots of an evaluation report: the raster canvas and font, the sweep plot as SVG and PNG from
//! one description, the per-site range plot, and writing all four files.

use image::{Rgb, RgbImage};
use polycnn::eval::PolyInfo;
use polycnn::eval::plot::{self, Anchor, Canvas, Color, GLYPHS, PNG_SCALE, Primitive};
use polycnn::eval::preprocess::PreprocessingInfo;
use polycnn::eval::report::{Accuracy, ConfigReport, ConfigStatistics, EvalReport, SiteReport, exact_top1_interval};
use polycnn::eval::stats::{LogitError, Paired};
use polycnn::eval::{BoundRule, Bounds, Mode, SiteBound};
use polycnn::exec::{HIST_BINS, LOG2_MIN, SiteStats};
use polycnn::model::SiteKind;
use polycnn::poly::cost::HeCost;

const BOUND: f64 = 10.0;
const SITES: usize = 5;
/// The site whose approximate inputs leave [-B, B] in the last configuration.
const OUT_SITE: usize = 3;

fn accuracy(top1: f64) -> Accuracy {
    Accuracy {
        top1,
        top5: (top1 + 5.0).min(100.0),
        top1_correct: (top1 * 10.0) as u64,
        top5_correct: 0,
    }
}

fn site_name(i: usize) -> String {
    format!("features.{}", 2 * i + 1)
}

/// Three α (7, 10, 13), five sites with B = 10; at α = 13 site 3 sees |x| up to 14.
fn report() -> EvalReport {
    let exact_max = [2.0f32, 5.5, 0.75, 9.0, 3.0];
    let exact_sites = (0..SITES)
        .map(|i| {
            let mut s = SiteStats::new(&site_name(i), SiteKind::Relu);
            s.count = 1000;
            s.max_abs = exact_max[i];
            s.log2_hist = vec![0; HIST_BINS];
            s.log2_hist[(-LOG2_MIN) as usize - 1] = 990; // [0.5, 1)
            s.log2_hist[(-LOG2_MIN) as usize + 1] = 10; // [2, 4)
            s
        })
        .collect();
    let config = |alpha: u32, top1: f64, agreement: f64| ConfigReport {
        label: format!("α={alpha} (ReLU + max-pool)"),
        alpha,
        relu: Mode::Approx,
        maxpool: Mode::Approx,
        polynomial: PolyInfo {
            degrees: vec![7, 7],
            source: "test".into(),
            relu_error_log2: -(alpha as f64),
            relu_cost: HeCost::default(),
        },
        approx: accuracy(top1),
        agreement,
        agree_count: (agreement * 10.0) as u64,
        paired: Paired::default(),
        logit_error: LogitError::default(),
        statistics: ConfigStatistics::of(&Paired::default(), &LogitError::default()),
        out_of_range: if alpha == 13 { 7 } else { 0 },
        non_finite: 0,
        sites: (0..SITES)
            .map(|i| {
                let out = alpha == 13 && i == OUT_SITE;
                SiteReport {
                    site: site_name(i),
                    kind: "relu",
                    bound: BOUND,
                    exact_max_abs: exact_max[i],
                    approx_max_abs: if out { 14.0 } else { exact_max[i] * 1.1 },
                    out_of_range: if out { 7 } else { 0 },
                    non_finite: 0,
                    count: 1000,
                }
            })
            .collect(),
        ckks: None,
    };
    EvalReport {
        polycnn_version: "test",
        model: "tiny<&>net".into(),
        weights: "w".into(),
        weights_sha256: String::new(),
        data: "d".into(),
        dataset_images: 1000,
        preprocessing: PreprocessingInfo::default(),
        warnings: Vec::new(),
        selection: "all 1000 images".into(),
        backend: "cpu".into(),
        device: None,
        scheme: None,
        out_of_range_policy: "report",
        batch_size: 8,
        images: 1000,
        failures: Vec::new(),
        seconds: 1.0,
        images_per_second: 1000.0,
        exact: accuracy(92.0),
        exact_top1_interval: exact_top1_interval(920, 1000),
        exact_sites,
        bounds: Bounds {
            relu_rule: BoundRule::Fixed { bound: BOUND },
            maxpool_rule: BoundRule::Fixed { bound: BOUND },
            per_site: (0..SITES)
                .map(|i| SiteBound {
                    site: site_name(i),
                    kind: "relu",
                    bound: BOUND,
                })
                .collect(),
            search: Vec::new(),
        },
        configs: vec![config(7, 60.0, 62.0), config(10, 85.0, 88.0), config(13, 91.5, 98.0)],
        shard: None,
        plan: None,
        he_cost: Vec::new(),
        ckks_precision: Vec::new(),
        predictions: Vec::new(),
    }
}

fn rgb(c: Color) -> Rgb<u8> {
    Rgb([c.0, c.1, c.2])
}

/// Pixels in rows `rows` and columns `cols` (plot units, scaled by PNG_SCALE) matching `pred`.
fn count(img: &RgbImage, cols: (f64, f64), rows: (f64, f64), pred: impl Fn(&Rgb<u8>) -> bool) -> usize {
    let s = PNG_SCALE as f64;
    let mut n = 0;
    for y in (rows.0 * s) as u32..((rows.1 * s) as u32).min(img.height()) {
        for x in (cols.0 * s) as u32..((cols.1 * s) as u32).min(img.width()) {
            n += pred(img.get_pixel(x, y)) as usize;
        }
    }
    n
}

fn dark(p: &Rgb<u8>) -> bool {
    p.0.iter().all(|&c| c < 80)
}

fn white(p: &Rgb<u8>) -> bool {
    p.0 == [255, 255, 255]
}

/// A tiny XML well-formedness check: tags balanced and properly nested, no stray '<' or '&'.
fn check_xml(svg: &str) {
    assert!(svg.starts_with("<svg "), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        assert!(!text.contains('>'), "stray '>' in {text:?}");
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;"].iter().any(|e| entity.starts_with(e)),
                "bare & in {text:?}"
            );
        }
        let end = start + rest[start..].find('>').expect("unclosed tag");
        let tag = &rest[start + 1..end];
        let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap();
        assert!(
            !name.is_empty() && tag.matches('"').count().is_multiple_of(2),
            "bad tag <{tag}>"
        );
        if tag.starts_with('/') {
            assert_eq!(stack.pop(), Some(name), "unbalanced </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
}

/// The `points` of each `<polyline>`.
fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| {
            let points = p.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            points
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[test]
fn font_covers_ascii_and_plot_symbols_once() {
    for c in (32u8..=126).map(char::from).chain("α—≤%|".chars()) {
        let n = GLYPHS.iter().filter(|(g, _)| *g == c).count();
        assert_eq!(n, 1, "glyph {c:?} defined {n} times");
    }
    for (c, rows) in GLYPHS {
        assert!(rows.iter().all(|&r| r < 32), "glyph {c:?} wider than 5 dots");
        assert_eq!(*c == ' ', rows.iter().all(|&r| r == 0), "glyph {c:?}");
    }
    assert_eq!(plot::text_width("abc", 2), (3 * 6 - 1) * 2);
}

#[test]
fn canvas_draws_glyphs_lines_circles_and_rects() {
    // 'A' at 1 dot per pixel, baseline at y = 8: rows 1..8
    let mut canvas = Canvas::new(20, 12);
    canvas.text((2.0, 8.0), "A", 1, Anchor::Start, Color::BLACK);
    let a = GLYPHS.iter().find(|(c, _)| *c == 'A').unwrap().1;
    for (r, bits) in a.iter().enumerate() {
        for col in 0..5 {
            let on = (bits >> (4 - col)) & 1 == 1;
            assert_eq!(
                !white(canvas.image.get_pixel(2 + col, 1 + r as u32)),
                on,
                "row {r} col {col}"
            );
        }
    }
    // a 2-pixel horizontal line at y = 5 covers rows 4 and 5 fully, not 3 or 6
    let mut canvas = Canvas::new(20, 12);
    canvas.segment((2.0, 5.0), (18.0, 5.0), 2.0, Color::RED);
    assert_eq!(*canvas.image.get_pixel(10, 4), rgb(Color::RED));
    assert_eq!(*canvas.image.get_pixel(10, 5), rgb(Color::RED));
    assert!(white(canvas.image.get_pixel(10, 3)) && white(canvas.image.get_pixel(10, 6)));
    // dashes: 6 on, 4 off, carried over the corner
    let pieces = plot::dash_pieces(&[(0.0, 0.0), (13.0, 0.0), (13.0, 10.0)], 6.0, 4.0);
    assert_eq!(
        pieces,
        vec![
            ((0.0, 0.0), (6.0, 0.0)),
            ((10.0, 0.0), (13.0, 0.0)),
            ((13.0, 0.0), (13.0, 3.0)),
            ((13.0, 7.0), (13.0, 10.0))
        ]
    );
    let mut canvas = Canvas::new(20, 12);
    canvas.circle((10.0, 6.0), 3.0, Color::BLUE);
    canvas.rect(0.0, 0.0, 2.0, 2.0, Color::GRAY);
    assert_eq!(*canvas.image.get_pixel(10, 6), rgb(Color::BLUE));
    assert!(white(canvas.image.get_pixel(10, 1)));
    assert_eq!(*canvas.image.get_pixel(1, 1), rgb(Color::GRAY));
    assert!(white(canvas.image.get_pixel(2, 2)));
}

#[test]
fn sweep_png_has_axes_curves_dashed_exact_line_and_text() {
    let r = report();
    let img = plot::sweep_png(&r);
    assert_eq!((img.width(), img.height()), (640 * PNG_SCALE, 400 * PNG_SCALE));
    // plot area (60..620 x 40..350) has the curves in their colours
    let area = ((61.0, 619.0), (41.0, 349.0));
    assert!(count(&img, area.0, area.1, |p| *p == rgb(Color::BLUE)) > 500);
    assert!(count(&img, area.0, area.1, |p| *p == rgb(Color::ORANGE)) > 200);
    // the exact top-1 line: gray dashes (gray and white alternate along its row)
    let description = plot::sweep_plot(&r);
    let y_exact = description
        .items
        .iter()
        .find_map(|item| match item {
            Primitive::Line { from, stroke, .. } if stroke.dash.is_some() && stroke.color == Color::GRAY => {
                Some(from.1)
            }
            _ => None,
        })
        .expect("a dashed gray line");
    assert_eq!(y_exact, 40.0 + (100.0 - 92.0) / 40.0 * 310.0);
    let row = (y_exact * PNG_SCALE as f64) as u32;
    let pixels: Vec<&Rgb<u8>> = (60 * PNG_SCALE..620 * PNG_SCALE)
        .map(|x| img.get_pixel(x, row))
        .collect();
    let gray = pixels.iter().filter(|p| ***p == rgb(Color::GRAY)).count();
    let gaps = pixels.iter().filter(|p| white(p)).count();
    assert!(gray > 300 && gaps > 100, "gray {gray}, white {gaps}");
    // text: the title (baseline y = 20), the % ticks left of the axis, the α ticks below it
    assert!(count(&img, (100.0, 540.0), (8.0, 24.0), dark) > 200);
    assert!(count(&img, (0.0, 56.0), (40.0, 360.0), dark) > 100);
    assert!(count(&img, (60.0, 640.0), (355.0, 372.0), dark) > 30);
    // outside the title, axis labels and plot the margins stay white
    assert_eq!(count(&img, (0.0, 640.0), (0.0, 6.0), |p| !white(p)), 0);
}

#[test]
fn sweep_svg_is_well_formed_with_one_point_per_alpha() {
    let r = report();
    let svg = plot::sweep_svg(&r);
    check_xml(&svg);
    assert!(svg.contains("tiny&lt;&amp;&gt;net — top-1 vs α (1000 images)"));
    assert!(svg.contains("exact 92.00%") && svg.contains("stroke-dasharray=\"6,4\""));
    let lines = polylines(&svg);
    assert_eq!(lines.len(), 2, "approximate top-1 and agreement");
    for line in &lines {
        assert_eq!(line.len(), r.configs.len());
        assert!(line.windows(2).all(|w| w[0].0 < w[1].0), "α increasing left to right");
    }
    // higher accuracy is higher up
    assert!(lines[0][2].1 < lines[0][0].1);
    for alpha in ["7", "10", "13"] {
        assert!(svg.contains(&format!(">{alpha}</text>")));
    }
}

#[test]
fn site_ranges_mark_the_out_of_range_site_in_red() {
    let r = report();
    let svg = plot::site_ranges_svg(&r);
    check_xml(&svg);
    assert!(svg.contains(&format!("out of range: {OUT_SITE} {}", site_name(OUT_SITE))));
    let red = Color::RED.hex();
    assert!(
        svg.contains(&format!("fill=\"{red}\">{OUT_SITE}</text>")),
        "red site label"
    );
    assert!(!svg.contains(&format!("fill=\"{red}\">1</text>")));
    // the bound as one step line across all sites at the same height
    let steps = polylines(&svg);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].len(), 2 * SITES);
    assert!(steps[0].iter().all(|p| p.1 == steps[0][0].1));

    let img = plot::site_ranges_png(&r);
    assert_eq!((img.width(), img.height()), (640 * PNG_SCALE, 420 * PNG_SCALE));
    // five slots of 112 units from x = 60; the plot area spans y = 62..354
    let slot = |i: usize| (60.0 + 112.0 * i as f64 + 1.0, 60.0 + 112.0 * (i + 1) as f64 - 1.0);
    let rows = (63.0, 353.0);
    for i in 0..SITES {
        let reds = count(&img, slot(i), rows, |p| *p == rgb(Color::RED));
        let blues = count(&img, slot(i), rows, |p| *p == rgb(Color::BLUE));
        let slate = count(&img, slot(i), rows, |p| *p == rgb(Color::SLATE));
        assert!(slate > 100, "site {i}: exact bar");
        if i == OUT_SITE {
            assert!(reds > 1000 && blues == 0, "site {i}: {reds} red, {blues} blue");
            assert!(count(&img, slot(i), rows, |p| *p == rgb(Color::PALE_RED)) > 1000);
        } else {
            assert!(reds == 0 && blues > 100, "site {i}: {reds} red, {blues} blue");
        }
    }
    // the approximate bar of the out-of-range site reaches above the bound line
    let y_bound = steps[0][0].1;
    assert!(count(&img, slot(OUT_SITE), (rows.0, y_bound - 3.0), |p| *p == rgb(Color::RED)) > 0);
    assert_eq!(
        count(&img, slot(1), (rows.0, y_bound - 3.0), |p| *p == rgb(Color::BLUE)),
        0
    );
    // title text
    assert!(count(&img, (40.0, 600.0), (8.0, 24.0), dark) > 200);
}

#[test]
fn plots_without_approximate_configurations() {
    let mut r = report();
    r.configs.clear();
    check_xml(&plot::sweep_svg(&r));
    let svg = plot::site_ranges_svg(&r);
    check_xml(&svg);
    assert!(svg.contains("exact network only") && !svg.contains("out of range"));
    let img = plot::site_ranges_png(&r);
    assert!(count(&img, (60.0, 620.0), (63.0, 353.0), |p| *p == rgb(Color::SLATE)) > 500);
    let img = plot::sweep_png(&r);
    assert_eq!(img.width(), 640 * PNG_SCALE);
}

#[test]
fn write_plots_writes_four_files_and_names_failures() {
    let r = report();
    let dir = std::env::temp_dir().join(format!("polycnn-plot-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let written = plot::write_plots(&r, &dir).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["sweep.svg", "sweep.png", "site_ranges.svg", "site_ranges.png"]);
    for path in &written {
        assert!(path.starts_with(&dir) && std::fs::metadata(path).unwrap().len() > 1000);
    }
    let png = image::open(dir.join("sweep.png")).unwrap().to_rgb8();
    assert_eq!(png, plot::sweep_png(&r));
    assert!(
        std::fs::read_to_string(dir.join("site_ranges.svg"))
            .unwrap()
            .starts_with("<svg")
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let err = plot::write_plots(&r, &dir.join("missing")).unwrap_err();
    assert!(err.contains("sweep.svg"), "{err}");
}

/// With POLYCNN_PLOT_DIR set, writes the plots of the test report, of a 50-site report, and a
/// sheet of every glyph there, to look at.
#[test]
fn dump_plots_for_inspection() {
    let Some(dir) = std::env::var_os("POLYCNN_PLOT_DIR").map(std::path::PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    plot::write_plots(&report(), &dir).unwrap();
    let mut r = report();
    for c in &mut r.configs {
        let s = c.sites[0].clone();
        c.sites = (0..50)
            .map(|i| SiteReport {
                site: format!("layer{}.{}.relu", i / 12 + 1, i % 12),
                exact_max_abs: 0.5 + (i as f32 * 0.37).sin().abs() * 12.0,
                approx_max_abs: 0.6 + (i as f32 * 0.37).sin().abs() * 15.0,
                bound: 16.0,
                out_of_range: (i % 17 == 5) as u64,
                ..s.clone()
            })
            .collect();
    }
    r.exact_sites = (0..50).map(|_| r.exact_sites[0].clone()).collect();
    let wide = dir.join("wide");
    std::fs::create_dir_all(&wide).unwrap();
    plot::write_plots(&r, &wide).unwrap();
    let mut sheet = Canvas::new(16 * 6 * 3 + 12, (GLYPHS.len() as u32 / 16 + 1) * 30 + 10);
    for (k, (c, _)) in GLYPHS.iter().enumerate() {
        let at = (6.0 + (k % 16) as f64 * 18.0, 30.0 + (k / 16) as f64 * 30.0);
        sheet.text(at, &c.to_string(), 3, Anchor::Start, Color::BLACK);
    }
    sheet.image.save(dir.join("font.png")).unwrap();
}
