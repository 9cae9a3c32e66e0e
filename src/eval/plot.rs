//! Plots of an evaluation report, as SVG and as PNG, from one description.
//!
//! A plot is a [`Plot`]: a size in plot units (SVG pixels) and a list of [`Primitive`]s (rectangles,
//! lines, polylines, circles, text). [`Plot::to_svg`] writes it as an SVG document and
//! [`Plot::to_image`] rasterises it at an integer scale with a small built-in renderer: anti-aliased
//! thick (optionally dashed) lines and filled circles, and text in an embedded 5x7 bitmap font
//! ([`GLYPHS`]), so no font file or drawing crate is needed.
//!
//! Two plots are built from an [`EvalReport`]: [`sweep_plot`] (top-1 accuracy and agreement against
//! α, the exact accuracy as a dashed line) and [`site_ranges_plot`] (per activation site, the
//! largest |x| seen by the exact and the approximate network on a log scale, against the bound B).

use super::ckks_noise::PrecisionCurve;
use super::report::{ConfigReport, EvalReport};
use crate::exec::LOG2_MIN;
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// Pixels per plot unit of the PNGs: 2, so a 640x400 plot is a 1280x800 image and 12-unit text is
/// the 5x7 font at 2x.
pub const PNG_SCALE: u32 = 2;

