//! Baseline JPEG decoding that reproduces libjpeg-turbo's default output bit for bit (the decoder behind
//! PIL, hence behind torchvision's ImageNet numbers), so preprocessing parity does not stop at the decoder.
//!
//! zune-jpeg (used for everything this module does not cover) differs from libjpeg-turbo by ±1-9 levels:
//! its IDCT rounds differently and its chroma upsampler rounds the vertical and horizontal passes separately.
//! Here, from the algorithms' published descriptions (not libjpeg's code):
//! - the "islow" integer IDCT (Loeffler-Ligtenberg-Moschytz, 13-bit constants, 2 extra bits between
//!   passes, final descale by 18 bits, range limiting through a 10-bit wrap-around table);
//! - "fancy" chroma upsampling: triangle filter 3/4-1/4, for 2x2 subsampling both directions summed at
//!   4x scale before one rounding (biases 8 and 7 alternate), for 2x1 biases 1 and 2; edges replicate;
//! - YCbCr → RGB with 16-bit fixed-point tables.
//!
//! Covered: baseline / extended sequential Huffman, 8-bit, one interleaved scan (or a single-component
//! image), sampling 4:4:4, 4:2:2 (2x1) and 4:2:0 (2x2), restart intervals. Anything else (progressive,
//! CMYK, Adobe-transformed, other samplings) returns `Ok(None)` and the caller falls back to zune-jpeg.

use super::RgbImage;

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

/// Decodes `bytes` if it is a JPEG this module reproduces exactly; `Ok(None)` for the other kinds.
pub(crate) fn decode(bytes: &[u8]) -> Result<Option<RgbImage>, String> {
    let Some(frame) = parse(bytes)? else { return Ok(None) };
    let planes = frame.decode_scan(bytes)?;
    Ok(Some(frame.to_rgb(planes)))
}

#[derive(Clone)]
struct Huffman {
    /// 9-bit fast lookup: (code length, symbol); length 0 = longer code.
    fast: Vec<(u8, u8)>,
    /// Canonical decoding for longer codes: per length, max code (or -1) and offset into `symbols`.
    maxcode: [i32; 18],
    valoffset: [i32; 17],
    symbols: Vec<u8>,
}

const FAST_BITS: u32 = 9;

/// PIL's `DecompressionBombError` threshold (2 x `Image.MAX_IMAGE_PIXELS`): a header claiming more is
/// refused before anything is allocated.
pub(crate) const MAX_PIXELS: usize = 2 * 89_478_485;

/// Refuses a frame larger than [`MAX_PIXELS`], whichever decoder would decode it.
pub(crate) fn check_pixel_limit(width: usize, height: usize) -> Result<(), String> {
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(format!(
            "{width}x{height} pixels exceeds the decompression-bomb limit ({MAX_PIXELS} pixels, as PIL)"
        ));
    }
    Ok(())
}

/// The frame types (SOFn markers) no decoder here handles: libjpeg-turbo reads some of them
/// (arithmetic coding), zune-jpeg none, so they are named instead of failing obscurely.
fn unsupported_frame(marker: u8) -> Option<&'static str> {
    match marker {
        0xC3 => Some("lossless"),
        0xC5..=0xC7 => Some("hierarchical (differential)"),
        0xC9 | 0xCA => Some("arithmetic-coded"),
        0xCB => Some("lossless arithmetic-coded"),
        0xCD..=0xCF => Some("hierarchical arithmetic-coded"),
        _ => None,
    }
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: Vec<u8>) -> Result<Huffman, String> {
        let mut fast = vec![(0u8, 0u8); 1 << FAST_BITS];
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 17];
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16usize {
            let n = usize::from(counts[len - 1]);
            valoffset[len] = k as i32 - code;
            for _ in 0..n {
                if code >= 1 << len {
                    return Err("invalid Huffman table (too many codes)".into());
                }
                if len as u32 <= FAST_BITS {
                    let shift = FAST_BITS - len as u32;
                    for fill in 0..(1usize << shift) {
                        fast[((code as usize) << shift) | fill] = (len as u8, symbols[k]);
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                maxcode[len] = code - 1;
            }
            code <<= 1;
        }
        maxcode[17] = i32::MAX; // sentinel: no code is longer than 16 bits
        Ok(Huffman {
            fast,
            maxcode,
            valoffset,
            symbols,
        })
    }
}

