//! The one matrix product of the CPU backend: a register-blocked SIMD GEMM.
//!
//! Every output is a single chain of fused multiply-adds over the inner dimension in order
//! (`c = fma(a[i, p], b[p, j], c)` for p = 0, 1, …), started from 0 (or from `c` when
//! accumulating), then the epilogue adds a bias and a residual in that order. Tiling, threads
//! and batch size only decide *which* outputs a call computes, never the order of a sum, so
//! results are bit-identical for any thread count or grouping of images.
//!
//! Layout: a is packed once into row tiles of MR rows ([`PackedA`]: convolution weights once
//! per run, other operands per call). b is read in panels of [`NR`] columns, row p of a panel
//! at `offsets[p]` plus the panel's start: a panel written into the thread's buffer by a
//! caller's `fill` (an unfolded image, [`matmul_filled`]), or a window of a buffer read in
//! place (a padded image whose every convolution tap is a shifted view, [`matmul_shifted`]).
//! Work is cut into units (a panel × a block of row tiles); a unit fills its panel once and
//! runs the microkernel over its row tiles, writing each finished tile straight into c
//! through an [`Output`] layout (NCHW images, padding columns dropped) with the epilogue.
//!
//! One microkernel, written once over [`Lanes`], keeps an MR × 16 tile of c in registers for
//! the whole inner dimension: AVX-512 8 × 16, AVX2 + FMA 6 × 16, portable 4 × 16 (chosen at run
//! time like [`super::sign_f32`]; 8 × 16 measured as fast as 16 × 16 on Zen 4), and a
//! half-width variant for a last panel of at most 8 columns.

use super::sign_f32::{Isa, Lanes, Portable};
use std::cell::Cell;
use std::ops::Range;

/// A strided read-only matrix view: element (i, j) is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a contiguous row-major `cols × rows` matrix (no copy).
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    fn check_bounds(&self) {
        let fits = self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len();
        assert!(fits, "matmul: view out of bounds");
    }
}

/// Columns per panel of b: the microkernel's width.
pub const NR: usize = 16;
/// The largest MR of any microkernel.
const MAX_MR: usize = 8;
/// Columns of a wide tile: two panels read in place at once (AVX-512: 16 accumulators, so
/// each a value loaded feeds twice the multiply-adds).
const WIDE: usize = 2 * NR;
/// One tile of c, row-major, WIDE values a row (NR used by a narrow tile).
type Tile = [f32; MAX_MR * WIDE];

/// Whether one product may use several threads (when the caller is not already parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    One,
    All,
}

/// a (m × k) packed for this CPU's microkernel: row tile r holds, for p = 0 … k − 1, the MR
/// values a[r·MR + i, p] (zero past a's last row), so the kernel streams one tile contiguously.
#[derive(Clone)]
pub struct PackedA {
    data: Vec<f32>,
    rows_per_tile: usize,
    m: usize,
    k: usize,
}

impl PackedA {
    /// `a` packed for the microkernel [`matmul_filled`] and [`matmul_shifted`] use.
    pub fn new(a: MatRef) -> PackedA {
        PackedA::for_kernel(Kernel::detect(), a)
    }

    fn for_kernel(kernel: Kernel, a: MatRef) -> PackedA {
        a.check_bounds();
        let (rows, k) = (kernel.rows(), a.cols);
        let mut data = vec![0.0; a.rows.div_ceil(rows) * rows * k];
        if k > 0 {
            for (r, tile) in data.chunks_exact_mut(rows * k).enumerate() {
                let valid = rows.min(a.rows - r * rows);
                for (p, column) in tile.chunks_exact_mut(rows).enumerate() {
                    for (i, v) in column[..valid].iter_mut().enumerate() {
                        *v = a.at(r * rows + i, p);
                    }
                }
            }
        }
        PackedA {
            data,
            rows_per_tile: rows,
            m: a.rows,
            k,
        }
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn depth(&self) -> usize {
        self.k
    }

    fn row_tiles(&self) -> usize {
        self.m.div_ceil(self.rows_per_tile)
    }

    fn tile(&self, r: usize) -> &[f32] {
        let len = self.rows_per_tile * self.k;
        &self.data[r * len..(r + 1) * len]
    }
}

/// Where a product's columns land: column q is (image, y, x) of `images` blocks of
/// `grid_rows × grid_cols` columns; those with y < height and x < width are outputs, row i
/// of which is `data[image·image_stride + (first_row + i)·plane + y·width + x]` (plane =
/// height·width); the others (a padded image's border) are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub grid_cols: usize,
    pub grid_rows: usize,
    pub width: usize,
    pub height: usize,
    pub image_stride: usize,
    pub first_row: usize,
}