/// An opaque RGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    pub const WHITE: Color = Color(255, 255, 255);
    pub const BLACK: Color = Color(0, 0, 0);
    pub const GRAY: Color = Color(128, 128, 128);
    pub const GRID: Color = Color(0xdd, 0xdd, 0xdd);
    pub const BLUE: Color = Color(0x1f, 0x77, 0xb4);
    pub const ORANGE: Color = Color(0xff, 0x7f, 0x0e);
    pub const RED: Color = Color(0xd6, 0x27, 0x28);
    pub const PALE_RED: Color = Color(0xfb, 0xe0, 0xe0);
    pub const SLATE: Color = Color(0xa0, 0xb4, 0xc8);
    pub const GREEN: Color = Color(0x2c, 0xa0, 0x2c);
    pub const PURPLE: Color = Color(0x94, 0x67, 0xbd);

    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Horizontal alignment of text on its anchor point (SVG `text-anchor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// How a line is drawn: colour, width and an optional (on, off) dash pattern, in plot units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stroke {
    pub color: Color,
    pub width: f64,
    pub dash: Option<(f64, f64)>,
}

impl Stroke {
    pub fn solid(color: Color, width: f64) -> Stroke {
        Stroke {
            color,
            width,
            dash: None,
        }
    }

    pub fn dashed(color: Color, width: f64, on: f64, off: f64) -> Stroke {
        Stroke {
            color,
            width,
            dash: Some((on, off)),
        }
    }
}

/// One drawing operation; coordinates in plot units, y down, text positioned at its baseline.
#[derive(Clone, Debug, PartialEq)]
pub enum Primitive {
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Color,
    },
    Line {
        from: (f64, f64),
        to: (f64, f64),
        stroke: Stroke,
    },
    Polyline {
        points: Vec<(f64, f64)>,
        stroke: Stroke,
    },
    Circle {
        center: (f64, f64),
        r: f64,
        fill: Color,
    },
    Text {
        at: (f64, f64),
        text: String,
        size: f64,
        anchor: Anchor,
        color: Color,
    },
}

/// A plot: its size in plot units and what to draw, in order, on a white background.
#[derive(Clone, Debug, PartialEq)]
pub struct Plot {
    pub width: f64,
    pub height: f64,
    pub items: Vec<Primitive>,
}

impl Plot {
    pub fn new(width: f64, height: f64) -> Plot {
        Plot {
            width,
            height,
            items: Vec::new(),
        }
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Color) {
        self.items.push(Primitive::Rect { x, y, w, h, fill });
    }

    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), stroke: Stroke) {
        self.items.push(Primitive::Line { from, to, stroke });
    }

    pub fn polyline(&mut self, points: Vec<(f64, f64)>, stroke: Stroke) {
        self.items.push(Primitive::Polyline { points, stroke });
    }

    pub fn circle(&mut self, center: (f64, f64), r: f64, fill: Color) {
        self.items.push(Primitive::Circle { center, r, fill });
    }

    pub fn text(&mut self, at: (f64, f64), text: impl Into<String>, size: f64, anchor: Anchor, color: Color) {
        self.items.push(Primitive::Text {
            at,
            text: text.into(),
            size,
            anchor,
            color,
        });
    }

    /// The plot as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let stroke_attrs = |s: &Stroke| {
            let dash = s
                .dash
                .map(|(on, off)| format!(" stroke-dasharray=\"{on},{off}\""))
                .unwrap_or_default();
            format!("stroke=\"{}\" stroke-width=\"{}\"{dash}", s.color.hex(), s.width)
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
            self.width, self.height
        );
        for item in &self.items {
            svg += &match item {
                Primitive::Rect { x, y, w, h, fill } => format!(
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\n",
                    w.max(0.0),
                    h.max(0.0),
                    fill.hex()
                ),
                Primitive::Line { from, to, stroke } => format!(
                    "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" {}/>\n",
                    from.0,
                    from.1,
                    to.0,
                    to.1,
                    stroke_attrs(stroke)
                ),
                Primitive::Polyline { points, stroke } => {
                    let points: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    format!(
                        "<polyline fill=\"none\" {} points=\"{}\"/>\n",
                        stroke_attrs(stroke),
                        points.join(" ")
                    )
                }
                Primitive::Circle { center, r, fill } => format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{}\"/>\n",
                    center.0,
                    center.1,
                    fill.hex()
                ),
                Primitive::Text {
                    at,
                    text,
                    size,
                    anchor,
                    color,
                } => {
                    let anchor = match anchor {
                        Anchor::Start => "start",
                        Anchor::Middle => "middle",
                        Anchor::End => "end",
                    };
                    format!(
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"{size}\" fill=\"{}\">{}</text>\n",
                        at.0,
                        at.1,
                        color.hex(),
                        xml_escape(text)
                    )
                }
            };
        }
        svg + "</svg>\n"
    }

    /// The plot rasterised at `scale` pixels per plot unit (at least 1).
    pub fn to_image(&self, scale: u32) -> RgbImage {
        let s = scale.max(1) as f64;
        let mut canvas = Canvas::new((self.width * s).ceil() as u32, (self.height * s).ceil() as u32);
        let p = |(x, y): (f64, f64)| (x * s, y * s);
        for item in &self.items {
            match item {
                Primitive::Rect { x, y, w, h, fill } => canvas.rect(x * s, y * s, w * s, h * s, *fill),
                Primitive::Line { from, to, stroke } => canvas.polyline(&[p(*from), p(*to)], stroke, s),
                Primitive::Polyline { points, stroke } => {
                    canvas.polyline(&points.iter().map(|&q| p(q)).collect::<Vec<_>>(), stroke, s)
                }
                Primitive::Circle { center, r, fill } => canvas.circle(p(*center), r * s, *fill),
                Primitive::Text {
                    at,
                    text,
                    size,
                    anchor,
                    color,
                } => {
                    // 12-unit text at scale 1 is the font at 1x; rounded to whole pixels per font dot
                    let dot = ((size * s / 12.0).round() as u32).max(1);
                    canvas.text(p(*at), text, dot, *anchor, *color)
                }
            }
        }
        canvas.image
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A white RGB raster with the few drawing operations the plots need. Coordinates are in pixels
/// (pixel (i, j) covers [i, i+1) x [j, j+1)); shapes are anti-aliased by their distance to the
/// pixel centre, text is not.
pub struct Canvas {
    pub image: RgbImage,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            image: RgbImage::from_pixel(width.max(1), height.max(1), Rgb([255, 255, 255])),
        }
    }

    /// Mixes `color` into pixel (x, y) with weight `alpha` (0..=1); outside the image is ignored.
    fn blend(&mut self, x: i64, y: i64, color: Color, alpha: f64) {
        if x < 0 || y < 0 || x >= self.image.width() as i64 || y >= self.image.height() as i64 || alpha <= 0.0 {
            return;
        }
        let a = alpha.min(1.0);
        let px = self.image.get_pixel_mut(x as u32, y as u32);
        for (c, new) in px.0.iter_mut().zip([color.0, color.1, color.2]) {
            *c = (*c as f64 * (1.0 - a) + new as f64 * a).round() as u8;
        }
    }

    /// Fills the pixels whose centres lie inside the rectangle.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Color) {
        let (x0, x1) = ((x - 0.5).ceil() as i64, (x + w - 0.5).ceil() as i64);
        let (y0, y1) = ((y - 0.5).ceil() as i64, (y + h - 0.5).ceil() as i64);
        for j in y0.max(0)..y1.min(self.image.height() as i64) {
            for i in x0.max(0)..x1.min(self.image.width() as i64) {
                self.blend(i, j, fill, 1.0);
            }
        }
    }

    /// A segment `width` pixels wide with round ends.
    pub fn segment(&mut self, a: (f64, f64), b: (f64, f64), width: f64, color: Color) {
        let half = (width / 2.0).max(0.5);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let (i0, i1) = (
            (a.0.min(b.0) - half - 1.0).floor() as i64,
            (a.0.max(b.0) + half + 1.0).ceil() as i64,
        );
        let (j0, j1) = (
            (a.1.min(b.1) - half - 1.0).floor() as i64,
            (a.1.max(b.1) + half + 1.0).ceil() as i64,
        );
        let (i0, j0) = (i0.max(0), j0.max(0));
        let (i1, j1) = (i1.min(self.image.width() as i64), j1.min(self.image.height() as i64));
        for j in j0..j1 {
            for i in i0..i1 {
                let (px, py) = (i as f64 + 0.5, j as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let d = ((px - a.0 - t * dx).powi(2) + (py - a.1 - t * dy).powi(2)).sqrt();
                self.blend(i, j, color, half + 0.5 - d);
            }
        }
    }

    /// Connected segments; `stroke`'s width and dashes are in plot units, `s` pixels each.
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &Stroke, s: f64) {
        let width = stroke.width * s;
        match stroke.dash {
            None => points
                .windows(2)
                .for_each(|w| self.segment(w[0], w[1], width, stroke.color)),
            Some((on, off)) => {
                for (a, b) in dash_pieces(points, on * s, off * s) {
                    self.segment(a, b, width, stroke.color);
                }
            }
        }
    }

    /// A filled disc.
    pub fn circle(&mut self, c: (f64, f64), r: f64, fill: Color) {
        let (i0, i1) = ((c.0 - r - 1.0).floor() as i64, (c.0 + r + 1.0).ceil() as i64);
        let (j0, j1) = ((c.1 - r - 1.0).floor() as i64, (c.1 + r + 1.0).ceil() as i64);
        for j in j0..j1 {
            for i in i0..i1 {
                let d = ((i as f64 + 0.5 - c.0).powi(2) + (j as f64 + 0.5 - c.1).powi(2)).sqrt();
                self.blend(i, j, fill, r + 0.5 - d);
            }
        }
    }

    /// Text with its baseline at `at.1`, each font dot `dot` x `dot` pixels.
    pub fn text(&mut self, at: (f64, f64), text: &str, dot: u32, anchor: Anchor, color: Color) {
        let dot = dot.max(1) as i64;
        let width = text_width(text, dot as u32) as f64;
        let left = match anchor {
            Anchor::Start => at.0,
            Anchor::Middle => at.0 - width / 2.0,
            Anchor::End => at.0 - width,
        }
        .round() as i64;
        let baseline = at.1.round() as i64;
        for (k, c) in text.chars().enumerate() {
            let (rows, drop) = glyph(c);
            let x0 = left + k as i64 * ADVANCE as i64 * dot;
            let y0 = baseline - (GLYPH_ROWS as i64 - drop) * dot;
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..GLYPH_COLS {
                    if (bits >> (GLYPH_COLS - 1 - col)) & 1 == 1 {
                        for dy in 0..dot {
                            for dx in 0..dot {
                                self.blend(x0 + col as i64 * dot + dx, y0 + r as i64 * dot + dy, color, 1.0);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The "on" pieces of a dashed polyline; the pattern runs on across corners, as in SVG.
pub fn dash_pieces(points: &[(f64, f64)], on: f64, off: f64) -> Vec<((f64, f64), (f64, f64))> {
    let mut pieces = Vec::new();
    if on <= 0.0 {
        return pieces;
    }
    let period = on + off.max(0.0);
    let mut phase = 0.0; // distance into the current period
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let at = |t: f64| (a.0 + (b.0 - a.0) * t / len, a.1 + (b.1 - a.1) * t / len);
        let mut t = 0.0;
        while t < len {
            let step = if phase < on { on - phase } else { period - phase };
            let end = (t + step).min(len);
            if phase < on {
                pieces.push((at(t), at(end)));
            }
            phase = (phase + end - t) % period;
            t = end;
        }
    }
    pieces
}

/// Font dots per glyph: 5 wide, 7 high (row 6 sits on the baseline).
pub const GLYPH_COLS: usize = 5;
pub const GLYPH_ROWS: usize = 7;
/// Horizontal advance per character, in font dots (one blank column between glyphs).
pub const ADVANCE: usize = 6;

/// Width in pixels of `text` with `dot`-pixel font dots.
pub fn text_width(text: &str, dot: u32) -> u32 {
    let n = text.chars().count() as u32;
    (n * ADVANCE as u32).saturating_sub(ADVANCE as u32 - GLYPH_COLS as u32) * dot
}

/// Characters drawn two dots lower, so their last rows hang below the baseline.
const DESCENDERS: &str = "gpqyµ";

/// Shown for characters the font lacks.
const MISSING: [u8; 7] = [0x1f, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1f];

/// The glyph of `c` and how many dots it drops below the baseline.
fn glyph(c: char) -> ([u8; 7], i64) {
    let rows = GLYPHS.iter().find(|(g, _)| *g == c).map_or(MISSING, |(_, rows)| *rows);
    (rows, if DESCENDERS.contains(c) { 2 } else { 0 })
}

/// A hand-made 5x7 font: ASCII 32..=126 plus the few other characters the plots and reports use.
/// Each glyph is 7 rows, top first; in each row bit 4 is the leftmost dot and bit 0 the rightmost.
pub const GLYPHS: &[(char, [u8; 7])] = &[
    (' ', [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]),
    ('!', [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04]),
    ('"', [0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00]),
    ('#', [0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a]),
    ('$', [0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04]),
    ('%', [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03]),
    ('&', [0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d]),
    ('\'', [0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]),
    ('(', [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02]),
    (')', [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08]),
    ('*', [0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00]),
    ('+', [0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00]),
    (',', [0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08]),
    ('-', [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00]),
    ('.', [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c]),
    ('/', [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00]),
    ('0', [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e]),
    ('1', [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e]),
    ('2', [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f]),
    ('3', [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e]),
    ('4', [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02]),
    ('5', [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e]),
    ('6', [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e]),
    ('7', [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08]),
    ('8', [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e]),
    ('9', [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c]),
    (':', [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00]),
    (';', [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08]),
    ('<', [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02]),
    ('=', [0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00]),
    ('>', [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08]),
    ('?', [0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04]),
    ('@', [0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e]),
    ('A', [0x0e, 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11]),
    ('B', [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e]),
    ('C', [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e]),
    ('D', [0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c]),
    ('E', [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f]),
    ('F', [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10]),
    ('G', [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f]),
    ('H', [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11]),
    ('I', [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e]),
    ('J', [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c]),
    ('K', [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11]),
    ('L', [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f]),
    ('M', [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11]),
    ('N', [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11]),
    ('O', [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e]),
    ('P', [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10]),
    ('Q', [0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d]),
    ('R', [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11]),
    ('S', [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e]),
    ('T', [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    ('U', [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e]),
    ('V', [0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04]),
    ('W', [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a]),
    ('X', [0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11]),
    ('Y', [0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04]),
    ('Z', [0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f]),
    ('[', [0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e]),
    ('\\', [0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00]),
    (']', [0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e]),
    ('^', [0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00]),
    ('_', [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f]),
    ('`', [0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00]),
    ('a', [0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f]),
    ('b', [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e]),
    ('c', [0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e]),
    ('d', [0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f]),
    ('e', [0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e]),
    ('f', [0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08]),
    ('g', [0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e]),
    ('h', [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11]),
    ('i', [0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e]),
    ('j', [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0c]),
    ('k', [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12]),
    ('l', [0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e]),
    ('m', [0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11]),
    ('n', [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11]),
    ('o', [0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e]),
    ('p', [0x1e, 0x11, 0x11, 0x11, 0x1e, 0x10, 0x10]),
    ('q', [0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x01]),
    ('r', [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10]),
    ('s', [0x00, 0x00, 0x0f, 0x10, 0x0e, 0x01, 0x1e]),
    ('t', [0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06]),
    ('u', [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d]),
    ('v', [0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04]),
    ('w', [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a]),
    ('x', [0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11]),
    ('y', [0x11, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e]),
    ('z', [0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f]),
    ('{', [0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02]),
    ('|', [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    ('}', [0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08]),
    ('~', [0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00]),
    // beyond ASCII
    ('α', [0x00, 0x00, 0x0d, 0x12, 0x12, 0x12, 0x0d]),
    ('ε', [0x00, 0x00, 0x0f, 0x10, 0x0e, 0x10, 0x0f]),
    ('µ', [0x11, 0x11, 0x11, 0x13, 0x1d, 0x10, 0x10]),
    ('Δ', [0x04, 0x04, 0x0a, 0x0a, 0x11, 0x11, 0x1f]),
    ('—', [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00]),
    ('–', [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00]),
    ('−', [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00]),
    ('≤', [0x02, 0x04, 0x08, 0x04, 0x02, 0x00, 0x1f]),
    ('≥', [0x08, 0x04, 0x02, 0x04, 0x08, 0x00, 0x1f]),
    ('·', [0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00]),
    ('×', [0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00]),
    ('…', [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x15]),
    ('²', [0x0c, 0x02, 0x04, 0x08, 0x0e, 0x00, 0x00]),
    ('°', [0x0c, 0x12, 0x12, 0x0c, 0x00, 0x00, 0x00]),
];

/// Top-1 accuracy and agreement against α, with the exact accuracy as a dashed line: what
/// [`sweep_svg`] writes, and [`sweep_png`] draws.
pub fn sweep_plot(r: &EvalReport) -> Plot {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 40.0, 50.0);
    let mut plot = Plot::new(w, h);
    let (a_min, a_max) = r
        .configs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
            (lo.min(c.alpha as f64), hi.max(c.alpha as f64))
        });
    let (a_min, a_max) = match (a_min.is_finite(), a_max > a_min) {
        (false, _) => (0.0, 1.0),
        (true, true) => (a_min, a_max),
        (true, false) => (a_min - 1.0, a_max + 1.0),
    };
    let values = r
        .configs
        .iter()
        .flat_map(|c| [c.approx.top1, c.agreement])
        .chain([r.exact.top1]);
    let y_min = (values.fold(100.0f64, f64::min) / 10.0).floor() * 10.0;
    let x = |a: f64| left + (a - a_min) / (a_max - a_min) * (w - left - right);
    let y = |v: f64| top + (100.0 - v) / (100.0 - y_min).max(1.0) * (h - top - bottom);
    let (x_end, y_axis) = (w - right, h - bottom);
    plot.text(
        (w / 2.0, 20.0),
        format!("{} — top-1 vs α ({} images)", r.model, r.images),
        14.0,
        Anchor::Middle,
        Color::BLACK,
    );
    // grid and % ticks, then axes and α ticks
    percent_grid_and_axes(&mut plot, y_min, &y, (left, top), (x_end, y_axis));
    for c in &r.configs {
        let xc = x(c.alpha as f64);
        plot.line((xc, y_axis), (xc, y_axis + 4.0), Stroke::solid(Color::BLACK, 1.0));
        plot.text(
            (xc, y_axis + 18.0),
            c.alpha.to_string(),
            12.0,
            Anchor::Middle,
            Color::BLACK,
        );
    }
    plot.text(
        (w / 2.0, h - 12.0),
        "α (precision of the ReLU approximation: error ≤ 2^-α)",
        12.0,
        Anchor::Middle,
        Color::BLACK,
    );
    // the exact accuracy, then the approximate curves
    let y_exact = y(r.exact.top1);
    plot.line(
        (left, y_exact),
        (x_end, y_exact),
        Stroke::dashed(Color::GRAY, 1.0, 6.0, 4.0),
    );
    let label = format!("exact {:.2}%", r.exact.top1);
    plot.text((x_end, y_exact - 4.0), label, 12.0, Anchor::End, Color::GRAY);
    let plaintext: Vec<&ConfigReport> = r.configs.iter().filter(|c| c.ckks.is_none()).collect();
    let points = |configs: &[&ConfigReport], pick: fn(&ConfigReport) -> f64| {
        configs
            .iter()
            .map(|c| (x(c.alpha as f64), y(pick(c))))
            .collect::<Vec<_>>()
    };
    plot.polyline(points(&plaintext, |c| c.approx.top1), Stroke::solid(Color::BLUE, 2.0));
    plot.polyline(
        points(&plaintext, |c| c.agreement),
        Stroke::dashed(Color::ORANGE, 2.0, 3.0, 3.0),
    );
    for p in points(&plaintext, |c| c.approx.top1) {
        plot.circle(p, 3.0, Color::BLUE);
    }
    let twins = twin_series(r);
    let twin_colors = [Color::GREEN, Color::PURPLE, Color::RED, Color::SLATE];
    let drawn = if twins.len() <= twin_colors.len() {
        &twins[..]
    } else {
        &[]
    };
    for ((_, series), &color) in drawn.iter().zip(&twin_colors) {
        plot.polyline(points(series, |c| c.approx.top1), Stroke::solid(color, 1.5));
        for p in points(series, |c| c.approx.top1) {
            plot.circle(p, 2.5, color);
        }
    }
    // legend: a sample of each line and its name
    let (lx, ly) = (left + 10.0, top + 14.0);
    plot.line((lx, ly - 4.0), (lx + 20.0, ly - 4.0), Stroke::solid(Color::BLUE, 2.0));
    plot.circle((lx + 10.0, ly - 4.0), 3.0, Color::BLUE);
    plot.text((lx + 26.0, ly), "approximate top-1", 12.0, Anchor::Start, Color::BLUE);
    let ly = ly + 16.0;
    plot.line(
        (lx, ly - 4.0),
        (lx + 20.0, ly - 4.0),
        Stroke::dashed(Color::ORANGE, 2.0, 3.0, 3.0),
    );
    plot.text(
        (lx + 26.0, ly),
        "agreement with exact",
        12.0,
        Anchor::Start,
        Color::ORANGE,
    );
    for (i, ((name, _), &color)) in drawn.iter().zip(&twin_colors).enumerate() {
        let ly = ly + 16.0 * (i + 1) as f64;
        plot.line((lx, ly - 4.0), (lx + 20.0, ly - 4.0), Stroke::solid(color, 1.5));
        plot.text((lx + 26.0, ly), format!("top-1 +{name}"), 12.0, Anchor::Start, color);
    }
    if drawn.len() < twins.len() {
        let ly = ly + 16.0;
        let note = format!("{} CKKS twin series: see precision.svg", twins.len());
        plot.text((lx + 26.0, ly), note, 12.0, Anchor::Start, Color::GRAY);
    }
    plot
}

