//! The one matrix product of the CPU backend: a register-blocked SIMD GEMM.
//!
//! Every output is a single chain of fused multiply-adds over the inner dimension in order
//! (`c = fma(a[i, p], b[p, j], c)` for p = 0, 1, …), started from 0 (or from `c` when
//! accumulating). Tiling, threads and batch size only decide *which* outputs a call computes,
//! never the order of a sum, so results are bit-identical for any thread count or grouping of
//! images. Work is split over outputs only: tiles of MR rows × 16 columns, each computed whole
//! by one thread.
//!
//! Layout: b is packed into panels of [`NR`] columns (row p of a panel: 16 contiguous values,
//! zero past b's last column), by a caller's `fill` for an unfolded image ([`matmul_filled`]);
//! a is read in place, MR rows broadcast per step (packed when its rows would collide in L1).
//! One microkernel, written once over [`Lanes`], keeps an MR × 16 tile of c in registers for
//! the whole inner dimension: AVX-512 8 × 16, AVX2 + FMA 6 × 16, portable 4 × 16 (chosen at run
//! time like [`super::sign_f32`]; 8 × 16 measured as fast as 16 × 16 on Zen 4 and without its
//! L1 conflicts), and a half-width variant for a last panel of at most 8 columns.

use super::sign_f32::{Isa, Lanes, Portable};
use std::cell::Cell;
use std::ops::Range;
use std::thread::LocalKey;

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

    fn last_index(&self) -> usize {
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }
}

/// Columns per packed panel of b: the microkernel's width.
pub const NR: usize = 16;

/// Whether one product may use several threads (when the caller is not already parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    One,
    All,
}

/// c = a·b (or c += a·b when `accumulate`), c row-major `a.rows × b.cols`.
///
/// Shapes are invariants established by graph validation, so a mismatch is a bug: it panics.
pub fn matmul(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: Threads) {
    matmul_on(Kernel::detect(), a, b, c, accumulate, threads)
}

/// [`matmul`] with a given microkernel.
fn matmul_on(kernel: Kernel, a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: Threads) {
    assert!(
        b.rows == 0 || b.cols == 0 || b.last_index() < b.data.len(),
        "matmul: view out of bounds"
    );
    let fill = |first: usize, width: usize, panel: &mut [f32]| copy_columns(b, first, width, panel);
    product(kernel, a, (b.rows, b.cols), fill, c, accumulate, threads)
}

/// c = a·b (or c += a·b) for a b (`k × n`) that is never stored whole: `fill(first, width,
/// panel)` writes its columns `first … first + width − 1` into `panel`, k rows of [`NR`] values
/// (an unfolded image goes straight into the packed layout).
pub fn matmul_filled(
    a: MatRef,
    (k, n): (usize, usize),
    fill: impl Fn(usize, usize, &mut [f32]) + Sync,
    c: &mut [f32],
    threads: Threads,
) {
    product(Kernel::detect(), a, (k, n), fill, c, false, threads)
}