impl Layout {
    /// A plain row-major `m × n` result.
    pub fn row_major(n: usize) -> Layout {
        Layout {
            grid_cols: n,
            grid_rows: 1,
            width: n,
            height: 1,
            image_stride: 0,
            first_row: 0,
        }
    }

    fn plane(&self) -> usize {
        self.width * self.height
    }

    /// Every column an output: no padding columns or rows in the grid.
    fn dense(&self) -> bool {
        self.grid_cols == self.width && self.grid_rows == self.height
    }

    fn block(&self) -> usize {
        self.grid_cols * self.grid_rows
    }

    /// The output runs among columns `first … first + count − 1`.
    fn runs(&self, first: usize, count: usize) -> Runs {
        let mut runs = Runs::default();
        let (end, mut q) = (first + count, first);
        while q < end {
            let (image, within) = (q / self.block(), q % self.block());
            let (y, x) = (within / self.grid_cols, within % self.grid_cols);
            let run = (self.grid_cols - x).min(end - q);
            if y < self.height && x < self.width {
                let len = run.min(self.width - x);
                runs.push(q - first, len, image * self.image_stride + y * self.width + x);
            }
            q += run;
        }
        runs
    }

    /// One past the largest index an output of `m` rows and `n` columns writes (0 if none).
    fn extent(&self, m: usize, n: usize) -> usize {
        let images = n.div_ceil(self.block());
        if m == 0 || images == 0 {
            return 0;
        }
        (images - 1) * self.image_stride + (self.first_row + m) * self.plane()
    }
}

/// The runs of output columns in one tile: (column in the tile, length, offset in a row).
#[derive(Default)]
struct Runs {
    runs: [(usize, usize, usize); WIDE],
    count: usize,
}

impl Runs {
    /// A run, joined to the previous one when it continues it in both the tile and c (grid
    /// rows without padding columns).
    fn push(&mut self, column: usize, len: usize, offset: usize) {
        if let Some(last) = self.count.checked_sub(1).map(|i| &mut self.runs[i])
            && last.0 + last.1 == column
            && last.2 + last.1 == offset
        {
            last.1 += len;
            return;
        }
        self.runs[self.count] = (column, len, offset);
        self.count += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &(usize, usize, usize)> {
        self.runs[..self.count].iter()
    }
}

/// The destination of a product and its epilogue: `c = a·b (+ c) (+ bias[i]) (+ residual)`,
/// each output `((chain + bias) + residual)` in that order.
pub struct Output<'a> {
    pub data: &'a mut [f32],
    pub layout: Layout,
    /// Per row of the product (not of `data`).
    pub bias: Option<&'a [f32]>,
    /// Read where the output is written.
    pub residual: Option<&'a [f32]>,
    /// Start each chain from c's value instead of 0.
    pub accumulate: bool,
}

impl<'a> Output<'a> {
    /// A plain row-major result, no epilogue.
    pub fn row_major(data: &'a mut [f32], n: usize, accumulate: bool) -> Output<'a> {
        Output {
            data,
            layout: Layout::row_major(n),
            bias: None,
            residual: None,
            accumulate,
        }
    }
}

/// c = a·b (or c += a·b when `accumulate`), c row-major `a.rows × b.cols`.
///
/// Shapes are invariants established by graph validation, so a mismatch is a bug: it panics.
pub fn matmul(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: Threads) {
    matmul_on(Kernel::detect(), a, b, c, accumulate, threads)
}

/// [`matmul`] with a given microkernel.
fn matmul_on(kernel: Kernel, a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: Threads) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    assert_eq!(c.len(), a.rows * b.cols, "matmul: output has the wrong size");
    b.check_bounds();
    let a = PackedA::for_kernel(kernel, a);
    let fill = |first: usize, width: usize, panel: &mut [f32]| copy_columns(b, first, width, panel);
    let out = Output::row_major(c, b.cols, accumulate);
    product(kernel, &a, b.cols, &Filled::new(fill, b.rows), out, threads)
}

/// c = a·b (+ epilogue) for a b (`k × n`) that is never stored whole: `fill(first, width,
/// panel)` writes its columns `first … first + width − 1` into `panel`, k rows of [`NR`]
/// values (an unfolded image goes straight into the kernel's layout).
pub fn matmul_filled(
    a: &PackedA,
    n: usize,
    fill: impl Fn(usize, usize, &mut [f32]) + Sync,
    out: Output,
    threads: Threads,
) {
    product(Kernel::detect(), a, n, &Filled::new(fill, a.k), out, threads)
}