/// The CKKS twins grouped by what they simulate (the label after the base's: " CKKS P @ b
/// bits"), each group in α order as the configurations come.
fn twin_series(r: &EvalReport) -> Vec<(String, Vec<&ConfigReport>)> {
    let mut series: Vec<(String, Vec<&ConfigReport>)> = Vec::new();
    for c in &r.configs {
        let Some(t) = &c.ckks else { continue };
        let name = c
            .label
            .strip_prefix(t.base.as_str())
            .unwrap_or(&c.label)
            .trim_start_matches(" +");
        match series.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.push(c),
            None => series.push((name.to_string(), vec![c])),
        }
    }
    series
}

/// Top-1 against bootstrapping precision, one curve per configuration, each with its plaintext
/// top-1 (dashed) and its cliff (a vertical mark).
pub fn precision_plot(title: &str, curves: &[PrecisionCurve]) -> Plot {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 40.0, 50.0);
    let mut plot = Plot::new(w, h);
    let bits = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0));
    let (b_min, b_max) = bits.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), b| (lo.min(b), hi.max(b)));
    let (b_min, b_max) = if b_min.is_finite() && b_max > b_min {
        (b_min, b_max)
    } else {
        (0.0, 32.0)
    };
    let values = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1).chain([c.plaintext_top1]));
    let y_min = (values.fold(100.0f64, f64::min) / 10.0).floor() * 10.0;
    let x = |b: f64| left + (b - b_min) / (b_max - b_min) * (w - left - right);
    let y = |v: f64| top + (100.0 - v) / (100.0 - y_min).max(1.0) * (h - top - bottom);
    let (x_end, y_axis) = (w - right, h - bottom);
    plot.text((w / 2.0, 20.0), title, 14.0, Anchor::Middle, Color::BLACK);
    percent_grid_and_axes(&mut plot, y_min, &y, (left, top), (x_end, y_axis));
    let step = ((b_max - b_min) / 10.0).ceil().max(1.0);
    let mut b = b_min;
    while b <= b_max + 1e-9 {
        plot.line((x(b), y_axis), (x(b), y_axis + 4.0), Stroke::solid(Color::BLACK, 1.0));
        plot.text(
            (x(b), y_axis + 18.0),
            format!("{b:.0}"),
            12.0,
            Anchor::Middle,
            Color::BLACK,
        );
        b += step;
    }
    plot.text(
        (w / 2.0, h - 12.0),
        "bootstrapping precision (bits: error std 2^-bits)",
        12.0,
        Anchor::Middle,
        Color::BLACK,
    );
    let palette = [Color::BLUE, Color::ORANGE, Color::GRAY, Color::BLACK];
    for (i, c) in curves.iter().enumerate() {
        let color = palette[i % palette.len()];
        let pts: Vec<(f64, f64)> = c.points.iter().map(|&(b, t)| (x(b), y(t))).collect();
        plot.polyline(pts.clone(), Stroke::solid(color, 2.0));
        pts.iter().for_each(|&p| plot.circle(p, 3.0, color));
        plot.line(
            (left, y(c.plaintext_top1)),
            (x_end, y(c.plaintext_top1)),
            Stroke::dashed(color, 1.0, 6.0, 4.0),
        );
        if let Some(cliff) = c.cliff_bits {
            plot.line(
                (x(cliff), top),
                (x(cliff), y_axis),
                Stroke::dashed(color, 1.0, 2.0, 3.0),
            );
        }
        let cliff = c.cliff_bits.map_or("none".to_string(), |b| format!("{b:.0} bits"));
        let ly = top + 14.0 + 16.0 * i as f64;
        plot.text(
            (x_end - 4.0, ly),
            format!(
                "{}: cliff {cliff} (dashed: plaintext {:.2}%)",
                c.label, c.plaintext_top1
            ),
            11.0,
            Anchor::End,
            color,
        );
    }
    plot
}