/// Entropy-coded data reader with libjpeg's conventions: stuffed 0xFF00 → 0xFF; at a marker, zero bits
/// are supplied (libjpeg's behaviour on a scan that ends early); running out of file is an error.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    count: u32,
    at_marker: bool,
    truncated: bool,
}

impl<'a> Bits<'a> {
    fn fill(&mut self) {
        while self.count <= 56 {
            let byte = if self.at_marker {
                0
            } else if self.pos >= self.data.len() {
                self.truncated = true;
                0
            } else if self.data[self.pos] != 0xFF {
                self.pos += 1;
                self.data[self.pos - 1]
            } else {
                match self.data.get(self.pos + 1) {
                    Some(0x00) => {
                        self.pos += 2;
                        0xFF
                    }
                    Some(_) => {
                        self.at_marker = true;
                        0
                    }
                    None => {
                        self.truncated = true;
                        0
                    }
                }
            };
            self.acc |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    fn peek(&mut self, n: u32) -> u32 {
        if self.count < n {
            self.fill();
        }
        (self.acc >> (64 - n)) as u32
    }

    fn skip(&mut self, n: u32) {
        self.acc <<= n;
        self.count -= n;
    }

    fn bits(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.skip(n);
        v as i32
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8, String> {
        let (len, symbol) = table.fast[self.peek(FAST_BITS) as usize];
        if len > 0 {
            self.skip(u32::from(len));
            return Ok(symbol);
        }
        let code16 = self.peek(16) as i32;
        for len in FAST_BITS as usize + 1..=16 {
            let code = code16 >> (16 - len);
            if code <= table.maxcode[len] {
                self.skip(len as u32);
                let at = (code + table.valoffset[len]) as usize;
                return table
                    .symbols
                    .get(at)
                    .copied()
                    .ok_or_else(|| "corrupt Huffman table".to_string());
            }
        }
        Err("corrupt JPEG data: bad Huffman code".into())
    }

    /// JPEG's sign extension of an `s`-bit magnitude category.
    fn receive_extend(&mut self, s: u32) -> i32 {
        let v = self.bits(s);
        if s > 0 && v < 1 << (s - 1) { v - (1 << s) + 1 } else { v }
    }

    /// After a restart interval: drop leftover bits and consume the RSTn marker.
    fn restart(&mut self) -> Result<(), String> {
        self.acc = 0;
        self.count = 0;
        self.at_marker = false;
        while self.data.get(self.pos) == Some(&0xFF) && self.data.get(self.pos + 1) == Some(&0xFF) {
            self.pos += 1;
        }
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(0xD0..=0xD7)) => {
                self.pos += 2;
                Ok(())
            }
            _ => Err("corrupt JPEG data: missing restart marker".into()),
        }
    }
}

struct Component {
    h: usize,
    v: usize,
    quant: [u16; 64],
    dc: usize,
    ac: usize,
    /// Samples per row / rows actually in the image for this component (libjpeg's downsampled size).
    width: usize,
    height: usize,
    /// Blocks per row / column covered by the scan.
    blocks_w: usize,
    blocks_h: usize,
}

struct Frame {
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    components: Vec<Component>,
    dc_tables: Vec<Option<Huffman>>,
    ac_tables: Vec<Option<Huffman>>,
    restart_interval: usize,
    /// Byte offset of the entropy-coded data of the (single) scan.
    scan_start: usize,
}

/// A start-of-frame header: width, height and per component (id, h, v, quantisation table).
type Sof = (usize, usize, Vec<(u8, usize, usize, usize)>);

fn be16(bytes: &[u8], at: usize) -> Result<usize, String> {
    match bytes.get(at..at + 2) {
        Some(b) => Ok(usize::from(u16::from_be_bytes([b[0], b[1]]))),
        None => Err("JPEG truncated inside a marker".into()),
    }
}

/// Reads the markers up to the first scan; `None` when the file needs something this module lacks.
fn parse(bytes: &[u8]) -> Result<Option<Frame>, String> {
    let mut quant = [[0u16; 64]; 4];
    let mut dc_tables: Vec<Option<Huffman>> = vec![None; 4];
    let mut ac_tables: Vec<Option<Huffman>> = vec![None; 4];
    let mut frame: Option<Sof> = None;
    let mut restart_interval = 0;
    let (mut jfif, mut adobe_transform) = (false, None);
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(0xFF), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            return Err(format!("expected a JPEG marker at byte {pos}"));
        };
        let len = be16(bytes, pos + 2)?;
        let body = bytes
            .get(pos + 4..pos + 2 + len)
            .ok_or("JPEG truncated inside a marker segment")?;
        match marker {
            0xC0 | 0xC1 => {
                if body.len() < 6 || body[0] != 8 {
                    return Ok(None); // not 8-bit
                }
                let (height, width, n) = (be16(body, 1)?, be16(body, 3)?, usize::from(body[5]));
                if body.len() < 6 + 3 * n || width == 0 || height == 0 {
                    return Err("invalid SOF segment".into());
                }
                check_pixel_limit(width, height)?;
                let comps = (0..n)
                    .map(|i| {
                        let c = &body[6 + 3 * i..9 + 3 * i];
                        (
                            c[0],
                            usize::from(c[1] >> 4),
                            usize::from(c[1] & 15),
                            usize::from(c[2] & 3),
                        )
                    })
                    .collect();
                frame = Some((width, height, comps));
            }
            0xC2..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if let Some(kind) = unsupported_frame(marker) {
                    return Err(format!(
                        "unsupported JPEG frame type SOF{} ({kind}): only baseline, extended and progressive \
                         Huffman-coded JPEGs are decoded",
                        marker - 0xC0
                    ));
                }
                return Ok(None); // progressive: zune-jpeg
            }
            0xC4 => read_huffman(body, &mut dc_tables, &mut ac_tables)?,
            0xDB => read_quant(body, &mut quant)?,
            0xDD => restart_interval = be16(body, 0)?,
            0xE0 => jfif |= body.starts_with(b"JFIF\0"),
            // Adobe APP14: "Adobe", version, two flag words, then the colour transform byte.
            0xEE if body.starts_with(b"Adobe") => adobe_transform = Some(body.get(11).copied().unwrap_or(0)),
            0xDA => {
                let Some((width, height, comps)) = frame else {
                    return Err("scan before frame header".into());
                };
                return build_frame(
                    body,
                    pos + 2 + len,
                    (width, height, comps),
                    quant,
                    dc_tables,
                    ac_tables,
                    restart_interval,
                    jfif,
                    adobe_transform,
                );
            }
            0xD9 => return Err("JPEG ends before any scan".into()),
            _ => {}
        }
        pos += 2 + len;
    }
}