fn product(
    kernel: Kernel,
    a: MatRef,
    (k, n): (usize, usize),
    fill: impl Fn(usize, usize, &mut [f32]) + Sync,
    c: &mut [f32],
    accumulate: bool,
    threads: Threads,
) {
    let m = a.rows;
    assert_eq!(a.cols, k, "matmul: inner dimensions differ");
    assert_eq!(c.len(), m * n, "matmul: output has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    assert!(a.last_index() < a.data.len(), "matmul: view out of bounds");
    let rows = kernel.rows();
    // Rows of a 4 KiB apart (1x1 convolutions over 1024, 2048 … channels) share one L1 set
    // and evict each other: those are packed when enough columns reuse the copy, and so is a
    // strided a; other tiles read a in place.
    const PACKING_PAYS_FROM_COLUMNS: usize = 128;
    let aliased = (a.row_stride * size_of::<f32>()) % 4096 == 0 && n >= PACKING_PAYS_FROM_COLUMNS;
    let pack_all = a.col_stride != 1 || aliased;
    let packed_tiles = if pack_all { 0 } else { m / rows }..m.div_ceil(rows);
    let packed_len = packed_tiles.len() * rows * k;
    let packed_a = pack_row_tiles(a, rows, packed_tiles, take_buffer(&ROW_TILES, packed_len), threads);
    let b = pack_panels((k, n), fill, take_buffer(&PANELS, n.div_ceil(NR) * k * NR), threads);
    let job = Job {
        kernel,
        rows,
        m,
        a,
        packed_a,
        pack_all,
        b,
        init: accumulate.then_some(&*c),
    };
    let tile_len = job.rows * NR;
    let mut tiles = take_buffer(&TILES, job.tiles() * tile_len);
    // Consecutive tiles share a panel of b, so each thread's run of tiles reuses it in cache.
    let compute = |(t, out): (usize, &mut [f32])| job.kernel.compute(&job, t, out);
    match threads {
        Threads::One => tiles.chunks_exact_mut(tile_len).enumerate().for_each(compute),
        Threads::All => {
            use rayon::prelude::*;
            let per_task = job.tiles().div_ceil(8 * rayon::current_num_threads()).max(1);
            tiles
                .par_chunks_exact_mut(tile_len)
                .enumerate()
                .with_min_len(per_task)
                .for_each(compute)
        }
    }
    let (row_tiles, a, b) = (job.row_tiles(), job.packed_a, job.b.data);
    let scatter = |(i, row): (usize, &mut [f32])| scatter_row(&tiles, rows, row_tiles, i, row);
    match threads {
        Threads::One => c.chunks_exact_mut(n).enumerate().for_each(scatter),
        Threads::All => {
            use rayon::prelude::*;
            c.par_chunks_exact_mut(n).enumerate().for_each(scatter)
        }
    }
    TILES.set(tiles);
    PANELS.set(b);
    ROW_TILES.set(a);
}

thread_local! {
    /// Per-thread buffers reused from call to call: a large buffer freshly allocated is freshly
    /// mapped, and its page faults cost more than the copies it holds.
    static PANELS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static TILES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static ROW_TILES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// The thread's buffer `key` (empty if a caller up the stack holds it), `len` zeros long;
/// give it back with `key.set`.
pub(super) fn take_buffer(key: &'static LocalKey<Cell<Vec<f32>>>, len: usize) -> Vec<f32> {
    let mut buf = key.take();
    buf.clear();
    buf.resize(len, 0.0);
    buf
}

/// One product cut into tiles of MR rows × NR columns, tile t being row tile `t % row_tiles`
/// of panel `t / row_tiles`.
struct Job<'a> {
    kernel: Kernel,
    /// Rows per tile (MR).
    rows: usize,
    /// Rows of a and c.
    m: usize,
    a: MatRef<'a>,
    /// Row tiles of a packed by [`pack_row_tiles`]: all of them when `pack_all`, else the
    /// last one when m is not a multiple of MR (its missing rows padded with zeros).
    packed_a: Vec<f32>,
    pack_all: bool,
    b: Panels,
    /// c's values before the product, when accumulating.
    init: Option<&'a [f32]>,
}

impl Job<'_> {
    fn row_tiles(&self) -> usize {
        self.m.div_ceil(self.rows)
    }

    fn tiles(&self) -> usize {
        self.row_tiles() * self.b.count()
    }

    /// Tile t's (first row, panel, rows that are c's, columns that are c's).
    fn tile(&self, t: usize) -> (usize, usize, usize, usize) {
        let (first, panel) = ((t % self.row_tiles()) * self.rows, t / self.row_tiles());
        (first, panel, self.rows.min(self.m - first), self.b.width(panel))
    }

    /// Tile t's MR rows of a.
    fn a_tile(&self, t: usize) -> ATile<'_> {
        let (first, _, valid, _) = self.tile(t);
        let (row_tile, len) = (first / self.rows, self.rows * self.b.k);
        if self.pack_all {
            ATile::packed(&self.packed_a[row_tile * len..][..len], self.rows)
        } else if valid < self.rows {
            ATile::packed(&self.packed_a, self.rows)
        } else {
            ATile {
                data: &self.a.data[first * self.a.row_stride..],
                row_step: self.a.row_stride,
                col_step: 1,
            }
        }
    }

    /// Tile t's starting values: c's when accumulating, else 0.
    fn init_tile(&self, t: usize, out: &mut [f32]) {
        out.fill(0.0);
        let Some(c) = self.init else { return };
        let (first, panel, valid, width) = self.tile(t);
        let n = self.b.n;
        for (i, row) in out.chunks_exact_mut(NR).take(valid).enumerate() {
            let start = (first + i) * n + panel * NR;
            row[..width].copy_from_slice(&c[start..start + width]);
        }
    }
}

/// Row i of c from the tiles of a [`Job`] with `rows` rows per tile and `row_tiles` per panel.
fn scatter_row(tiles: &[f32], rows: usize, row_tiles: usize, i: usize, row: &mut [f32]) {
    let (row_tile, r) = (i / rows, i % rows);
    for (panel, dst) in row.chunks_mut(NR).enumerate() {
        let t = panel * row_tiles + row_tile;
        dst.copy_from_slice(&tiles[(t * rows + r) * NR..][..dst.len()]);
    }
}

/// MR rows of a as the microkernel reads them: a[i, p] = data[i·row_step + p·col_step].
#[derive(Clone, Copy)]
struct ATile<'a> {
    data: &'a [f32],
    row_step: usize,
    col_step: usize,
}