/// The sweep plot as SVG.
/// Horizontal grid lines and labels every 10 % from `y_min` to 100 %, then the x and y axes
/// from the plot area's corners `(left, top)` and `(x_end, y_axis)`.
pub fn percent_grid_and_axes(
    plot: &mut Plot,
    y_min: f64,
    y: &dyn Fn(f64) -> f64,
    (left, top): (f64, f64),
    (x_end, y_axis): (f64, f64),
) {
    let mut v = y_min;
    while v <= 100.0 + 1e-9 {
        plot.line((left, y(v)), (x_end, y(v)), Stroke::solid(Color::GRID, 1.0));
        plot.text(
            (left - 6.0, y(v) + 4.0),
            format!("{v:.0}%"),
            12.0,
            Anchor::End,
            Color::BLACK,
        );
        v += 10.0;
    }
    plot.line((left, y_axis), (x_end, y_axis), Stroke::solid(Color::BLACK, 1.0));
    plot.line((left, top), (left, y_axis), Stroke::solid(Color::BLACK, 1.0));
}

pub fn sweep_svg(r: &EvalReport) -> String {
    sweep_plot(r).to_svg()
}

/// The sweep plot as an image, [`PNG_SCALE`] pixels per plot unit (1280x800).
pub fn sweep_png(r: &EvalReport) -> RgbImage {
    sweep_plot(r).to_image(PNG_SCALE)
}