/// c = a·b (+ epilogue) for a b read in place: b[p, q] = `data[offsets[p] + q]` (a padded
/// image's channel and tap p shifted by q; columns past the last may read anything in `data`).
pub fn matmul_shifted(a: &PackedA, n: usize, data: &[f32], offsets: &[usize], out: Output, threads: Threads) {
    assert_eq!(offsets.len(), a.k, "matmul: one offset per row of b");
    let last = offsets.iter().copied().max().unwrap_or(0);
    assert!(last + n <= data.len(), "matmul: shifted view out of bounds");
    let source = Shifted {
        data,
        offsets,
        last,
        packed: packed_offsets(a.k, WIDE),
    };
    product(Kernel::detect(), a, n, &source, out, threads)
}

/// Row offsets of a panel stored as k rows of `width` values.
fn packed_offsets(k: usize, width: usize) -> Vec<usize> {
    (0..k).map(|p| p * width).collect()
}

/// One panel as the microkernel reads it: row p is `b[offsets[p]..][..cols]`, every one of
/// them inside `b` (checked when made).
struct Panel<'s> {
    b: &'s [f32],
    offsets: &'s [usize],
    /// Columns readable from each row: NR, or WIDE for a wide tile.
    cols: usize,
}

impl<'s> Panel<'s> {
    /// `last`: the largest offset.
    fn new(b: &'s [f32], offsets: &'s [usize], last: usize, cols: usize) -> Panel<'s> {
        assert!(last + cols <= b.len(), "matmul: panel out of bounds");
        Panel { b, offsets, cols }
    }
}

/// Where the microkernel reads the panels of b from.
trait PanelSource: Sync {
    fn depth(&self) -> usize;
    /// Columns `first … first + width − 1` (first a multiple of NR; width ≤ NR unless
    /// [`PanelSource::wide`]), written into `buffer` if they must be.
    fn panel<'s>(&'s self, first: usize, width: usize, buffer: &'s mut PanelBuffer) -> Panel<'s>;
    /// Whether it gives WIDE columns at once.
    fn wide(&self) -> bool;
}

/// Panels written by a caller's function into the thread's buffer, k rows of NR values.
struct Filled<F> {
    fill: F,
    offsets: Vec<usize>,
}

impl<F> Filled<F> {
    fn new(fill: F, k: usize) -> Filled<F> {
        Filled {
            fill,
            offsets: packed_offsets(k, NR),
        }
    }
}

impl<F: Fn(usize, usize, &mut [f32]) + Sync> PanelSource for Filled<F> {
    fn depth(&self) -> usize {
        self.offsets.len()
    }

    fn panel<'s>(&'s self, first: usize, width: usize, buffer: &'s mut PanelBuffer) -> Panel<'s> {
        let len = self.offsets.len() * NR;
        // Consecutive units of a product often share a panel: it is filled once.
        if buffer.holds != Some(first) {
            if buffer.data.len() < len {
                buffer.data.resize(len, 0.0);
            }
            // Columns past `width` keep stale values: they only reach outputs that are dropped.
            (self.fill)(first, width, &mut buffer.data[..len]);
            buffer.holds = Some(first);
        }
        Panel::new(&buffer.data[..len], &self.offsets, len - NR, NR)
    }

    fn wide(&self) -> bool {
        false
    }
}

/// Panels read in place: row p of the columns from `first` is `data[offsets[p] + first..]`;
/// columns that would read past `data` are copied into the thread's buffer instead (rows of
/// WIDE values).
struct Shifted<'a> {
    data: &'a [f32],
    offsets: &'a [usize],
    /// The largest offset.
    last: usize,
    packed: Vec<usize>,
}

impl PanelSource for Shifted<'_> {
    fn depth(&self) -> usize {
        self.offsets.len()
    }

    fn panel<'s>(&'s self, first: usize, width: usize, buffer: &'s mut PanelBuffer) -> Panel<'s> {
        let cols = if width > NR { WIDE } else { NR };
        if first + self.last + cols <= self.data.len() {
            return Panel::new(&self.data[first..], self.offsets, self.last, cols);
        }
        let len = self.offsets.len() * WIDE;
        if buffer.holds != Some(first) {
            buffer.data.resize(len.max(buffer.data.len()), 0.0);
            for (row, &offset) in buffer.data.chunks_exact_mut(WIDE).zip(self.offsets) {
                row[..width].copy_from_slice(&self.data[offset + first..][..width]);
            }
            buffer.holds = Some(first);
        }
        Panel::new(&buffer.data[..len], &self.packed, len - WIDE, WIDE)
    }

    fn wide(&self) -> bool {
        true
    }
}

