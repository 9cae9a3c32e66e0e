//! Value buffers recycled from layer to layer and run to run on each thread. A buffer freshly
//! allocated at a convolution's output size is freshly mapped memory, and its page faults
//! (taken while the GEMM writes it, by both threads at once) cost about a tenth of the
//! convolution itself (perf, 3x3 56x56 64→64 at batch 1).

use std::cell::RefCell;

/// What a thread keeps at most; past it a returned buffer is freed.
const MAX_KEPT_BYTES: usize = 256 << 20;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// `len` zeros, in the smallest kept buffer that holds them (a new one if none does).
pub fn zeroed(len: usize) -> Vec<f32> {
    let mut buf = take(len);
    buf.resize(len, 0.0);
    buf
}

/// A copy of `values`, in a kept buffer if one holds it.
pub fn copy_of(values: &[f32]) -> Vec<f32> {
    let mut buf = take(values.len());
    buf.extend_from_slice(values);
    buf
}

/// An empty buffer with room for `len` values.
fn take(len: usize) -> Vec<f32> {
    let kept = FREE.with_borrow_mut(|free| {
        let best = (0..free.len())
            .filter(|&i| free[i].capacity() >= len)
            .min_by_key(|&i| free[i].capacity())?;
        Some(free.swap_remove(best))
    });
    let mut buf = kept.unwrap_or_else(|| Vec::with_capacity(len));
    buf.clear();
    buf
}

/// Gives `buf` back for later [`zeroed`] / [`copy_of`] calls on this thread.
pub fn recycle(buf: Vec<f32>) {
    FREE.with_borrow_mut(|free| {
        let kept: usize = free.iter().map(|b| b.capacity() * size_of::<f32>()).sum();
        if kept + buf.capacity() * size_of::<f32>() <= MAX_KEPT_BYTES {
            free.push(buf);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_come_back_zeroed_or_copied_and_best_fitting() {
        let mut big = zeroed(1000);
        big.iter_mut().for_each(|v| *v = 7.0);
        let small = copy_of(&[1.0, 2.0]);
        let small_ptr = small.as_ptr();
        recycle(big);
        recycle(small);
        // The smaller buffer fits 2 values best; the big one holds 500 zeros.
        let reused = copy_of(&[3.0, 4.0]);
        assert_eq!((reused.as_ptr(), &reused[..]), (small_ptr, &[3.0, 4.0][..]));
        let again = zeroed(500);
        assert!(again.capacity() >= 1000 && again.iter().all(|&v| v == 0.0) && again.len() == 500);
    }
}