#[allow(clippy::too_many_arguments)]
fn build_frame(
    sos: &[u8],
    scan_start: usize,
    (width, height, comps): Sof,
    quant: [[u16; 64]; 4],
    dc_tables: Vec<Option<Huffman>>,
    ac_tables: Vec<Option<Huffman>>,
    restart_interval: usize,
    jfif: bool,
    adobe_transform: Option<u8>,
) -> Result<Option<Frame>, String> {
    let n = comps.len();
    // One interleaved scan with every component; YCbCr (3) or grey (1); supported samplings only.
    let ids: Vec<u8> = comps.iter().map(|c| c.0).collect();
    let rgb_ids = !jfif && ids == [b'R', b'G', b'B'];
    let samplings: Vec<(usize, usize)> = comps.iter().map(|c| (c.1, c.2)).collect();
    let supported_sampling = match n {
        1 => true,
        3 => matches!(samplings[0], (1, 1) | (2, 1) | (2, 2)) && samplings[1] == (1, 1) && samplings[2] == (1, 1),
        _ => false,
    };
    // Adobe transform 0 on 3 components means RGB (and CMYK-type files have 4): leave those to zune.
    let adobe_rgb = n == 3 && adobe_transform.is_some_and(|t| t != 1);
    if adobe_rgb || rgb_ids || !supported_sampling || sos.first().map(|&c| usize::from(c)) != Some(n) {
        return Ok(None);
    }
    if sos.len() < 1 + 2 * n + 3 {
        return Err("invalid SOS segment".into());
    }
    // The scan's spectral selection must be the whole block (a sequential scan).
    let (ss, se) = (sos[1 + 2 * n], sos[2 + 2 * n]);
    if ss != 0 || se != 63 {
        return Ok(None);
    }
    let (hmax, vmax) = if n == 1 {
        (1, 1)
    } else {
        (samplings[0].0, samplings[0].1)
    };
    let (mcu_w, mcu_h) = (8 * hmax, 8 * vmax);
    let (mcus_x, mcus_y) = (width.div_ceil(mcu_w), height.div_ceil(mcu_h));
    let mut components = Vec::with_capacity(n);
    for (i, &(id, h, v, tq)) in comps.iter().enumerate() {
        let (h, v) = if n == 1 { (1, 1) } else { (h, v) };
        let (scan_id, tables) = (sos[1 + 2 * i], sos[2 + 2 * i]);
        if scan_id != id {
            return Ok(None); // scan order differs from frame order: not worth supporting
        }
        let (dc, ac) = (usize::from(tables >> 4), usize::from(tables & 15));
        if dc > 3 || ac > 3 || dc_tables[dc].is_none() || ac_tables[ac].is_none() {
            return Err("scan refers to a missing Huffman table".into());
        }
        let (cw, ch) = ((width * h).div_ceil(hmax), (height * v).div_ceil(vmax));
        // A single-component scan covers only the blocks inside the component; an interleaved one whole MCUs.
        let (blocks_w, blocks_h) = if n == 1 {
            (cw.div_ceil(8), ch.div_ceil(8))
        } else {
            (mcus_x * h, mcus_y * v)
        };
        components.push(Component {
            h,
            v,
            quant: quant[tq],
            dc,
            ac,
            width: cw,
            height: ch,
            blocks_w,
            blocks_h,
        });
    }
    Ok(Some(Frame {
        width,
        height,
        hmax,
        vmax,
        components,
        dc_tables,
        ac_tables,
        restart_interval,
        scan_start,
    }))
}