/// One activation site as the range plot shows it.
struct SiteRange {
    name: String,
    bound: f64,
    exact: f64,
    /// Of the last plaintext configuration; None without approximate configurations.
    approx: Option<f64>,
    /// Out-of-range or non-finite inputs in the last plaintext configuration.
    out: bool,
    /// |x| below which 99.9% of the exact inputs lie, to the log2 histogram's resolution.
    bulk: Option<f64>,
}

fn site_ranges(r: &EvalReport) -> Vec<SiteRange> {
    let bulk = |i: usize| {
        let hist = &r.exact_sites.get(i)?.log2_hist;
        let total: u64 = hist.iter().sum();
        let mut seen = 0;
        let bin = hist.iter().position(|&n| {
            seen += n;
            seen as f64 >= 0.999 * total as f64
        });
        bin.filter(|_| total > 0).map(|b| 2f64.powi(b as i32 + 1 + LOG2_MIN))
    };
    match last_plaintext(r) {
        Some(c) => c
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| SiteRange {
                name: s.site.clone(),
                bound: s.bound,
                exact: s.exact_max_abs as f64,
                approx: Some(s.approx_max_abs as f64),
                out: s.out_of_range > 0 || s.non_finite > 0,
                bulk: bulk(i),
            })
            .collect(),
        None => r
            .exact_sites
            .iter()
            .enumerate()
            .map(|(i, s)| SiteRange {
                name: s.name.clone(),
                bound: r.bounds.per_site.get(i).map_or(f64::NAN, |b| b.bound),
                exact: s.max_abs as f64,
                approx: None,
                out: false,
                bulk: bulk(i),
            })
            .collect(),
    }
}

