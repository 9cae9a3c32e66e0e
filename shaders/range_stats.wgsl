// Per-site statistics of activation inputs, gathered in the same pass as the activation:
// how many fall outside [-B, B] (never clipped silently), non-finite ones, the largest finite
// |x| and a histogram of ⌊log2 |x|⌋. The layout constants HIST_BINS, LOG2_MIN,
// STATS_HEADER_WORDS and STATS_WORDS are prepended by the host from `crate::exec` (one source
// for every backend). The including shader declares
//   var<storage, read_write> range_stats: array<atomic<u32>, STATS_WORDS>;
//   // [0] |x| > B, [1] bits of max finite |x|, [2] non-finite, then the HIST_BINS histogram
// Statistics are gathered per workgroup and flushed with a few global atomics per workgroup: a
// global atomic per element would serialise the dispatch. Non-negative floats order like their
// u32 bit patterns, so atomicMax on the bits is a float max.
var<workgroup> wg_out_of_range: atomic<u32>;
var<workgroup> wg_max_bits: atomic<u32>;
var<workgroup> wg_non_finite: atomic<u32>;
var<workgroup> wg_hist: array<atomic<u32>, HIST_BINS>;

fn record_range(x: f32, bound: f32) {
    let bits = bitcast<u32>(x) & 0x7fffffffu;
    let exponent = i32(bits >> 23u) - 127;
    if exponent == 128 {
        // infinity or NaN (tested on the bits: compilers may fold `x != x` away)
        atomicAdd(&wg_non_finite, 1u);
        return;
    }
    if bitcast<f32>(bits) > bound {
        atomicAdd(&wg_out_of_range, 1u);
    }
    if bits > atomicLoad(&wg_max_bits) {
        atomicMax(&wg_max_bits, bits);
    }
    let bin = u32(clamp(exponent - LOG2_MIN, 0, i32(HIST_BINS) - 1));
    atomicAdd(&wg_hist[bin], 1u);
}

// Must be reached by every invocation of the workgroup (uniform control flow); the workgroup
// must have at least HIST_BINS invocations.
fn flush_range(local_index: u32) {
    workgroupBarrier();
    if local_index == 0u {
        let count = atomicLoad(&wg_out_of_range);
        if count > 0u {
            atomicAdd(&range_stats[0], count);
        }
        atomicMax(&range_stats[1], atomicLoad(&wg_max_bits));
        let bad = atomicLoad(&wg_non_finite);
        if bad > 0u {
            atomicAdd(&range_stats[2], bad);
        }
    }
    if local_index < HIST_BINS {
        let n = atomicLoad(&wg_hist[local_index]);
        if n > 0u {
            atomicAdd(&range_stats[STATS_HEADER_WORDS + local_index], n);
        }
    }
}