fn read_huffman(mut body: &[u8], dc: &mut [Option<Huffman>], ac: &mut [Option<Huffman>]) -> Result<(), String> {
    while !body.is_empty() {
        let (class, id) = (body[0] >> 4, usize::from(body[0] & 15));
        let counts: [u8; 16] = body.get(1..17).ok_or("truncated DHT")?.try_into().expect("16 bytes");
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = body.get(17..17 + total).ok_or("truncated DHT")?.to_vec();
        if id > 3 || class > 1 {
            return Err("invalid DHT table id".into());
        }
        let table = Huffman::new(&counts, symbols)?;
        if class == 0 {
            dc[id] = Some(table)
        } else {
            ac[id] = Some(table)
        }
        body = &body[17 + total..];
    }
    Ok(())
}

fn read_quant(mut body: &[u8], quant: &mut [[u16; 64]; 4]) -> Result<(), String> {
    while !body.is_empty() {
        let (precision, id) = (body[0] >> 4, usize::from(body[0] & 15));
        let size = if precision == 0 { 64 } else { 128 };
        let values = body.get(1..1 + size).ok_or("truncated DQT")?;
        if id > 3 {
            return Err("invalid DQT table id".into());
        }
        for k in 0..64 {
            let q = if precision == 0 {
                u16::from(values[k])
            } else {
                u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
            };
            quant[id][ZIGZAG[k]] = q; // stored in zigzag order, kept in natural order
        }
        body = &body[1 + size..];
    }
    Ok(())
}