/// c's storage shared by the threads of one product: every output belongs to exactly one
/// tile and every tile to one unit, so no two threads touch the same element.
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: see the type's comment; `product` holds the `&mut [f32]` this was made from until
// every thread is done.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// `len` elements from `at`.
    ///
    /// SAFETY: the caller's unit owns them (no other thread reads or writes them meanwhile).
    #[allow(clippy::mut_from_ref)] // the point of the type: disjoint parts of one `&mut [f32]`
    unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.len, "matmul: output index out of bounds");
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

/// One product: `n` columns of b from `source`, cut into units of a panel × a block of row
/// tiles, each unit getting its panel once and writing its tiles through `out`.
fn product(kernel: Kernel, a: &PackedA, n: usize, source: &impl PanelSource, out: Output, threads: Threads) {
    let m = a.m;
    assert_eq!(a.rows_per_tile, kernel.rows(), "matmul: a packed for another kernel");
    assert_eq!(source.depth(), a.k, "matmul: inner dimensions differ");
    let layout = out.layout;
    let extent = layout.extent(m, n);
    assert!(extent <= out.data.len(), "matmul: output too small");
    assert!(
        out.residual.is_none_or(|r| extent <= r.len()),
        "matmul: residual too small"
    );
    assert!(out.bias.is_none_or(|b| b.len() >= m), "matmul: bias too short");
    let images = n.div_ceil(layout.block());
    assert!(
        images <= 1 || (layout.first_row + m) * layout.plane() <= layout.image_stride,
        "matmul: images overlap"
    );
    if m == 0 || n == 0 {
        return;
    }
    let job = Job {
        kernel,
        a,
        n,
        source,
        c: SharedOut {
            ptr: out.data.as_mut_ptr(),
            len: out.data.len(),
        },
        layout,
        bias: out.bias,
        residual: out.residual,
        accumulate: out.accumulate,
    };
    let tile_bytes = a.rows_per_tile * a.k * size_of::<f32>();
    // Wide tiles pay where their rows stay whole (no padding columns splitting them into runs
    // stored value by value) and the columns are many (measured: 1x1 56x56 +12%, 3x3 with
    // padding and 7x7 planes slower).
    let wide = kernel.wide() && source.wide() && layout.dense() && n >= 4 * WIDE;
    let block = if wide { WIDE } else { NR };
    let units = Units::new(a.row_tiles(), n.div_ceil(block), block, tile_bytes, threads);
    match threads {
        Threads::One => {
            let mut buffer = PanelBuffer::take();
            (0..units.count()).for_each(|u| job.run_unit(&units, u, &mut buffer));
        }
        Threads::All => {
            use rayon::prelude::*;
            (0..units.count())
                .into_par_iter()
                .for_each_init(PanelBuffer::take, |buffer, u| job.run_unit(&units, u, buffer));
        }
    }
}

/// How a product's tiles are cut into units of work (a panel × a block of row tiles).
///
/// While a fits in L2 the units go panel by panel, each panel's row tiles in `row_blocks`
/// blocks (one unless the panels are too few to keep every thread busy): a stays in cache and
/// each panel is read once. A larger a (late layers: 1024+ rows of k = 2304 …) would be
/// streamed from L3 once per panel, so its rows go in blocks that fit in L2, each block over
/// every panel in turn (those layers' b is small: few columns).
struct Units {
    row_tiles: usize,
    /// Column blocks of `cols` columns (NR, or WIDE for wide tiles).
    panels: usize,
    cols: usize,
    row_blocks: usize,
    block_major: bool,
}

impl Units {
    fn new(row_tiles: usize, panels: usize, cols: usize, tile_bytes: usize, threads: Threads) -> Units {
        const UNITS_PER_THREAD: usize = 8;
        // Half of a Zen 4 / recent Intel core's L2 for a's block.
        const A_BLOCK_BYTES: usize = 512 << 10;
        if row_tiles * tile_bytes > A_BLOCK_BYTES {
            let per_block = (A_BLOCK_BYTES / tile_bytes.max(1)).max(1);
            return Units {
                row_tiles,
                panels,
                cols,
                row_blocks: row_tiles.div_ceil(per_block),
                block_major: true,
            };
        }
        let row_blocks = match threads {
            Threads::One => 1,
            Threads::All => (UNITS_PER_THREAD * rayon::current_num_threads())
                .div_ceil(panels)
                .clamp(1, row_tiles.max(1)),
        };
        Units {
            row_tiles,
            panels,
            cols,
            row_blocks,
            block_major: false,
        }
    }