/// The last plaintext configuration (a CKKS twin's ranges are its base's plus noise).
fn last_plaintext(r: &EvalReport) -> Option<&ConfigReport> {
    r.configs.iter().rev().find(|c| c.ckks.is_none())
}

/// "0.01", "1", "1000", "1e6": the label of 10^k.
fn decade_label(k: i32) -> String {
    match k {
        -3..=0 => format!("{}", 10f64.powi(k)),
        1..=4 => format!("{}", 10i64.pow(k as u32)),
        _ => format!("1e{k}"),
    }
}

/// Per activation site (network order), the largest |x| the exact network and the last plaintext approximate
/// configuration saw, on a log scale, with each site's bound B as a step line; sites with inputs
/// outside [-B, B] (or non-finite ones) in red.
pub fn site_ranges_plot(r: &EvalReport) -> Plot {
    let sites = site_ranges(r);
    let n = sites.len().max(1);
    let (left, right, top, bottom) = (60.0, 20.0, 62.0, 66.0);
    let w = (left + right + 14.0 * n as f64).clamp(640.0, 1600.0);
    let h = 420.0;
    let slot = (w - left - right) / n as f64;
    let mut plot = Plot::new(w, h);
    let c = last_plaintext(r);
    let which = c.map_or("exact network only".to_string(), |c| c.label.clone());
    let title = format!(
        "{} — max |x| per activation site ({which}; {} images)",
        r.model, r.images
    );
    plot.text((w / 2.0, 20.0), title, 14.0, Anchor::Middle, Color::BLACK);
    // log10 range over everything drawn
    let values = sites
        .iter()
        .flat_map(|s| [Some(s.exact), s.approx, Some(s.bound), s.bulk])
        .flatten();
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (k_lo, k_hi) = if lo.is_finite() {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (a, b.max(a + 1))
    } else {
        (0, 1)
    };
    let y_axis = h - bottom;
    let y = |v: f64| {
        let l = if v > 0.0 {
            v.log10().clamp(k_lo as f64, k_hi as f64)
        } else {
            k_lo as f64
        };
        y_axis - (l - k_lo as f64) / (k_hi - k_lo) as f64 * (y_axis - top)
    };
    let x0 = |i: usize| left + i as f64 * slot;
    // out-of-range bands behind everything
    for (i, _) in sites.iter().enumerate().filter(|(_, s)| s.out) {
        plot.rect(x0(i), top, slot, y_axis - top, Color::PALE_RED);
    }
    let decades = k_hi - k_lo;
    let every = (decades as f64 / 8.0).ceil().max(1.0) as i32;
    for k in (k_lo..=k_hi).filter(|k| (k - k_lo) % every == 0) {
        let yk = y(10f64.powi(k));
        plot.line((left, yk), (w - right, yk), Stroke::solid(Color::GRID, 1.0));
        plot.text((left - 6.0, yk + 4.0), decade_label(k), 12.0, Anchor::End, Color::BLACK);
    }
    plot.text(
        (left - 50.0, top - 8.0),
        "max |x| (log scale)",
        12.0,
        Anchor::Start,
        Color::BLACK,
    );
    // bars: exact (left half), approximate (right half)
    let bar = (slot * 0.4).max(1.0);
    for (i, s) in sites.iter().enumerate() {
        let xi = x0(i) + slot * 0.1;
        plot.rect(xi, y(s.exact), bar, y_axis - y(s.exact), Color::SLATE);
        if let Some(a) = s.approx {
            let fill = if s.out { Color::RED } else { Color::BLUE };
            plot.rect(xi + bar, y(a), bar, y_axis - y(a), fill);
        }
        if let Some(b) = s.bulk {
            plot.line((xi, y(b)), (xi + bar, y(b)), Stroke::solid(Color::BLACK, 1.0));
        }
    }
    // the bound B, as steps across the sites' slots
    let mut steps = Vec::new();
    for (i, s) in sites.iter().enumerate().filter(|(_, s)| s.bound.is_finite()) {
        steps.push((x0(i), y(s.bound)));
        steps.push((x0(i) + slot, y(s.bound)));
    }
    plot.polyline(steps, Stroke::solid(Color::BLACK, 2.0));
    // axes and site ticks
    plot.line((left, y_axis), (w - right, y_axis), Stroke::solid(Color::BLACK, 1.0));
    plot.line((left, top), (left, y_axis), Stroke::solid(Color::BLACK, 1.0));
    let label_every = [1, 2, 5, 10, 20, 50, 100, 200, 500]
        .into_iter()
        .find(|&k| slot * k as f64 >= 28.0)
        .unwrap_or(1000);
    for (i, s) in sites.iter().enumerate() {
        let xc = x0(i) + slot / 2.0;
        if i % label_every == 0 || s.out {
            let color = if s.out { Color::RED } else { Color::BLACK };
            plot.line((xc, y_axis), (xc, y_axis + 4.0), Stroke::solid(color, 1.0));
            if i % label_every == 0 {
                plot.text((xc, y_axis + 18.0), i.to_string(), 12.0, Anchor::Middle, color);
            }
        }
    }
    let out: Vec<String> = sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.out)
        .map(|(i, s)| format!("{i} {}", s.name))
        .collect();
    let x_label = format!("activation site ({} in network order)", sites.len());
    plot.text((w / 2.0, y_axis + 34.0), x_label, 12.0, Anchor::Middle, Color::BLACK);
    if !out.is_empty() {
        let shown = out.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
        let more = if out.len() > 6 {
            format!(" (+{} more)", out.len() - 6)
        } else {
            String::new()
        };
        let note = format!("out of range: {shown}{more}");
        plot.text((left, h - 10.0), note, 12.0, Anchor::Start, Color::RED);
    }
    // legend, above the plot area
    let mut lx = left;
    let ly = top - 24.0;
    let mut swatch = |plot: &mut Plot, fill: Option<Color>, text: String, color: Color| {
        match fill {
            Some(f) => plot.rect(lx, ly - 9.0, 10.0, 10.0, f),
            None => plot.line((lx, ly - 4.0), (lx + 10.0, ly - 4.0), Stroke::solid(Color::BLACK, 2.0)),
        }
        let tw = text.chars().count() as f64 * 7.0;
        plot.text((lx + 14.0, ly), text, 12.0, Anchor::Start, color);
        lx += 14.0 + tw + 16.0;
    };
    swatch(&mut plot, Some(Color::SLATE), "exact".into(), Color::BLACK);
    if c.is_some() {
        swatch(&mut plot, Some(Color::BLUE), "approximate".into(), Color::BLACK);
        swatch(&mut plot, Some(Color::RED), "out of range".into(), Color::RED);
    }
    swatch(&mut plot, None, "bound B".into(), Color::BLACK);
    if sites.iter().any(|s| s.bulk.is_some()) {
        let (x, y) = (lx, ly - 4.0);
        plot.line((x, y), (x + 10.0, y), Stroke::solid(Color::BLACK, 1.0));
        plot.text(
            (x + 14.0, ly),
            "99.9% of exact |x| below",
            12.0,
            Anchor::Start,
            Color::BLACK,
        );
    }
    plot
}