impl Frame {
    /// Entropy-decodes and inverse-transforms every block: one sample plane per component, 8 samples per
    /// block in each direction.
    fn decode_scan(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut planes: Vec<Vec<u8>> = self
            .components
            .iter()
            .map(|c| vec![0u8; c.blocks_w * c.blocks_h * 64])
            .collect();
        let mut bits = Bits {
            data: bytes,
            pos: self.scan_start,
            acc: 0,
            count: 0,
            at_marker: false,
            truncated: false,
        };
        let mut preds = vec![0i32; self.components.len()];
        let single = self.components.len() == 1;
        let (units_x, units_y) = if single {
            (self.components[0].blocks_w, self.components[0].blocks_h)
        } else {
            (self.width.div_ceil(8 * self.hmax), self.height.div_ceil(8 * self.vmax))
        };
        let mut coefs = [0i16; 64];
        for unit in 0..units_x * units_y {
            if self.restart_interval > 0 && unit > 0 && unit % self.restart_interval == 0 {
                bits.restart()?;
                preds.fill(0);
            }
            let (ux, uy) = (unit % units_x, unit / units_x);
            for (ci, comp) in self.components.iter().enumerate() {
                for by in 0..comp.v {
                    for bx in 0..comp.h {
                        self.decode_block(&mut bits, comp, &mut preds[ci], &mut coefs)?;
                        let (x, y) = (ux * comp.h + bx, uy * comp.v + by);
                        let stride = comp.blocks_w * 8;
                        idct_islow(&coefs, &comp.quant, &mut planes[ci][y * 8 * stride + x * 8..], stride);
                    }
                }
            }
        }
        if bits.truncated {
            return Err("image file is truncated".into());
        }
        Ok(planes)
    }

    fn decode_block(
        &self,
        bits: &mut Bits,
        comp: &Component,
        pred: &mut i32,
        coefs: &mut [i16; 64],
    ) -> Result<(), String> {
        let (dc, ac) = (self.dc_tables[comp.dc].as_ref(), self.ac_tables[comp.ac].as_ref());
        let (dc, ac) = (dc.ok_or("missing DC table")?, ac.ok_or("missing AC table")?);
        coefs.fill(0);
        let s = u32::from(bits.decode(dc)?);
        if s > 16 {
            return Err("corrupt JPEG data: bad DC magnitude".into());
        }
        *pred = pred.wrapping_add(bits.receive_extend(s));
        coefs[0] = *pred as i16; // libjpeg stores coefficients as 16-bit
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(ac)?;
            let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
            if size == 0 {
                if run != 15 {
                    break; // end of block
                }
                k += 16;
                continue;
            }
            k += run;
            // Past the end only in corrupt data; libjpeg writes those to the last coefficient.
            coefs[ZIGZAG[k.min(63)]] = bits.receive_extend(size) as i16;
            k += 1;
        }
        Ok(())
    }

    /// Upsamples chroma (fancy, as libjpeg) and converts to interleaved RGB, cropping the block padding.
    fn to_rgb(&self, planes: Vec<Vec<u8>>) -> RgbImage {
        let (w, h) = (self.width, self.height);
        let mut data = Vec::with_capacity(w * h * 3);
        if self.components.len() == 1 {
            let stride = self.components[0].blocks_w * 8;
            for row in planes[0].chunks_exact(stride).take(h) {
                data.extend(row[..w].iter().flat_map(|&g| [g, g, g]));
            }
            return RgbImage {
                width: w,
                height: h,
                data,
            };
        }
        let full: Vec<Vec<u8>> = self
            .components
            .iter()
            .zip(&planes)
            .map(|(c, p)| self.upsample(c, p))
            .collect();
        let table = YccTables::new();
        for ((&luma, &cb), &cr) in full[0].iter().zip(&full[1]).zip(&full[2]) {
            data.extend(table.rgb(luma, cb, cr));
        }
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    /// A component at full resolution, `width` x `height` without block padding.
    fn upsample(&self, comp: &Component, plane: &[u8]) -> Vec<u8> {
        let stride = comp.blocks_w * 8;
        let (fx, fy) = (self.hmax / comp.h, self.vmax / comp.v);
        let (cw, ch) = (comp.width, comp.height);
        let row = |r: usize| &plane[r * stride..r * stride + cw];
        let mut out = Vec::with_capacity(self.width * self.height);
        if (fx, fy) == (1, 1) {
            (0..self.height).for_each(|y| out.extend_from_slice(&row(y)[..self.width]));
            return out;
        }
        for y in 0..self.height {
            let mut line = vec![0u8; 2 * cw];
            match fy {
                1 => fancy_h2v1(row(y), &mut line),
                _ => {
                    // Output row y sits between input rows y/2 and its neighbour above (even y) or below (odd).
                    let near = y / 2;
                    let far = if y % 2 == 0 {
                        near.saturating_sub(1)
                    } else {
                        (near + 1).min(ch - 1)
                    };
                    fancy_h2v2(row(near), row(far), &mut line);
                }
            }
            out.extend_from_slice(&line[..self.width]);
        }
        out
    }
}