impl<'a> ATile<'a> {
    fn packed(data: &'a [f32], rows: usize) -> ATile<'a> {
        ATile {
            data,
            row_step: 1,
            col_step: rows,
        }
    }
}

/// Row tiles `tiles` of a (m × k) packed into `data` (zeros, as long as those tiles): tile r
/// holds, for p = 0 … k − 1, a[r·rows + i, p] for i < rows (zero past a's last row).
fn pack_row_tiles(a: MatRef, rows: usize, tiles: Range<usize>, mut data: Vec<f32>, threads: Threads) -> Vec<f32> {
    let k = a.cols;
    if data.is_empty() {
        return data;
    }
    let pack = |(r, tile): (usize, &mut [f32])| {
        let first = (tiles.start + r) * rows;
        let valid = rows.min(a.rows - first);
        for (p, column) in tile.chunks_exact_mut(rows).enumerate() {
            for (i, v) in column[..valid].iter_mut().enumerate() {
                *v = a.data[(first + i) * a.row_stride + p * a.col_stride];
            }
        }
    };
    match threads {
        Threads::One => data.chunks_exact_mut(rows * k).enumerate().for_each(pack),
        Threads::All => {
            use rayon::prelude::*;
            data.par_chunks_exact_mut(rows * k).enumerate().for_each(pack)
        }
    }
    data
}

/// b (k × n) packed into panels of NR columns: panel j is k rows of NR values, columns
/// NR·j … NR·j + NR − 1, zero past column n.
struct Panels {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl Panels {
    fn count(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn panel(&self, j: usize) -> &[f32] {
        &self.data[j * self.k * NR..(j + 1) * self.k * NR]
    }

    /// Columns of panel j that are b's (NR except maybe the last).
    fn width(&self, j: usize) -> usize {
        NR.min(self.n - j * NR)
    }
}

/// b (`k × n`, written by `fill` panel by panel) packed into `data` (zeros, as long as the
/// panels).
fn pack_panels(
    (k, n): (usize, usize),
    fill: impl Fn(usize, usize, &mut [f32]) + Sync,
    mut data: Vec<f32>,
    threads: Threads,
) -> Panels {
    let pack = |(j, panel): (usize, &mut [f32])| fill(j * NR, NR.min(n - j * NR), panel);
    match threads {
        Threads::One => data.chunks_exact_mut(k * NR).enumerate().for_each(pack),
        Threads::All => {
            use rayon::prelude::*;
            data.par_chunks_exact_mut(k * NR).enumerate().for_each(pack)
        }
    }
    Panels { data, k, n }
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

    /// Rows of c per tile (MR).
    fn rows(self) -> usize {
        match self.0 {
            Isa::Avx512 => 8,
            Isa::Avx2 => 6,
            Isa::Portable => 4,
        }
    }

    /// Tile t of `job` into `out` (MR·NR values, row-major).
    fn compute(self, job: &Job, t: usize, out: &mut [f32]) {
        match self.0 {
            // SAFETY: `Isa::detect` only reports instruction sets the CPU has.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::tile_avx512(job, t, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::tile_avx2(job, t, out) },
            _ => tile::<Portable, Portable, 4, 2, 1>(job, t, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::sign_f32::x86::{Avx2, Avx512};
    use super::{Job, tile};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_avx512(job: &Job, t: usize, out: &mut [f32]) {
        tile::<Avx512, Avx2, 8, 1, 1>(job, t, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(job: &Job, t: usize, out: &mut [f32]) {
        tile::<Avx2, Avx2, 6, 2, 1>(job, t, out)
    }
}

/// Tile t of `job` into `out`: vectors V × VR per row, or H × HR (half as wide) for a last
/// panel that narrow, so a small n does not pay for a whole panel of zero columns.
#[inline(always)]
fn tile<V: Lanes, H: Lanes, const MR: usize, const VR: usize, const HR: usize>(job: &Job, t: usize, out: &mut [f32]) {
    let (_, panel, _, width) = job.tile(t);
    let (a, b, k) = (job.a_tile(t), job.b.panel(panel), job.b.k);
    let a_last = (MR - 1) * a.row_step + (k - 1) * a.col_step;
    assert!(
        a_last < a.data.len() && b.len() == NR * k && out.len() == MR * NR,
        "matmul: tile out of bounds"
    );
    job.init_tile(t, out);
    if width <= HR * H::N {
        fma_chain::<H, MR, HR>(a, b, out)
    } else {
        fma_chain::<V, MR, VR>(a, b, out)
    }
}

/// tile[i][q] = fma(a[i, p], panel[p][q], tile[i][q]) for p = 0 … k − 1 in order, q < VR·N (the
/// tile row-major, NR per row), the tile in registers throughout. The caller checked that a's
/// last element, a[MR − 1, k − 1], is inside its slice.
#[inline(always)]
fn fma_chain<V: Lanes, const MR: usize, const VR: usize>(a: ATile, panel: &[f32], tile: &mut [f32]) {
    let mut acc: [[V; VR]; MR] = std::array::from_fn(|i| std::array::from_fn(|v| V::load(&tile[i * NR + v * V::N..])));
    for (p, b_row) in panel.chunks_exact(NR).enumerate() {
        let b: [V; VR] = std::array::from_fn(|v| V::load(&b_row[v * V::N..]));
        let column = p * a.col_step;
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i < MR and p < k, so the index is at most a's last, checked by the caller.
            let x = V::splat(unsafe { *a.data.get_unchecked(column + i * a.row_step) });
            for (acc, &b) in acc.iter_mut().zip(&b) {
                *acc = x.fma(b, *acc);
            }
        }
    }
    for (t, acc) in tile.chunks_exact_mut(NR).zip(&acc) {
        for (v, acc) in acc.iter().enumerate() {
            acc.store(&mut t[v * V::N..]);
        }
    }
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