    fn count(&self) -> usize {
        self.panels * self.row_blocks
    }

    /// Unit u's column block and row tiles.
    fn unit(&self, u: usize) -> (usize, Range<usize>) {
        let (panel, block) = match self.block_major {
            true => (u % self.panels, u / self.panels),
            false => (u / self.row_blocks, u % self.row_blocks),
        };
        let per_block = self.row_tiles.div_ceil(self.row_blocks);
        let first = (block * per_block).min(self.row_tiles);
        (panel, first..(first + per_block).min(self.row_tiles))
    }
}

/// A thread's panel buffer for one product and which panel it holds; given back to the
/// thread's slot when dropped (a freshly allocated buffer costs page faults every call).
struct PanelBuffer {
    data: Vec<f32>,
    holds: Option<usize>,
}

thread_local! {
    static PANEL: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

impl PanelBuffer {
    fn take() -> PanelBuffer {
        PanelBuffer {
            data: PANEL.take(),
            holds: None,
        }
    }
}

impl Drop for PanelBuffer {
    fn drop(&mut self) {
        PANEL.set(std::mem::take(&mut self.data));
    }
}

/// Everything the units of one product share.
struct Job<'a, S> {
    kernel: Kernel,
    a: &'a PackedA,
    n: usize,
    source: &'a S,
    c: SharedOut,
    layout: Layout,
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    accumulate: bool,
}

impl<S: PanelSource> Job<'_, S> {
    fn run_unit(&self, units: &Units, u: usize, buffer: &mut PanelBuffer) {
        let (block, row_tiles) = units.unit(u);
        let first_column = block * units.cols;
        let width = units.cols.min(self.n - first_column);
        let runs = self.layout.runs(first_column, width);
        if runs.count == 0 || row_tiles.is_empty() {
            return;
        }
        let panel = self.source.panel(first_column, width, buffer);
        let rows = self.a.rows_per_tile;
        for r in row_tiles {
            let (first, valid) = (r * rows, rows.min(self.a.m - r * rows));
            let init = self.accumulate.then(|| {
                let mut tile: Tile = [0.0; MAX_MR * WIDE];
                self.load(first, valid, &runs, &mut tile);
                tile
            });
            let store = TileStore {
                job: self,
                first,
                valid,
                runs: &runs,
            };
            self.kernel
                .compute(self.a.tile(r), &panel, width, init.as_ref(), &store);
        }
    }

    /// c's values of the tile's outputs (rows `first …`, `valid` of them) into `tile`.
    fn load(&self, first: usize, valid: usize, runs: &Runs, tile: &mut [f32]) {
        self.for_each_run(first, valid, runs, |i, column, at, len| {
            // SAFETY: this unit owns the tile's outputs.
            let c = unsafe { self.c.slice(at, len) };
            tile[i * WIDE + column..][..len].copy_from_slice(c);
        })
    }

    /// The tile's outputs with the epilogue `(p + bias) + residual`, value by value (a tile
    /// whose outputs are not one whole row of the tile: see [`TileStore::finish`]).
    #[inline(always)]
    fn store(&self, first: usize, valid: usize, runs: &Runs, tile: &Tile) {
        self.for_each_run(first, valid, runs, |i, column, at, len| {
            let (p, bias) = (&tile[i * WIDE + column..][..len], self.bias.map(|b| b[first + i]));
            // SAFETY: this unit owns the tile's outputs.
            let c = unsafe { self.c.slice(at, len) };
            let residual = self.residual.map(|r| &r[at..at + len]);
            for (j, c) in c.iter_mut().enumerate() {
                let mut x = p[j];
                if let Some(b) = bias {
                    x += b;
                }
                if let Some(r) = residual {
                    x += r[j];
                }
                *c = x;
            }
        })
    }

    /// `f(row in tile, column in tile, index in c, length)` for each run of each valid row.
    #[inline(always)]
    fn for_each_run(&self, first: usize, valid: usize, runs: &Runs, mut f: impl FnMut(usize, usize, usize, usize)) {
        let plane = self.layout.plane();
        for i in 0..valid {
            let row_start = (self.layout.first_row + first + i) * plane;
            for &(column, len, offset) in runs.iter() {
                f(i, column, row_start + offset, len);
            }
        }
    }
}