/// Horizontal 2x triangle upsampling; rounding biases 1 and 2 alternate so errors do not accumulate.
fn fancy_h2v1(input: &[u8], out: &mut [u8]) {
    let n = input.len();
    if n < 3 {
        // libjpeg only uses the fancy filter when the row has more than 2 samples.
        for (i, &v) in input.iter().enumerate() {
            out[2 * i] = v;
            out[2 * i + 1] = v;
        }
        return;
    }
    let s = |i: usize| i32::from(input[i]);
    out[0] = input[0];
    out[1] = ((s(0) * 3 + s(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        out[2 * i] = ((s(i) * 3 + s(i - 1) + 1) >> 2) as u8;
        out[2 * i + 1] = ((s(i) * 3 + s(i + 1) + 2) >> 2) as u8;
    }
    out[2 * n - 2] = ((s(n - 1) * 3 + s(n - 2) + 1) >> 2) as u8;
    out[2 * n - 1] = input[n - 1];
}

/// 2x2 triangle upsampling of one output row: column sums `3 * near + far` (4x scale), then the
/// horizontal 3/4-1/4 step, one rounding at the end (biases 8 and 7 alternate).
fn fancy_h2v2(near: &[u8], far: &[u8], out: &mut [u8]) {
    let n = near.len();
    let sums: Vec<i32> = near
        .iter()
        .zip(far)
        .map(|(&a, &b)| i32::from(a) * 3 + i32::from(b))
        .collect();
    if n < 3 {
        for (i, &sum) in sums.iter().enumerate() {
            let v = ((sum + 2) >> 2) as u8;
            out[2 * i] = v;
            out[2 * i + 1] = v;
        }
        return;
    }
    out[0] = ((sums[0] * 4 + 8) >> 4) as u8;
    out[1] = ((sums[0] * 3 + sums[1] + 7) >> 4) as u8;
    for i in 1..n - 1 {
        out[2 * i] = ((sums[i] * 3 + sums[i - 1] + 8) >> 4) as u8;
        out[2 * i + 1] = ((sums[i] * 3 + sums[i + 1] + 7) >> 4) as u8;
    }
    out[2 * n - 2] = ((sums[n - 1] * 3 + sums[n - 2] + 8) >> 4) as u8;
    out[2 * n - 1] = ((sums[n - 1] * 4 + 7) >> 4) as u8;
}

/// YCbCr → RGB in 16-bit fixed point (JFIF equations, constants rounded once into tables).
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    fn new() -> YccTables {
        const SCALE: i64 = 16;
        const HALF: i64 = 1 << (SCALE - 1);
        let fix = |x: f64| (x * (1i64 << SCALE) as f64 + 0.5) as i64;
        let mut t = YccTables {
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        for i in 0..256 {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + HALF) >> SCALE) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + HALF) >> SCALE) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + HALF;
        }
        t
    }

    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
        let g = ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
        [y + self.cr_r[cr], y + g, y + self.cb_b[cb]].map(|v| v.clamp(0, 255) as u8)
    }
}

// The islow IDCT's fixed-point constants: round(c * 2^13).
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const F0_298: i64 = 2446;
const F0_390: i64 = 3196;
const F0_541: i64 = 4433;
const F0_765: i64 = 6270;
const F0_899: i64 = 7373;
const F1_175: i64 = 9633;
const F1_501: i64 = 12299;
const F1_847: i64 = 15137;
const F1_961: i64 = 16069;
const F2_053: i64 = 16819;
const F2_562: i64 = 20995;
const F3_072: i64 = 25172;

fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// One 1-D 8-point LLM IDCT on `v` (even part from 0,2,4,6; odd from 1,3,5,7), before descaling.
/// Returns the 8 outputs at scale 2^13.
fn idct_1d(v: [i64; 8]) -> [i64; 8] {
    let z1 = (v[2] + v[6]) * F0_541;
    let tmp2 = z1 - v[6] * F1_847;
    let tmp3 = z1 + v[2] * F0_765;
    let tmp0 = (v[0] + v[4]) << CONST_BITS;
    let tmp1 = (v[0] - v[4]) << CONST_BITS;
    let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);

    let (o0, o1, o2, o3) = (v[7], v[5], v[3], v[1]);
    let (z1, z2, z3, z4) = (o0 + o3, o1 + o2, o0 + o2, o1 + o3);
    let z5 = (z3 + z4) * F1_175;
    let (o0, o1, o2, o3) = (o0 * F0_298, o1 * F2_053, o2 * F3_072, o3 * F1_501);
    let (z1, z2) = (z1 * -F0_899, z2 * -F2_562);
    let (z3, z4) = (z3 * -F1_961 + z5, z4 * -F0_390 + z5);
    let (o0, o1, o2, o3) = (o0 + z1 + z3, o1 + z2 + z4, o2 + z2 + z3, o3 + z1 + z4);
    [
        t10 + o3,
        t11 + o2,
        t12 + o1,
        t13 + o0,
        t13 - o0,
        t12 - o1,
        t11 - o2,
        t10 - o3,
    ]
}

/// libjpeg's post-IDCT range limit: `v + 128` clamped, with values wrapped modulo 1024 first (which only
/// matters for corrupt coefficients, where it reproduces libjpeg's exact garbage).
fn range_limit(v: i64) -> u8 {
    let i = (v & 1023) as usize;
    match i {
        0..128 => (i + 128) as u8,
        128..512 => 255,
        512..896 => 0,
        _ => (i - 896) as u8,
    }
}

/// Dequantises and inverse-transforms one block into `out` (rows `stride` apart).
///
/// Columns (pass 1) and rows (pass 2) whose AC terms are all zero take a shortcut that gives exactly
/// the full computation's result (`dc << 2`, resp. `descale(dc, 5)`); most columns of real blocks are.
fn idct_islow(coefs: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let v: [i64; 8] = std::array::from_fn(|r| i64::from(coefs[r * 8 + col]) * i64::from(quant[r * 8 + col]));
        if v[1..].iter().all(|&x| x == 0) {
            let dc = i64::from((v[0] << PASS1_BITS) as i32);
            (0..8).for_each(|r| ws[r * 8 + col] = dc);
            continue;
        }
        let res = idct_1d(v);
        for r in 0..8 {
            // Intermediate values are kept as 32-bit ints (with 2 extra fraction bits), as libjpeg does.
            ws[r * 8 + col] = i64::from(descale(res[r], CONST_BITS - PASS1_BITS) as i32);
        }
    }
    for r in 0..8 {
        let v: [i64; 8] = ws[r * 8..r * 8 + 8].try_into().expect("8 values");
        let row = &mut out[r * stride..r * stride + 8];
        if v[1..].iter().all(|&x| x == 0) {
            row.fill(range_limit(descale(v[0], PASS1_BITS + 3)));
            continue;
        }
        let res = idct_1d(v);
        for (o, &x) in row.iter_mut().zip(&res) {
            *o = range_limit(descale(x, CONST_BITS + PASS1_BITS + 3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dc_only_block_is_flat() {
        let mut coefs = [0i16; 64];
        coefs[0] = 10;
        let quant = [16u16; 64];
        let mut out = vec![0u8; 64];
        idct_islow(&coefs, &quant, &mut out, 8);
        // DC 10*16 = 160 → 160/8 = 20 above mid-grey.
        assert!(out.iter().all(|&v| v == 148), "{out:?}");
    }

    #[test]
    fn range_limit_clamps() {
        assert_eq!(
            (
                range_limit(-129),
                range_limit(-128),
                range_limit(0),
                range_limit(127),
                range_limit(128)
            ),
            (0, 0, 128, 255, 255)
        );
    }
}