/// The site range plot as SVG.
pub fn site_ranges_svg(r: &EvalReport) -> String {
    site_ranges_plot(r).to_svg()
}

/// The site range plot as an image, [`PNG_SCALE`] pixels per plot unit.
pub fn site_ranges_png(r: &EvalReport) -> RgbImage {
    site_ranges_plot(r).to_image(PNG_SCALE)
}

/// Writes sweep.svg, sweep.png, site_ranges.svg and site_ranges.png into `dir` (which must exist);
/// returns their paths.
pub fn write_plots(r: &EvalReport, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut plots = vec![("sweep", sweep_plot(r)), ("site_ranges", site_ranges_plot(r))];
    if !r.ckks_precision.is_empty() {
        let title = format!("{} — top-1 vs bootstrapping precision ({} images)", r.model, r.images);
        plots.push(("precision", precision_plot(&title, &r.ckks_precision)));
    }
    let mut written = Vec::new();
    for (name, plot) in &plots {
        let svg = dir.join(format!("{name}.svg"));
        std::fs::write(&svg, plot.to_svg()).map_err(|e| format!("writing {}: {e}", svg.display()))?;
        written.push(svg);
        let png = dir.join(format!("{name}.png"));
        plot.to_image(PNG_SCALE)
            .save_with_format(&png, image::ImageFormat::Png)
            .map_err(|e| format!("writing {}: {e}", png.display()))?;
        written.push(png);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_plot_draws_each_curve_and_its_cliff() {
        let curve = PrecisionCurve::new("α=10".into(), 91.0, vec![(12.0, 90.8), (8.0, 10.0), (10.0, 80.0)]);
        assert_eq!(curve.points[0].0, 8.0);
        assert_eq!(curve.cliff_bits, Some(12.0));
        let svg = precision_plot("resnet20", &[curve]).to_svg();
        assert!(svg.contains("cliff 12 bits"), "{svg}");
        assert!(svg.starts_with("<svg"));
    }
}