/// What happens to a finished tile: inlined into the kernel's function (a closure would not
/// be), so the epilogue is vectorised for the same instruction set.
trait TileSink {
    /// The tile's MR × VR vectors of V a row (NR or WIDE values, or fewer for a narrow last
    /// panel).
    fn finish<V: Lanes, const MR: usize, const VR: usize>(&self, acc: &[[V; VR]; MR]);
}

/// A tile of a [`Job`] stored with its epilogue: rows `first …`, `valid` of them.
struct TileStore<'j, S> {
    job: &'j Job<'j, S>,
    first: usize,
    valid: usize,
    runs: &'j Runs,
}

impl<S: PanelSource> TileSink for TileStore<'_, S> {
    /// Straight from the registers when each row's outputs are one run of VR vectors (most tiles);
    /// through a spilled tile otherwise. The same additions in the same order either way.
    #[inline(always)]
    fn finish<V: Lanes, const MR: usize, const VR: usize>(&self, acc: &[[V; VR]; MR]) {
        let job = self.job;
        if let [(0, len, offset)] = self.runs.runs[..self.runs.count]
            && len == VR * V::N
        {
            let plane = job.layout.plane();
            for (i, acc) in acc.iter().enumerate().take(self.valid) {
                let at = (job.layout.first_row + self.first + i) * plane + offset;
                // SAFETY: this unit owns the tile's outputs.
                let c = unsafe { job.c.slice(at, len) };
                let bias = job.bias.map(|b| V::splat(b[self.first + i]));
                let residual = job.residual.map(|r| &r[at..at + len]);
                for (v, &x) in acc.iter().enumerate() {
                    let mut x = x;
                    if let Some(b) = bias {
                        x = x.add(b);
                    }
                    if let Some(r) = residual {
                        x = x.add(V::load(&r[v * V::N..]));
                    }
                    x.store(&mut c[v * V::N..]);
                }
            }
            return;
        }
        let mut tile: Tile = [0.0; MAX_MR * WIDE];
        for (row, acc) in tile.chunks_exact_mut(WIDE).zip(acc) {
            for (v, x) in acc.iter().enumerate() {
                x.store(&mut row[v * V::N..]);
            }
        }
        job.store(self.first, self.valid, self.runs, &tile)
    }
}

/// Columns `first … first + width − 1` of b into `panel` (k rows of NR values).
fn copy_columns(b: MatRef, first: usize, width: usize, panel: &mut [f32]) {
    for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
        let start = p * b.row_stride + first * b.col_stride;
        if b.col_stride == 1 {
            row[..width].copy_from_slice(&b.data[start..start + width]);
        } else {
            for (q, v) in row[..width].iter_mut().enumerate() {
                *v = b.data[start + q * b.col_stride];
            }
        }
    }
}

/// The microkernel for this CPU's widest instruction set.
#[derive(Clone, Copy)]
struct Kernel(Isa);

impl Kernel {
    fn detect() -> Kernel {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        Kernel(*ISA.get_or_init(Isa::detect))
    }

    /// Whether it has a wide tile (WIDE columns; only AVX-512 has the registers).
    fn wide(self) -> bool {
        self.0 == Isa::Avx512
    }

    /// Rows of c per tile (MR).
    fn rows(self) -> usize {
        match self.0 {
            Isa::Avx512 => 8,
            Isa::Avx2 => 6,
            Isa::Portable => 4,
        }
    }

