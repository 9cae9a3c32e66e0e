//! The one matrix product of the CPU backend: a safe, bounds-checked front to the `gemm` crate.

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

    /// Columns `start..start + count` (no copy).
    fn columns(&self, start: usize, count: usize) -> MatRef<'a> {
        MatRef {
            data: &self.data[start * self.col_stride..],
            cols: count,
            ..*self
        }
    }

    /// Rows `start..start + count` (no copy).
    fn rows(&self, start: usize, count: usize) -> MatRef<'a> {
        MatRef {
            data: &self.data[start * self.row_stride..],
            rows: count,
            ..*self
        }
    }

    /// A contiguous row-major copy with `extra` zero rows appended.
    fn padded_rows(&self, extra: usize) -> Vec<f32> {
        let mut out: Vec<f32> = (0..self.rows)
            .flat_map(|r| (0..self.cols).map(move |c| self.data[r * self.row_stride + c * self.col_stride]))
            .collect();
        out.resize((self.rows + extra) * self.cols, 0.0);
        out
    }
}

/// The most inner-dimension terms one call of the gemm crate sums (see [`matmul`]).
const K_BLOCK: usize = 512;

/// Whether one product may use several threads (when the caller is not already parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    One,
    All,
}

/// c = a·b (or c += a·b when `accumulate`), c row-major `a.rows × b.cols`.
///
/// Shapes are invariants established by graph validation, so a mismatch is a bug: it panics
/// rather than letting the unsafe call read out of bounds.
pub fn matmul(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: Threads) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul: inner dimensions differ");
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
    assert!(
        a.last_index() < a.data.len() && b.last_index() < b.data.len(),
        "matmul: view out of bounds"
    );
    // Bit-reproducible results whatever the batch size or thread count that shaped the product:
    // the gemm crate sums k in blocks whose size depends on m and n (at most 512 when both are
    // ≤ 64, larger otherwise) and takes a gemv path for a single row or column, and either
    // changes an output's rounding. So k is cut into fixed blocks of at most K_BLOCK (one gemm
    // call each, accumulating) and a single row or column is padded to two.
    if m == 1 {
        let mut c2 = c.to_vec();
        c2.resize(2 * n, 0.0);
        let a2 = a.padded_rows(1);
        matmul(MatRef::row_major(&a2, 2, k), b, &mut c2, accumulate, threads);
        c.copy_from_slice(&c2[..n]);
        return;
    }
    if n == 1 {
        let mut c2: Vec<f32> = c.iter().flat_map(|&v| [v, 0.0]).collect();
        let b2 = transpose(&b).padded_rows(1); // bᵀ with a zero row = b with a zero column
        matmul(a, MatRef::transposed(&b2, k, 2), &mut c2, accumulate, threads);
        c.iter_mut().zip(c2.chunks_exact(2)).for_each(|(c, pair)| *c = pair[0]);
        return;
    }
    for (block, start) in (0..k).step_by(K_BLOCK).enumerate() {
        let count = K_BLOCK.min(k - start);
        gemm_call(
            a.columns(start, count),
            b.rows(start, count),
            c,
            accumulate || block > 0,
            threads,
        );
    }
}

/// The transpose view of `m` (no copy).
fn transpose<'a>(m: &MatRef<'a>) -> MatRef<'a> {
    MatRef {
        data: m.data,
        rows: m.cols,
        cols: m.rows,
        row_stride: m.col_stride,
        col_stride: m.row_stride,
    }
}

/// One call of the gemm crate: c = a·b (or c += a·b), shapes and bounds checked by [`matmul`].
fn gemm_call(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: Threads) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: every index the product touches was bounds-checked above: a's and b's largest
    // offsets are inside their slices and c is exactly m·n contiguous row-major values.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
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