    /// `tile += a_tile × panel` (the first `width` columns matter), then `finish(tile)`.
    fn compute(self, a: &[f32], panel: &Panel, width: usize, init: Option<&Tile>, sink: &impl TileSink) {
        match self.0 {
            // SAFETY: `Isa::detect` only reports instruction sets the CPU has.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::tile_avx512(a, panel, width, init, sink) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::tile_avx2(a, panel, width, init, sink) },
            _ => microtile::<Portable, Portable, 4, 2, 1, 2>(a, panel, width, init, sink),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::sign_f32::x86::{Avx2, Avx512};
    use super::{Panel, Tile, TileSink, microtile};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_avx512(
        a: &[f32],
        panel: &Panel,
        width: usize,
        init: Option<&Tile>,
        sink: &impl TileSink,
    ) {
        microtile::<Avx512, Avx2, 8, 1, 1, 2>(a, panel, width, init, sink)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(a: &[f32], panel: &Panel, width: usize, init: Option<&Tile>, sink: &impl TileSink) {
        microtile::<Avx2, Avx2, 6, 2, 1, 2>(a, panel, width, init, sink)
    }
}

/// `init (or 0) + a × panel` into `sink`: vectors V × VR per row (NR columns), V × WR (WIDE
/// columns, where the panel has them), or H × HR (half of NR) for a last panel that narrow, so
/// a small n does not pay for a whole panel of zero columns.
#[inline(always)]
fn microtile<V: Lanes, H: Lanes, const MR: usize, const VR: usize, const HR: usize, const WR: usize>(
    a: &[f32],
    panel: &Panel,
    width: usize,
    init: Option<&Tile>,
    sink: &impl TileSink,
) {
    assert!(a.len() == MR * panel.offsets.len(), "matmul: a tile of the wrong size");
    assert!(
        width <= panel.cols && VR * V::N == NR && (width <= NR || WR * V::N == WIDE),
        "matmul: tile wider than its panel or its kernel"
    );
    if width <= HR * H::N {
        sink.finish(&fma_chain::<H, MR, HR>(a, panel, init))
    } else if width <= NR {
        sink.finish(&fma_chain::<V, MR, VR>(a, panel, init))
    } else {
        sink.finish(&fma_chain::<V, MR, WR>(a, panel, init))
    }
}

/// acc[i][q] = fma(a[i, p], b[p][q], acc[i][q]) for p = 0 … k − 1 in order, q < VR·N, from
/// `init` (row-major, WIDE a row) or 0, in registers throughout. `a` is MR·k long and VR·N at
/// most the panel's columns (checked by the caller), every row of the panel inside its slice
/// (checked when it was made).
#[inline(always)]
fn fma_chain<V: Lanes, const MR: usize, const VR: usize>(
    a: &[f32],
    panel: &Panel,
    init: Option<&Tile>,
) -> [[V; VR]; MR] {
    let mut acc: [[V; VR]; MR] = match init {
        Some(t) => std::array::from_fn(|i| std::array::from_fn(|v| V::load(&t[i * WIDE + v * V::N..]))),
        None => [[V::splat(0.0); VR]; MR],
    };
    for (p, &offset) in panel.offsets.iter().enumerate() {
        // SAFETY: offset + VR·N ≤ offset + cols ≤ b.len() (the caller, Panel::new) and
        // (p + 1)·MR ≤ a.len() (the caller).
        let (row, column) = unsafe {
            (
                panel.b.get_unchecked(offset..offset + VR * V::N),
                a.get_unchecked(p * MR..(p + 1) * MR),
            )
        };
        let b: [V; VR] = std::array::from_fn(|v| V::load(&row[v * V::N..]));
        for (acc, &x) in acc.iter_mut().zip(column) {
            let x = V::splat(x);
            for (acc, &b) in acc.iter_mut().zip(&b) {
                *acc = x.fma(b, *acc);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef, b: MatRef) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols)
                    .map(|p| {
                        a.data[i * a.row_stride + p * a.col_stride] as f64
                            * b.data[p * b.row_stride + j * b.col_stride] as f64
                    })
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    /// c = a·b + c as its definition: one `mul_add` after the other, p = 0 … k − 1.
    fn fma_chain_reference(a: MatRef, b: MatRef, c: &[f32]) -> Vec<f32> {
        let mut out = c.to_vec();
        for i in 0..a.rows {
            for j in 0..b.cols {
                let at = |p: usize| a.data[i * a.row_stride + p * a.col_stride];
                let bt = |p: usize| b.data[p * b.row_stride + j * b.col_stride];
                out[i * b.cols + j] = (0..a.cols).fold(c[i * b.cols + j], |acc, p| at(p).mul_add(bt(p), acc));
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 1009) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn every_kernel_is_the_fma_chain_to_the_bit_for_any_shape_and_threads() {
        // Row counts around each kernel's MR (tails padded with zero rows), column counts
        // around a panel (a half-width last panel, a single column), a single row, and a
        // transposed b (the classifier's layout).
        let shapes = [
            (1, 7, 1),
            (5, 3, 17),
            (16, 64, 49),
            (17, 33, 8),
            (37, 53, 29),
            (64, 576, 196),
            (7, 100, 10),
        ];
        for isa in Isa::available() {
            let kernel = Kernel(isa);
            for &(m, k, n) in &shapes {
                let (a, b_rows, b_t) = (values(m * k, 1), values(k * n, 2), values(n * k, 3));
                let init = values(m * n, 4);
                for b in [MatRef::row_major(&b_rows, k, n), MatRef::transposed(&b_t, k, n)] {
                    let a = MatRef::row_major(&a, m, k);
                    let want = fma_chain_reference(a, b, &init);
                    for threads in [Threads::One, Threads::All] {
                        let mut c = init.clone();
                        matmul_on(kernel, a, b, &mut c, true, threads);
                        // The portable kernel rounds twice per step where the build has no FMA.
                        let exact =
                            isa != Isa::Portable || cfg!(any(not(target_arch = "x86_64"), target_feature = "fma"));
                        if exact {
                            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                            assert_eq!(bits(&c), bits(&want), "{isa:?} {m}x{k}x{n} {threads:?}");
                        } else {
                            let worst = c.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                            assert!(worst < 1e-4 * k as f32, "{isa:?} {m}x{k}x{n}: {worst}");
                        }
                        let mut fresh = vec![f32::NAN; m * n];
                        matmul_on(kernel, a, b, &mut fresh, false, threads);
                        let zero = fma_chain_reference(a, b, &vec![0.0; m * n]);
                        assert!(fresh.iter().zip(&zero).all(|(x, y)| (x - y).abs() <= 1e-4 * k as f32));
                    }
                }
            }
        }
    }

    /// A product laid out as images (with dropped padding columns, or dense: wide tiles on
    /// AVX-512) and an epilogue equals the plain product copied into place, bias then residual
    /// added, to the bit; the shifted source (b read in place at row offsets) equals the filled
    /// one.
    #[test]
    fn layouts_epilogue_and_shifted_panels_match_the_plain_product() {
        // 3 images of a grid whose top-left corner is the output: 5 × 7 around 4 × 6, and a
        // dense 5 × 14 (every column an output, 210 of them: wide tiles and a partial one).
        for (grid_rows, grid_cols, height, width) in [(5, 7, 4, 6), (5, 14, 5, 14)] {
            let layout = Layout {
                grid_cols,
                grid_rows,
                width,
                height,
                image_stride: 11 * height * width,
                first_row: 2,
            };
            let block = grid_rows * grid_cols;
            let (m, k, n) = (9, 13, 3 * block);
            let (a, bias, residual) = (values(m * k, 1), values(m, 5), values(3 * layout.image_stride, 6));
            let b_shift = values(k * 7 + n + WIDE, 2);
            let offsets: Vec<usize> = (0..k).map(|p| p * 7 + p % 3).collect();
            let b: Vec<f32> = (0..k * n).map(|i| b_shift[offsets[i / n] + i % n]).collect();
            let a_ref = MatRef::row_major(&a, m, k);
            let mut plain = vec![0.0; m * n];
            matmul(a_ref, MatRef::row_major(&b, k, n), &mut plain, false, Threads::One);
            let mut want = vec![f32::NAN; residual.len()];
            for (i, q) in (0..m).flat_map(|i| (0..n).map(move |q| (i, q))) {
                let (image, y, x) = (q / block, q % block / grid_cols, q % grid_cols);
                if y < height && x < width {
                    let at = image * layout.image_stride + (2 + i) * height * width + y * width + x;
                    want[at] = plain[i * n + q] + bias[i] + residual[at];
                }
            }
            let packed = PackedA::new(a_ref);
            for threads in [Threads::One, Threads::All] {
                for shifted in [false, true] {
                    let mut got = vec![f32::NAN; want.len()];
                    let out = Output {
                        data: &mut got,
                        layout,
                        bias: Some(&bias),
                        residual: Some(&residual),
                        accumulate: false,
                    };
                    if shifted {
                        matmul_shifted(&packed, n, &b_shift, &offsets, out, threads);
                    } else {
                        let fill = |first: usize, width: usize, panel: &mut [f32]| {
                            copy_columns(MatRef::row_major(&b, k, n), first, width, panel)
                        };
                        matmul_filled(&packed, n, fill, out, threads);
                    }
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{layout:?} shifted {shifted} {threads:?}");
                }
            }
        }
    }

    #[test]
    fn matches_naive_product_with_transposed_operand_and_accumulation() {
        let (m, k, n) = (37, 53, 29);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| ((i * 104729) % 97) as f32 / 48.0 - 1.0).collect();
        let (a, b) = (MatRef::row_major(&a, m, k), MatRef::transposed(&bt, k, n));
        let want = naive(a, b);
        for threads in [Threads::One, Threads::All] {
            let mut c = vec![1.0; m * n];
            matmul(a, b, &mut c, true, threads);
            for (got, want) in c.iter().zip(&want) {
                assert!((got - (want + 1.0)).abs() < 1e-4, "{got} vs {}", want + 1.0);
            }
        }
    }
}
